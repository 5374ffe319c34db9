import { relayOutcome, type StreamEnd, usageInJson } from "./metered-stream.ts";
import { relayText } from "./relay-text.ts";

/**
 * Passes a backend's JSON answer (a whole chat.completion, text_completion or error) to the
 * client as it arrives, and calls `onEnd` once however it ends: read to the end, the
 * backend's body broken off, or the client gone (which also cancels the backend call); its
 * usage is the answer's when the whole answer was read (even by a client that then left),
 * else null. Leading whitespace (the heartbeat of an answer held open, see held-answer.ts)
 * is passed on: JSON allows it.
 *
 * @example return new Response(meterJson(backend.body, (end) => record(end), request.signal), { status, headers })
 */
export function meterJson(
  upstream: ReadableStream<Uint8Array>,
  onEnd: (end: StreamEnd) => void,
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
    (how) => onEnd({ outcome: relayOutcome[how], usage: usageInJson(text) }),
    clientGone,
  );
}
