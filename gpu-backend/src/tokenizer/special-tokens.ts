// The model's special tokens (tokenizer.json `added_tokens` with `special: true`): what a
// chat template may emit as control tokens and message text may not. HF tokenizers match
// them anywhere in a string; message content must reach the model as the text it is
// (issue 20: a user message "<|im_start|>system" forged a system turn).

/** tokenizer.json's added-token record, the fields read here. */
interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
}

export interface SpecialToken {
  id: number;
  content: string;
  /** the token eats the whitespace before it (and `rstrip` after it), as HF encodes it */
  lstrip: boolean;
  rstrip: boolean;
}

/** A piece of an encoded prompt: text to tokenize as text, or a special token's id. */
export type PromptPiece = { text: string } | { special: SpecialToken };

export class SpecialTokens {
  /** longest first, so a token that extends another wins, as HF's splitter picks */
  readonly #tokens: SpecialToken[];

  constructor(tokenizerJson: object) {
    const added = (tokenizerJson as { added_tokens?: AddedTokenJson[] }).added_tokens ?? [];
    this.#tokens = added
      .filter((t) => t.special === true && t.content.length > 0)
      .map((t) => ({
        id: t.id,
        content: t.content,
        lstrip: t.lstrip === true,
        rstrip: t.rstrip === true,
      }))
      .sort((a, b) => b.content.length - a.content.length);
  }

  /** The special token whose text is exactly `content`, if there is one. */
  find(content: string): SpecialToken | undefined {
    return this.#tokens.find((token) => token.content === content);
  }

  /**
   * Whether `text`, placed anywhere in a rendered prompt, could take part in a special token:
   * it holds one, or its start could end one, or its end could begin one.
   *
   * @example specials.touches("hi <|im_end|>") // true
   */
  touches(text: string): boolean {
    return this.#tokens.some(({ content }) => {
      if (text.includes(content)) return true;
      for (let n = 1; n < content.length; n++) {
        if (text.endsWith(content.slice(0, n)) || text.startsWith(content.slice(n))) return true;
      }
      return false;
    });
  }

  /**
   * Splits template text at the special tokens in it (leftmost, then longest), as HF's
   * encoder does before it tokenizes the text between them.
   *
   * @example specials.split("<|im_start|>user\n") // [{ special: <|im_start|> }, { text: "user\n" }]
   */
  split(text: string): PromptPiece[] {
    const pieces: PromptPiece[] = [];
    let start = 0;
    let at = 0;
    while (at < text.length) {
      const token = this.#tokens.find((t) => text.startsWith(t.content, at));
      if (token === undefined) {
        at++;
        continue;
      }
      if (at > start) pieces.push({ text: text.slice(start, at) });
      pieces.push({ special: token });
      at += token.content.length;
      start = at;
    }
    if (at > start) pieces.push({ text: text.slice(start, at) });
    return pieces;
  }
}

/**
 * Joins neighbouring text pieces and applies each special token's lstrip/rstrip to the text
 * beside it: the sections HF tokenizes one by one.
 */
export function joinSections(pieces: readonly PromptPiece[]): PromptPiece[] {
  const sections: PromptPiece[] = [];
  for (const piece of pieces) {
    const last = sections.at(-1);
    if ("text" in piece && last !== undefined && "text" in last) last.text += piece.text;
    else sections.push("text" in piece ? { text: piece.text } : piece);
  }
  sections.forEach((piece, i) => {
    if (!("special" in piece)) return;
    const before = sections[i - 1];
    const after = sections[i + 1];
    if (piece.special.lstrip && before !== undefined && "text" in before) {
      before.text = before.text.trimEnd();
    }
    if (piece.special.rstrip && after !== undefined && "text" in after) {
      after.text = after.text.trimStart();
    }
  });
  return sections;
}
