import { type TokenUsage, usageFrom } from "./metered-stream.ts";
import { type RelayEnd, relayText } from "./relay-text.ts";

/** How a proxied JSON answer ended, reported exactly once. */
export type JsonEnd = {
  /** done: the client got it all; upstream_failed: the backend's body broke off */
  how: RelayEnd;
  /** The `usage` of the answer when the whole answer was read (even by a client that then left), else null. */
  usage: TokenUsage | null;
};

/**
 * Passes a backend's JSON answer (a whole chat.completion, text_completion or error) to the
 * client as it arrives, and calls `onEnd` once with its usage however it ends: read to the
 * end, the backend's body broken off, or the client gone (which also cancels the backend
 * call). Leading whitespace (the heartbeat of an answer held open, see held-answer.ts) is
 * passed on: JSON allows it.
 *
 * @example return new Response(meterJson(backend.body, (end) => record(end), request.signal), { status, headers })
 */
export function meterJson(
  upstream: ReadableStream<Uint8Array>,
  onEnd: (end: JsonEnd) => void,
  clientGone: AbortSignal,
): ReadableStream<Uint8Array> {
  let text = "";
  return relayText(
    upstream,
    {
      pass(chunk) {
        text += chunk;
        return chunk;
      },
      flush: () => "",
      failed: () => "",
    },
    (how) => {
      let usage: TokenUsage | null = null;
      try {
        usage = usageFrom(JSON.parse(text));
      } catch {
        // cut short, or not JSON: it carries no usage
      }
      onEnd({ how, usage });
    },
    clientGone,
  );
}
