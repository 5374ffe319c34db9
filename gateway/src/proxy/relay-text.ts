/** How a relayed body ended, reported exactly once. */
export type RelayEnd = "done" | "client_disconnect" | "upstream_failed";

/** What the client gets of the text that comes from upstream. */
export type TextRelay = {
  /** What the client gets of the text read so far ("" = nothing yet: it is held back). */
  pass(text: string): string;
  /** What the client gets when upstream has ended: what was held back. */
  flush(): string;
  /** What the client gets when upstream failed mid-way (e.g. an error event), before the end. */
  failed(error: unknown): string;
};

const encoder = new TextEncoder();

/**
 * Passes `upstream` (UTF-8 text) to the client through `relay`, pulling from upstream only
 * when the client pulls (nothing is buffered ahead of it), and calls `onEnd` once however
 * it ends: upstream finished or failed, or the client went away, which also cancels
 * upstream. The runtime reports a client that went away as this stream's cancel (or, with
 * the compatibility flag enable_request_signal, through the request's signal `clientGone`).
 *
 * @example new Response(relayText(backend.body, { pass: (t) => t, flush: () => "", failed: () => "" }, onEnd, request.signal))
 */
export function relayText(
  upstream: ReadableStream<Uint8Array>,
  relay: TextRelay,
  onEnd: (end: RelayEnd) => void,
  clientGone: AbortSignal,
): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  const decoder = new TextDecoder();
  let ended = false;
  const end = (how: RelayEnd) => {
    if (ended) return;
    ended = true;
    onEnd(how);
  };
  const leave = (reason: unknown) => {
    end("client_disconnect");
    reader.cancel(reason).catch(() => {});
  };
  if (clientGone.aborted) leave(clientGone.reason);
  else clientGone.addEventListener("abort", () => leave(clientGone.reason), { once: true });

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (error) {
            if (ended) return; // the client left: this stream is cancelled already
            const said = relay.failed(error);
            if (said !== "") controller.enqueue(encoder.encode(said));
            controller.close();
            end("upstream_failed");
            return;
          }
          if (ended) return;
          if (chunk.done) {
            const rest = relay.pass(decoder.decode()) + relay.flush();
            if (rest !== "") controller.enqueue(encoder.encode(rest));
            controller.close();
            end("done");
            return;
          }
          const said = relay.pass(decoder.decode(chunk.value, { stream: true }));
          if (said !== "") {
            controller.enqueue(encoder.encode(said));
            return;
          }
        }
      },
      cancel(reason) {
        leave(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
