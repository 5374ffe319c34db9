// Stop strings over streamed text: text that could be the start of a stop string is held
// back until it either completes the stop (then everything from the stop on is dropped)
// or diverges (then it is released), so a client never sees part of a stop string.

export interface StopMatch {
  /** text that is safe to emit now */
  text: string;
  /** a stop string was found; `text` ends right before it */
  stopped: boolean;
}

export class StopMatcher {
  readonly #stops: readonly string[];
  #held = "";

  /** @example new StopMatcher(["\n\n", "END"]).push("a\n") // { text: "a", stopped: false } */
  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((stop) => stop.length > 0);
  }

  push(delta: string): StopMatch {
    const text = this.#held + delta;
    let stopAt = -1;
    for (const stop of this.#stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (stopAt < 0 || at < stopAt)) stopAt = at;
    }
    if (stopAt >= 0) {
      this.#held = "";
      return { text: text.slice(0, stopAt), stopped: true };
    }
    const keep = this.#heldLength(text);
    this.#held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** Releases the held text when generation ends without a stop. */
  finish(): string {
    const held = this.#held;
    this.#held = "";
    return held;
  }

  /** The longest suffix of `text` that is a proper prefix of some stop string. */
  #heldLength(text: string): number {
    let longest = 0;
    for (const stop of this.#stops) {
      for (let length = Math.min(stop.length - 1, text.length); length > longest; length--) {
        if (text.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
