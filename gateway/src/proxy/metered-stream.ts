/** Token counts from a backend's `usage` object. */
export type TokenUsage = { promptTokens: number; completionTokens: number };

/** How a proxied stream ended, reported exactly once. */
export type StreamEnd = {
  outcome: "ok" | "client_disconnect" | "backend_error";
  /** The backend's final usage event, or null when the stream ended before it. */
  usage: TokenUsage | null;
  /** Events that carried choices; an upper bound on tokens generated (one token per event at most in practice). */
  contentEvents: number;
};

/** An OpenAI-shaped error event (`data: {"error": {...}}`), as gpu-backend sends when generation fails mid-stream. */
function isErrorEvent(parsed: unknown): boolean {
  const error = (parsed as { error?: unknown } | null)?.error;
  return typeof error === "object" && error !== null;
}

const encoder = new TextEncoder();

export function usageFrom(value: unknown): TokenUsage | null {
  const u = (value as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } } | null)
    ?.usage;
  if (typeof u?.prompt_tokens !== "number" || typeof u.completion_tokens !== "number") return null;
  return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens };
}

/**
 * Passes a backend's SSE stream to the client event by event (each event is
 * sent as soon as its blank line arrives; nothing waits for more), reads the
 * usage event on the way, and calls `onEnd` once however the stream ends:
 * finished, cut by the backend, or cancelled by the client (which also cancels
 * the backend call; seen through `clientGone` or the stream's cancel). The usage-only event is dropped unless the client asked
 * for it with stream_options.include_usage, and so is the `usage: null` field the
 * backend puts in every other chunk once usage is asked for (the gateway always asks,
 * to meter): the client sees what OpenAI would send it. A backend failure mid-stream ends
 * the client's stream with an OpenAI-shaped error event. A stream in which the
 * backend itself sent an error event failed too, however cleanly it ends after
 * (usage chunk, `[DONE]`): it is reported as `backend_error`, not `ok`.
 *
 * @example return new Response(meterSse(upstream.body, keepUsage, (end) => record(end), request.signal), { headers })
 */
export function meterSse(
  upstream: ReadableStream<Uint8Array>,
  keepUsageEvent: boolean,
  onEnd: (end: StreamEnd) => void,
  clientGone: AbortSignal,
): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let usage: TokenUsage | null = null;
  let contentEvents = 0;
  let backendFailed = false;
  let ended = false;
  const end = (outcome: StreamEnd["outcome"]) => {
    if (ended) return;
    ended = true;
    onEnd({ outcome, usage, contentEvents });
  };

  // The runtime reports a client disconnect through the request's signal
  // (compatibility flag enable_request_signal), not always through cancel().
  clientGone.addEventListener("abort", () => {
    end("client_disconnect");
    reader.cancel(clientGone.reason).catch(() => {});
  });

  /** Complete events in `pending`, in order; keeps the unfinished tail. */
  const takeEvents = (): string[] => {
    const events: string[] = [];
    pending = pending.replaceAll("\r\n", "\n");
    let boundary = pending.indexOf("\n\n");
    while (boundary !== -1) {
      events.push(pending.slice(0, boundary + 2));
      pending = pending.slice(boundary + 2);
      boundary = pending.indexOf("\n\n");
    }
    return events;
  };

  /** Reads what an event says; returns what the client gets of it (null: nothing). */
  const forward = (event: string): string | null => {
    const data = event
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trimStart())
      .join("\n");
    if (data === "" || data === "[DONE]") return event;
    let parsed: { choices?: unknown[]; usage?: unknown } | null = null;
    try {
      parsed = JSON.parse(data);
    } catch {
      return event;
    }
    if (isErrorEvent(parsed)) backendFailed = true;
    const eventUsage = usageFrom(parsed);
    if (eventUsage !== null) usage = eventUsage;
    const hasChoices = Array.isArray(parsed?.choices) && parsed.choices.length > 0;
    if (hasChoices) contentEvents += 1;
    if (keepUsageEvent) return event;
    if (!hasChoices) return eventUsage === null ? event : null;
    if (parsed === null || !("usage" in parsed)) return event;
    const { usage: _, ...withoutUsage } = parsed;
    return `data: ${JSON.stringify(withoutUsage)}\n\n`;
  };

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (error) {
            const body = {
              error: {
                message: `The backend failed mid-stream: ${String(error)}`,
                type: "server_error",
                param: null,
                code: "backend_stream_failed",
              },
            };
            controller.enqueue(encoder.encode(`data: ${JSON.stringify(body)}\n\n`));
            controller.close();
            end("backend_error");
            return;
          }
          if (chunk.done) {
            pending += decoder.decode();
            if (pending.trim() !== "") controller.enqueue(encoder.encode(pending));
            controller.close();
            end(backendFailed ? "backend_error" : "ok");
            return;
          }
          pending += decoder.decode(chunk.value, { stream: true });
          const events = takeEvents()
            .map(forward)
            .filter((event) => event !== null);
          if (events.length > 0) {
            controller.enqueue(encoder.encode(events.join("")));
            return;
          }
        }
      },
      async cancel(reason) {
        end("client_disconnect");
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
