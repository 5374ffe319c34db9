/**
 * Figures of one run from its request records, as the S-LoRA paper reports them:
 * throughput over the run's span, first-token latency (from the request's
 * scheduled arrival, so client lag counts against the server, never for it),
 * per-token latency after the first, end-to-end latency, SLO attainment.
 */
import type { RequestRecord } from "./request-record.ts";
import { type Distribution, distribution } from "./stats.ts";

export interface RunMetrics {
  requests: number;
  ok: number;
  aborted: number;
  failed: number;
  /** first scheduled arrival to the last request's end, seconds */
  durationS: number;
  /** completed (ok) requests per second */
  requestsPerS: number;
  /** output tokens of ok requests per second */
  outputTokensPerS: number;
  /** prompt + output tokens of ok requests per second */
  totalTokensPerS: number;
  /** prompt tokens of ok requests, and of those the prefix cache had (usage's cached_tokens) */
  promptTokens: number;
  cachedPromptTokens: number;
  /** seconds from scheduled arrival to the first streamed token, ok requests */
  firstTokenS: Distribution;
  /**
   * seconds from the client's send to the first token: the server's share of firstTokenS
   * (the rest is the client holding a request back at --max-concurrency)
   */
  firstTokenFromSendS: Distribution;
  /**
   * the same for the first request of each adapter in the run (its adapter cold unless a
   * warm-up loaded it): one stage and one load on top of a warm request's
   */
  firstUseFirstTokenFromSendS: Distribution;
  /** seconds per output token after the first: (end − first) / (tokens − 1), ok requests */
  perTokenS: Distribution;
  /** seconds from scheduled arrival to the stream's end, ok requests */
  endToEndS: Distribution;
  sloFirstTokenS: number;
  /** share of all requests (failed and aborted count as misses) whose first token came within the bound */
  sloAttainment: number;
  /** ok requests that returned fewer tokens than asked (the server stopped early, e.g. at EOS) */
  shortOutputs: number;
  /** worst lateness of a send against its schedule: a large value means the client, not the server, was the bottleneck */
  maxSendLagS: number;
  /** why the first few requests that did not end ok did not: "request <id> <status>: <error>" */
  failures: string[];
}

const FAILURES_KEPT = 5;

export function summarize(records: readonly RequestRecord[], sloFirstTokenS: number): RunMetrics {
  const ok = records.filter((r) => r.status === "ok");
  const start = Math.min(...records.map((r) => r.scheduledS));
  const end = Math.max(...records.map((r) => r.endS));
  const durationS = records.length === 0 ? 0 : end - start;
  const rate = (x: number) => (durationS > 0 ? x / durationS : 0);
  const outputTokens = ok.reduce((sum, r) => sum + r.outputTokens, 0);
  const inputTokens = ok.reduce((sum, r) => sum + r.inputTokens, 0);
  const withFirst = ok.filter((r) => r.firstTokenS !== null);
  const inSlo = records.filter(
    (r) =>
      r.status === "ok" && r.firstTokenS !== null && r.firstTokenS - r.scheduledS <= sloFirstTokenS,
  );
  return {
    requests: records.length,
    ok: ok.length,
    aborted: records.filter((r) => r.status === "aborted").length,
    failed: records.filter((r) => r.status === "failed").length,
    durationS,
    requestsPerS: rate(ok.length),
    outputTokensPerS: rate(outputTokens),
    totalTokensPerS: rate(outputTokens + inputTokens),
    promptTokens: inputTokens,
    cachedPromptTokens: ok.reduce((sum, r) => sum + (r.cachedTokens ?? 0), 0),
    firstTokenS: distribution(withFirst.map((r) => (r.firstTokenS as number) - r.scheduledS)),
    firstTokenFromSendS: distribution(withFirst.map((r) => (r.firstTokenS as number) - r.sentS)),
    firstUseFirstTokenFromSendS: distribution(
      firstUses(records)
        .filter((r) => r.status === "ok" && r.firstTokenS !== null)
        .map((r) => (r.firstTokenS as number) - r.sentS),
    ),
    perTokenS: distribution(
      withFirst
        .filter((r) => r.outputTokens > 1)
        .map((r) => (r.endS - (r.firstTokenS as number)) / (r.outputTokens - 1)),
    ),
    endToEndS: distribution(ok.map((r) => r.endS - r.scheduledS)),
    sloFirstTokenS,
    sloAttainment: records.length === 0 ? 0 : inSlo.length / records.length,
    shortOutputs: ok.filter((r) => r.outputTokens < r.requestedTokens).length,
    maxSendLagS: records.length === 0 ? 0 : Math.max(...records.map((r) => r.sentS - r.scheduledS)),
    failures: records
      .filter((r) => r.status !== "ok")
      .slice(0, FAILURES_KEPT)
      .map((r) => `request ${r.id} ${r.status}: ${r.error}`),
  };
}

/** The first request sent for each adapter (base-model requests have none). */
function firstUses(records: readonly RequestRecord[]): RequestRecord[] {
  const first = new Map<string, RequestRecord>();
  for (const r of [...records].sort((a, b) => a.sentS - b.sentS)) {
    if (r.adapter !== null && !first.has(r.adapter)) first.set(r.adapter, r);
  }
  return [...first.values()];
}
