// A bounded, closed-loop load run: `clients` concurrent streaming clients, each sending
// one chat request after another (over many adapters) until `durationS` has passed, then
// waiting for what is in flight. Every answer is judged: complete (200, `[DONE]`, usage
// with exactly the tokens asked for, no error event), refused (429 with Retry-After,
// which the client honours), or a problem (5xx, an error event, a cut stream, a
// transport error, a timeout). Memory of the server processes is sampled throughout.
import { Agent } from "undici";
import { type Flatness, flatness, type MemorySample, MemorySampler } from "./memory-sampler.ts";
import { type Percentiles, summarize } from "./percentiles.ts";
import { type StreamOutcome, streamChat } from "./stream-client.ts";

export interface LoadOptions {
  /** the backend (or gateway) origin, e.g. http://127.0.0.1:8000 */
  url: string;
  clients: number;
  durationS: number;
  /** `model` values, used round robin over clients and requests */
  models: string[];
  /** each request asks for a length in [maxTokens / 2, maxTokens], with ignore_eos */
  maxTokens: number;
  /** processes whose RSS is sampled (asked again at every sample) */
  pids: () => number[];
  sampleIntervalMs?: number;
  /** the memory before this is not judged for flatness */
  warmupS?: number;
  /** one request's limit; past it the request counts as a timeout */
  requestTimeoutMs?: number;
  headers?: Record<string, string>;
  onProgress?: (line: string) => void;
}

/** What became of one request; exactly one per answer. */
export type Verdict =
  | "complete"
  | "rate_limited"
  | "rate_limited_without_retry_after"
  | "server_error"
  | "client_error"
  | "error_event"
  | "incomplete"
  | "wrong_length"
  | "transport_error"
  | "timeout";

export interface LoadReport {
  options: Omit<LoadOptions, "pids" | "onProgress" | "headers">;
  elapsedS: number;
  requests: { total: number; byStatus: Record<string, number>; byVerdict: Record<string, number> };
  /** the first few answers that were neither complete nor a proper 429, one line each */
  problems: string[];
  latencyMs: { firstToken: Percentiles | null; total: Percentiles | null };
  throughput: { completePerS: number; tokensPerS: number };
  memory: {
    peakMiB: number;
    flatness: Flatness | null;
    samples: MemorySample[];
    /** the backend's V8 heap in use (from its /metrics), when it answers them */
    heapUsed: { flatness: Flatness | null; samples: { t: number; MiB: number }[] };
  };
}

const MAX_PROBLEMS = 10;

