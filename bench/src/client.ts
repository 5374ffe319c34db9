/**
 * Open-loop load client: sends every trace request at its arrival time, whether
 * or not earlier ones have finished (as the S-LoRA paper's client does: the
 * server, not the client, decides how much runs at once), streams each reply
 * over SSE from the OpenAI-compatible `/v1/completions`, and records per-request
 * times (request-record.ts). metrics.ts turns the records into figures.
 * With maxConcurrency, a request arriving while that many are in flight waits for
 * one to end (a gateway holding requests, as vLLM's benchmark --max-concurrency):
 * the server then runs at that concurrency whenever the trace offers more.
 *
 *   const records = await runOpenLoop(trace.requests, {
 *     baseUrl: "http://127.0.0.1:8000", modelFor: (r) => r.adapter ?? "base", requestTimeoutS: 60,
 *   });
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { RequestRecord } from "./request-record.ts";
import { sseData } from "./sse.ts";
import type { TraceRequest } from "./workload.ts";

export interface OpenLoopOptions {
  /** e.g. http://127.0.0.1:8000 (no trailing /v1) */
  baseUrl: string;
  /** the `model` field for a request: its adapter's name, or the base model's name */
  modelFor: (request: TraceRequest) => string;
  /** a request still streaming this long after it was sent is cancelled and counted aborted */
  requestTimeoutS: number;
  /** fields merged into every request body (e.g. server-specific sampling options) */
  extraBody?: Record<string, unknown>;
  onRecord?: (record: RequestRecord, done: number, total: number) => void;
  /** requests in flight at most; the wait for a slot counts in the request's latency */
  maxConcurrency?: number;
}

/** Statuses by which a server says it shed the request rather than broke. */
const SHED_STATUSES = new Set([429, 503]);
const FINISHED_REASONS = new Set(["stop", "length"]);

export async function runOpenLoop(
  requests: readonly TraceRequest[],
  options: OpenLoopOptions,
): Promise<RequestRecord[]> {
  const start = performance.now();
  const now = () => (performance.now() - start) / 1000;
  const ordered = [...requests].sort((a, b) => a.arrivalS - b.arrivalS || a.id - b.id);
  const inFlight: Promise<RequestRecord>[] = [];
  const slot = concurrencyLimit(options.maxConcurrency ?? Number.POSITIVE_INFINITY);
  let done = 0;
  for (const request of ordered) {
    const wait = request.arrivalS - now();
    if (wait > 0) await sleep(wait * 1000);
    inFlight.push(
      slot(() => sendOne(request, options, now)).then((record) => {
        done += 1;
        options.onRecord?.(record, done, ordered.length);
        return record;
      }),
    );
  }
  const records = await Promise.all(inFlight);
  return records.sort((a, b) => a.id - b.id);
}

/** Runs at most `limit` of the calls given to it at once; the others wait in call order. */
export function concurrencyLimit(limit: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(run: () => Promise<T>): Promise<T> => {
    if (active < limit) active += 1;
    else await new Promise<void>((resolve) => waiting.push(resolve)); // handed a slot
    try {
      return await run();
    } finally {
      const next = waiting.shift();
      if (next === undefined) active -= 1;
      else next();
    }
  };
}

async function sendOne(
  request: TraceRequest,
  options: OpenLoopOptions,
  now: () => number,
): Promise<RequestRecord> {
  const model = options.modelFor(request);
  const record: RequestRecord = {
    id: request.id,
    adapter: request.adapter,
    model,
    inputTokens: request.inputLen,
    requestedTokens: request.outputLen,
    scheduledS: request.arrivalS,
    sentS: now(),
    firstTokenS: null,
    endS: 0,
    outputTokens: 0,
    cachedTokens: null,
    tokenCount: "chunks",
    status: "failed",
    finishReason: null,
    error: null,
  };
  const body = {
    model,
    prompt: request.prompt,
    max_tokens: request.outputLen,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ...options.extraBody,
  };
  const timeout = AbortSignal.timeout(options.requestTimeoutS * 1000);
  try {
    const response = await fetch(`${options.baseUrl}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: timeout,
    });
    if (!response.ok || response.body === null) {
      const text = (await response.text()).slice(0, 300);
      record.status = SHED_STATUSES.has(response.status) ? "aborted" : "failed";
      record.error = `HTTP ${response.status}: ${text}`;
      return finish(record, now);
    }
    await readStream(response.body, record, now);
  } catch (error) {
    const timedOut = timeout.aborted;
    record.status = timedOut ? "aborted" : "failed";
    record.error = timedOut
      ? `no complete reply within ${options.requestTimeoutS} s`
      : describeError(error);
  }
  return finish(record, now);
}

async function readStream(
  body: ReadableStream<Uint8Array>,
  record: RequestRecord,
  now: () => number,
): Promise<void> {
  let sawDone = false;
  for await (const data of sseData(body)) {
    if (data === "[DONE]") {
      sawDone = true;
      break;
    }
    const chunk = parseChunk(data);
    if ("error" in chunk) {
      record.status = "failed";
      record.error = `server error event: ${JSON.stringify(chunk.error).slice(0, 300)}`;
      return;
    }
    const choice = chunk.choices?.[0];
    if (choice !== undefined) {
      record.firstTokenS ??= now();
      if (record.tokenCount === "chunks" && (choice.text ?? "") !== "") record.outputTokens += 1;
      if (choice.finish_reason) record.finishReason = choice.finish_reason;
    }
    if (chunk.usage?.completion_tokens !== undefined) {
      record.outputTokens = chunk.usage.completion_tokens;
      record.tokenCount = "usage";
      record.cachedTokens = chunk.usage.prompt_tokens_details?.cached_tokens ?? null;
    }
  }
  if (!sawDone) {
    record.status = "failed";
    record.error = "stream ended without [DONE]";
  } else if (record.finishReason !== null && !FINISHED_REASONS.has(record.finishReason)) {
    record.status = "aborted";
    record.error = `finish_reason ${record.finishReason}`;
  } else {
    record.status = "ok";
  }
}

interface CompletionChunk {
  choices?: { text?: string; finish_reason?: string | null }[];
  usage?: {
    completion_tokens?: number;
    prompt_tokens_details?: { cached_tokens?: number };
  } | null;
  error?: unknown;
}

function parseChunk(data: string): CompletionChunk {
  try {
    return JSON.parse(data) as CompletionChunk;
  } catch {
    return { error: `not JSON: ${data.slice(0, 100)}` };
  }
}

function finish(record: RequestRecord, now: () => number): RequestRecord {
  record.endS = now();
  return record;
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as Error & { cause?: unknown }).cause;
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
}
