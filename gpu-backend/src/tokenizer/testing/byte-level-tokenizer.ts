// A hand-made byte-level BPE tokenizer (GPT-2 style, one token per byte plus a few
// merges and ChatML specials), so tokenizer tests do not depend on a model download and
// can split multi-byte characters across tokens at will.
import { ModelTokenizer } from "../tokenizer.ts";

/** GPT-2's reversible byte -> printable character map. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const chars: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    chars.push(String.fromCodePoint(printable.includes(b) ? b : 256 + extra++));
  }
  return chars;
}

const BYTE_CHARS = bytesToUnicode();
/** merged tokens, in rank order; ids follow the 256 byte tokens */
const MERGES: [string, string][] = [
  ["Ġ", "t"],
  ["h", "e"],
  ["Ġt", "he"],
];
export const IM_START = "<|im_start|>";
export const IM_END = "<|im_end|>";

const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export function byteLevelTokenizerJson(): object {
  const vocab: Record<string, number> = {};
  BYTE_CHARS.forEach((char, id) => {
    vocab[char] = id;
  });
  for (const [left, right] of MERGES) vocab[left + right] = Object.keys(vocab).length;
  const special = (content: string, id: number) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const next = Object.keys(vocab).length;
  return {
    version: "1.0",
    added_tokens: [special(IM_START, next), special(IM_END, next + 1)],
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: MERGES.map(([left, right]) => `${left} ${right}`),
    },
  };
}

export function byteLevelTokenizer(): ModelTokenizer {
  return new ModelTokenizer(
    byteLevelTokenizerJson(),
    { eos_token: IM_END, chat_template: CHATML_TEMPLATE },
    CHATML_TEMPLATE,
  );
}