/** @example const report = await runLoad({ url, clients: 200, durationS: 20, models: ["tiny-llama"], maxTokens: 16, pids }) */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const dispatcher = new Agent({ connections: options.clients + 16, keepAliveTimeout: 10_000 });
  const sampler = new MemorySampler(options.pids, options.sampleIntervalMs ?? 1000);
  const started = performance.now();
  const heap = sampleHeap(options.url, options.sampleIntervalMs ?? 1000, started);
  const endAt = started + options.durationS * 1000;
  const outcomes: StreamOutcome[] = [];
  const verdicts: Verdict[] = [];
  const problems: string[] = [];
  let progressAt = started;

  const client = async (index: number) => {
    for (let k = 0; performance.now() < endAt; k++) {
      const maxTokens =
        Math.ceil(options.maxTokens / 2) +
        ((index * 7 + k * 3) % Math.ceil(options.maxTokens / 2 + 1));
      const model = options.models[(index + k) % options.models.length] ?? "";
      const outcome = await streamChat(
        `${options.url}/v1/chat/completions`,
        {
          model,
          messages: [{ role: "user", content: `client ${index} request ${k}: tell me something` }],
          max_tokens: maxTokens,
          temperature: 0.7,
          seed: index * 1000 + k,
          ignore_eos: true,
        },
        {
          dispatcher,
          timeoutMs: options.requestTimeoutMs ?? 60_000,
          ...(options.headers ? { headers: options.headers } : {}),
        },
      );
      outcomes.push(outcome);
      const verdict = verdictOf(outcome, maxTokens);
      verdicts.push(verdict);
      if (verdict !== "complete" && verdict !== "rate_limited" && problems.length < MAX_PROBLEMS)
        problems.push(`${model}: ${verdict}: ${describe(outcome, maxTokens)}`);
      if (outcome.status === 429) {
        // honour Retry-After (capped so a short run still ends on time)
        const seconds = Math.min(Number(outcome.retryAfter ?? 1) || 1, 2);
        await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      }
      const now = performance.now();
      if (options.onProgress && now - progressAt >= 10_000) {
        progressAt = now;
        const last = sampler.samples.at(-1)?.totalMiB ?? 0;
        options.onProgress(
          `${Math.round((now - started) / 1000)} s: ${outcomes.length} answers, ${problems.length} problems, RSS ${last} MiB`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  const elapsedS = (performance.now() - started) / 1000;
  const samples = sampler.stop();
  const heapSamples = await heap.stop();
  await dispatcher.close();

  const warmupS = options.warmupS ?? Math.min(60, options.durationS / 5);
  const complete = outcomes.filter((_, i) => verdicts[i] === "complete");
  const byStatus: Record<string, number> = {};
  for (const o of outcomes) byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
  const byVerdict: Record<string, number> = {};
  for (const v of verdicts) byVerdict[v] = (byVerdict[v] ?? 0) + 1;
  const { pids: _pids, onProgress: _onProgress, headers: _headers, ...shown } = options;
  return {
    options: shown,
    elapsedS: Math.round(elapsedS * 10) / 10,
    requests: { total: outcomes.length, byStatus, byVerdict },
    problems,
    latencyMs: {
      firstToken: summarize(complete.map((o) => o.firstTokenMs ?? 0)),
      total: summarize(complete.map((o) => o.totalMs)),
    },
    throughput: {
      completePerS: Math.round((complete.length / elapsedS) * 10) / 10,
      tokensPerS: Math.round(
        complete.reduce((a, o) => a + (o.usage?.completion_tokens ?? 0), 0) / elapsedS,
      ),
    },
    memory: {
      peakMiB: Math.max(...samples.map((s) => s.totalMiB)),
      flatness: flatness(samples, warmupS),
      samples,
      heapUsed: {
        flatness: flatness(
          heapSamples.map((h) => ({ t: h.t, rssMiB: {}, totalMiB: h.MiB })),
          warmupS,
        ),
        samples: heapSamples,
      },
    },
  };
}

/** Polls `nodejs_heap_size_used_bytes` from the backend's /metrics; none if it has none. */
function sampleHeap(url: string, intervalMs: number, started: number) {
  const samples: { t: number; MiB: number }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const text = await fetch(`${url}/metrics`)
        .then((r) => (r.ok ? r.text() : ""))
        .catch(() => "");
      const bytes = Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
      if (Number.isFinite(bytes)) {
        const t = Math.round((performance.now() - started) / 100) / 10;
        samples.push({ t, MiB: Math.round((bytes / 1024 ** 2) * 10) / 10 });
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

export function verdictOf(outcome: StreamOutcome, maxTokens: number): Verdict {
  if (outcome.status === 429)
    return outcome.retryAfter === null ? "rate_limited_without_retry_after" : "rate_limited";
  if (outcome.errorCode === "timeout") return "timeout";
  if (outcome.status === 0 || (outcome.status === 200 && outcome.errorCode !== null))
    return "transport_error";
  if (outcome.status >= 500) return "server_error";
  if (outcome.status !== 200) return "client_error";
  if (outcome.errorEvent !== null) return "error_event";
  if (!outcome.done || outcome.usage === null) return "incomplete";
  if (outcome.usage.completion_tokens !== maxTokens) return "wrong_length";
  return "complete";
}

function describe(outcome: StreamOutcome, maxTokens: number): string {
  return JSON.stringify({
    status: outcome.status,
    errorCode: outcome.errorCode,
    errorEvent: outcome.errorEvent,
    done: outcome.done,
    usage: outcome.usage,
    maxTokens,
    ms: Math.round(outcome.totalMs),
  });
}
