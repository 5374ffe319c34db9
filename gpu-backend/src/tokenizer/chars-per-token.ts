// How many characters of input one token can cover at most, so that a prompt can be
// known too long for the context without tokenizing it: tokenizing megabytes of text
// blocks the event loop (about 1 s per MB) and every other request's stream with it.

/** Normalizers that can shrink text (compose, strip): after them a token may stand for more input. */
const SHRINKING_NORMALIZERS = new Set([
  "NFC",
  "NFKC",
  "StripAccents",
  "Strip",
  "BertNormalizer",
  "Precompiled",
]);

interface TokenizerJson {
  normalizer?: { type?: string; normalizers?: unknown[] } | null;
  model?: { type?: string; fuse_unk?: boolean };
}

function normalizerTypes(normalizer: TokenizerJson["normalizer"]): string[] {
  if (normalizer == null) return [];
  const nested = (normalizer.normalizers ?? []) as TokenizerJson["normalizer"][];
  return [normalizer.type ?? "", ...nested.flatMap(normalizerTypes)];
}

/**
 * The most UTF-16 characters of input one token covers, or null when this tokenizer gives
 * no such bound. For BPE without unk fusing, every token is a vocabulary entry (byte-level:
 * one char per byte, and a JS string has no more UTF-16 units than UTF-8 bytes) and the
 * normalizers only keep or grow the text, so `text.length <= tokens × longest entry`.
 *
 * @example maxCharsPerToken(tokenizerJson, vocab.keys()) // 81 for SmolLM2
 */
export function maxCharsPerToken(
  tokenizerJson: object,
  vocabulary: Iterable<string>,
): number | null {
  const json = tokenizerJson as TokenizerJson;
  if (json.model?.type !== "BPE" || json.model.fuse_unk === true) return null;
  if (normalizerTypes(json.normalizer).some((type) => SHRINKING_NORMALIZERS.has(type))) return null;
  let longest = 1;
  for (const entry of vocabulary) longest = Math.max(longest, entry.length);
  return longest;
}
