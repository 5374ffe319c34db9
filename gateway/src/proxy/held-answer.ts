import { ApiError } from "../errors.ts";

/**
 * How long the gateway waits for a backend's answer before it answers the client itself
 * (status 200, held open with heartbeats). Refusals come well within it (a body, a context
 * or a full queue is refused at once), so they keep their status; a generation that takes
 * longer is held.
 */
export const holdAfterMs = 1_000;

/** A held answer writes a heartbeat this often until the backend's answer comes. */
export const heartbeatMs = 1_000;

/** What a held answer carries: an event stream or a JSON answer. */
export type HeldFormat = "event-stream" | "json";

const encoder = new TextEncoder();

/** Heartbeats the client ignores: an SSE comment, or whitespace before JSON (RFC 8259 allows it). */
const heartbeat: Record<HeldFormat, Uint8Array> = {
  "event-stream": encoder.encode(": keep-alive\n\n"),
  json: encoder.encode(" "),
};

const contentType: Record<HeldFormat, string> = {
  "event-stream": "text/event-stream; charset=utf-8",
  json: "application/json",
};

/** A refusal that came after the answer was held: in the body, as the client reads errors there. */
function inBand(format: HeldFormat, errorJson: string): string {
  return format === "event-stream" ? `data: ${errorJson}\n\n` : errorJson;
}

/** The body the client gets once `answer` settled: the answer's own, or its refusal in-band. */
async function bodyOf(answer: Promise<Response>, format: HeldFormat) {
  let response: Response;
  try {
    response = await answer;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    return new Response(inBand(format, JSON.stringify(error.body()))).body;
  }
  if (response.ok) return response.body;
  return new Response(inBand(format, (await response.text()).trim())).body;
}

/**
 * The client's answer while the backend's is awaited: 200 at once, then a heartbeat every
 * `heartbeatMs`, then the backend's answer (or its refusal, in the body: an error event, or
 * the error JSON). A client that went away is noticed by the write that fails, however the
 * runtime reports requests (`wrangler dev`'s proxy and the Workers runtime see a client
 * leave only once a response has started): its stream is cancelled, and `onCancel` aborts
 * the backend call. Without this, the backend worked on for a client long gone.
 *
 * @example return heldAnswer(forwardToBackend(), "json", () => backendCall.abort())
 */
export function heldAnswer(
  answer: Promise<Response>,
  format: HeldFormat,
  onCancel: (reason: unknown) => void,
): Response {
  // Settled here so a refusal that comes after the client left is never unhandled.
  const settled = answer.then(
    () => "answer" as const,
    () => "answer" as const,
  );
  let source: ReadableStreamDefaultReader<Uint8Array> | null = null;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (source === null) {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const next = await Promise.race([
            settled,
            new Promise<"beat">((resolve) => {
              timer = setTimeout(() => resolve("beat"), heartbeatMs);
            }),
          ]);
          clearTimeout(timer);
          if (next === "beat") return controller.enqueue(heartbeat[format]);
          source = (await bodyOf(answer, format))?.getReader() ?? null;
          if (source === null) return controller.close();
        }
        const chunk = await source.read();
        if (chunk.done) controller.close();
        else controller.enqueue(chunk.value);
      },
      async cancel(reason) {
        onCancel(reason);
        await source?.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, {
    status: 200,
    headers: {
      "content-type": contentType[format],
      // Not compressed on the way (Cloudflare, and wrangler dev like it, compress JSON):
      // a compressor holds the heartbeats back, and the client's leaving goes unnoticed.
      "content-encoding": "identity",
      "cache-control": "no-cache, no-transform",
    },
  });
}
