// One streaming OpenAI chat request over undici, recording what load and fault tests
// judge: status, time to first content, whether `[DONE]` and usage came, and any error
// event inside the stream. Reads at its own pace and can stop early (a client that leaves).
import { type Dispatcher, request } from "undici";

export interface StreamOutcome {
  status: number;
  /** ms from sending to the first content chunk; null if none came */
  firstTokenMs: number | null;
  totalMs: number;
  /** content chunks read */
  chunks: number;
  /** `data: [DONE]` came */
  done: boolean;
  usage: { prompt_tokens: number; completion_tokens: number } | null;
  /** an `{"error": ...}` event inside a 200 stream */
  errorEvent: { code: string | null; message: string } | null;
  /** a non-200's error code (OpenAI shape), or the transport error's name */
  errorCode: string | null;
  retryAfter: string | null;
}

export interface StreamOptions {
  dispatcher?: Dispatcher;
  /** stop reading (close the connection) after this many content chunks */
  abortAfterChunks?: number;
  /** pause this long after each read: a slow client */
  readDelayMs?: number;
  /** give up on the whole request after this long (counted as errorCode "timeout") */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

/**
 * @example await streamChat("http://127.0.0.1:8000/v1/chat/completions", { model, messages, max_tokens: 16 })
 */
export async function streamChat(
  url: string,
  body: Record<string, unknown>,
  options: StreamOptions = {},
): Promise<StreamOutcome> {
  const started = performance.now();
  const controller = new AbortController();
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort(new Error("timeout")), options.timeoutMs);
  const outcome: StreamOutcome = {
    status: 0,
    firstTokenMs: null,
    totalMs: 0,
    chunks: 0,
    done: false,
    usage: null,
    errorEvent: null,
    errorCode: null,
    retryAfter: null,
  };
  let leaving = false;
  try {
    const response = await request(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...options.headers },
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
      signal: controller.signal,
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
    });
    outcome.status = response.statusCode;
    const retryAfter = response.headers["retry-after"];
    outcome.retryAfter = typeof retryAfter === "string" ? retryAfter : null;
    if (response.statusCode !== 200) {
      const text = await response.body.text();
      outcome.errorCode =
        (JSON.parse(text) as { error?: { code?: string | null } }).error?.code ?? null;
      return outcome;
    }
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      buffered += decoder.decode(chunk, { stream: true });
      let end = buffered.indexOf("\n\n");
      while (end >= 0) {
        readEvent(buffered.slice(0, end), outcome, started);
        buffered = buffered.slice(end + 2);
        end = buffered.indexOf("\n\n");
      }
      if (options.abortAfterChunks !== undefined && outcome.chunks >= options.abortAfterChunks) {
        leaving = true;
        response.body.destroy();
        break;
      }
      if (options.readDelayMs) await new Promise((r) => setTimeout(r, options.readDelayMs));
    }
  } catch (error) {
    if (!leaving) outcome.errorCode = controller.signal.aborted ? "timeout" : (error as Error).name;
  } finally {
    clearTimeout(timer);
    outcome.totalMs = performance.now() - started;
  }
  return outcome;
}

function readEvent(event: string, outcome: StreamOutcome, started: number): void {
  const data = event.startsWith("data: ") ? event.slice(6) : "";
  if (data === "[DONE]") {
    outcome.done = true;
    return;
  }
  if (data === "") return;
  const parsed = JSON.parse(data) as {
    error?: { code: string | null; message: string };
    choices?: { delta?: { content?: string } }[];
    usage?: StreamOutcome["usage"];
  };
  if (parsed.error) outcome.errorEvent = parsed.error;
  if (parsed.usage) outcome.usage = parsed.usage;
  if (parsed.choices?.[0]?.delta?.content) {
    outcome.firstTokenMs ??= performance.now() - started;
    outcome.chunks++;
  }
}
