// Prometheus metrics of the serving loop (prom-client), in one registry per server so
// tests can run several. Latencies are per request: time to first token from arrival,
// inter-token latency between consecutive outputs of a request.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { EngineStats } from "../engine/index.ts";

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

interface Timing {
  arrivalMs: number;
  lastTokenMs: number | null;
}

export class ServingMetrics {
  readonly registry = new Registry();

  constructor() {
    // process_resident_memory_bytes, nodejs_heap_size_used_bytes, event loop lag, GC:
    // what tells a leak or a blocked loop from a busy one in a soak.
    collectDefaultMetrics({ register: this.registry });
  }

  readonly #timings = new Map<string, Timing>();
  readonly #queueDepth = new Gauge({
    name: "lorafleet_queue_depth",
    help: "requests waiting to be admitted",
    registers: [this.registry],
  });
  readonly #running = new Gauge({
    name: "lorafleet_running_requests",
    help: "requests admitted and running",
    registers: [this.registry],
  });
  readonly #suspects = new Gauge({
    name: "lorafleet_suspect_requests",
    help: "requests an executor failure involved, not yet past it (on probation or in line)",
    registers: [this.registry],
  });
  readonly #poolPages = new Gauge({
    name: "lorafleet_pool_pages",
    help: "unified pool pages by use",
    labelNames: ["use"] as const,
    registers: [this.registry],
  });
  readonly #adapterPins = new Gauge({
    name: "lorafleet_adapter_pins",
    help: "adapter pins held by admitted requests (0 when idle)",
    registers: [this.registry],
  });
  readonly #generated = new Counter({
    name: "lorafleet_generated_tokens_total",
    help: "output tokens delivered (rate() gives tokens/s)",
    registers: [this.registry],
  });
  readonly #tokensPerSecond = new Gauge({
    name: "lorafleet_tokens_per_second",
    help: "output tokens per second over the last 10 s",
    registers: [this.registry],
  });
  readonly #requests = new Counter({
    name: "lorafleet_requests_total",
    help: "finished requests by finish reason",
    labelNames: ["finish_reason"] as const,
    registers: [this.registry],
  });
  readonly #ttft = new Histogram({
    name: "lorafleet_time_to_first_token_seconds",
    help: "from arrival to the first output token",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #itl = new Histogram({
    name: "lorafleet_inter_token_latency_seconds",
    help: "between consecutive token outputs of one request",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #stepSeconds = new Histogram({
    name: "lorafleet_step_seconds",
    help: "a step's wall time: from its send, or from the result before it when steps overlap, to its result",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #stepExecutorSeconds = new Histogram({
    name: "lorafleet_step_executor_seconds",
    help: "the executor's host time per step: launching it plus waiting for its samples",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #adapterOpSeconds = new Histogram({
    name: "lorafleet_adapter_op_seconds",
    help: "the executor's adapter work, request to reply: stage (disk to the host tier: read, checked, packed), load (host tier to the pool)",
    labelNames: ["op"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #adapterLoads = new Counter({
    name: "lorafleet_adapter_loads_total",
    help: "adapters copied into the GPU pool",
    registers: [this.registry],
  });
  readonly #adapterEvictions = new Counter({
    name: "lorafleet_adapter_evictions_total",
    help: "adapters dropped from the GPU pool",
    registers: [this.registry],
  });
  readonly #adapterRequests = new Counter({
    name: "lorafleet_adapter_requests_total",
    help: "adapter requests admitted, by whether the adapter was already in the pool (hit rate = hit / all)",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly #prefixQueries = new Counter({
    name: "lorafleet_prefix_cache_queries_total",
    help: "admissions that looked up a cached prefix (recomputes after preemption count again)",
    registers: [this.registry],
  });
  readonly #prefixQueryTokens = new Counter({
    name: "lorafleet_prefix_cache_query_tokens_total",
    help: "tokens those admissions looked up (prompt, and output so far for a recompute); minus the hit tokens: the prefill tokens computed",
    registers: [this.registry],
  });
  readonly #prefixHitTokens = new Counter({
    name: "lorafleet_prefix_cache_hit_tokens_total",
    help: "of those, tokens whose KV came from the prefix cache (hit rate = hit / query tokens)",
    registers: [this.registry],
  });
  readonly #poolEvictions = new Counter({
    name: "lorafleet_pool_evictions_total",
    help: "what the unified pool's eviction policy gave back: cached KV blocks (kind=kv) and idle adapters (kind=adapter)",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly #preemptions = new Counter({
    name: "lorafleet_preemptions_total",
    help: "running requests preempted for pages (recomputed later)",
    registers: [this.registry],
  });
  readonly #deadlineAborts = new Counter({
    name: "lorafleet_deadline_aborts_total",
    help: "requests dropped because their deadline passed",
    registers: [this.registry],
  });
  readonly #restarts = new Counter({
    name: "lorafleet_executor_restarts_total",
    help: "executor crashes recovered from (or tried)",
    registers: [this.registry],
  });
  #lastAdapterCounts = { loads: 0, evictions: 0, hits: 0, misses: 0 };
  #lastPrefixCounts = { queries: 0, queryTokens: 0, hitTokens: 0, evictions: 0 };
  #lastPreemptions = 0;
  #lastDeadlineAborts = 0;
  /** [ms, tokens] of the last 10 s, for the tokens/s gauge */
  readonly #recent: [number, number][] = [];

  requestAdmitted(id: string, nowMs: number): void {
    this.#timings.set(id, { arrivalMs: nowMs, lastTokenMs: null });
  }

  tokensOut(id: string, count: number, nowMs: number): void {
    const timing = this.#timings.get(id);
    if (count === 0 || !timing) return;
    if (timing.lastTokenMs === null) this.#ttft.observe((nowMs - timing.arrivalMs) / 1000);
    else this.#itl.observe((nowMs - timing.lastTokenMs) / 1000);
    timing.lastTokenMs = nowMs;
    this.#generated.inc(count);
    this.#recent.push([nowMs, count]);
    while (this.#recent.length > 0 && (this.#recent[0]?.[0] ?? nowMs) < nowMs - 10_000) {
      this.#recent.shift();
    }
    const total = this.#recent.reduce((sum, [, n]) => sum + n, 0);
    this.#tokensPerSecond.set(total / 10);
  }

  requestFinished(id: string, finishReason: string): void {
    this.#timings.delete(id);
    this.#requests.inc({ finish_reason: finishReason });
  }

  readonly #grammarCompileSeconds = new Histogram({
    name: "lorafleet_grammar_compile_seconds",
    help: "a grammar's compile in the executor (structured outputs, tool calls); cache hits not counted",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 10],
    registers: [this.registry],
  });
  readonly #grammarRequests = new Counter({
    name: "lorafleet_grammar_requests_total",
    help: "grammars a request asked for, by result: hit (compiled already), miss (compiled for it), refused",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });

  grammarCompiled(compileMs: number, cached: boolean): void {
    this.#grammarRequests.inc({ result: cached ? "hit" : "miss" });
    if (!cached) this.#grammarCompileSeconds.observe(compileMs / 1000);
  }

  grammarRefused(): void {
    this.#grammarRequests.inc({ result: "refused" });
  }

  stepDone(wallMs: number, forwardMs: number, sampleMs: number): void {
    this.#stepSeconds.observe(wallMs / 1000);
    this.#stepExecutorSeconds.observe((forwardMs + sampleMs) / 1000);
  }

  adapterOpDone(op: "stage" | "load", seconds: number): void {
    this.#adapterOpSeconds.observe({ op }, seconds);
  }

  executorRestarted(): void {
    this.#restarts.inc();
  }

  observeEngine(stats: EngineStats): void {
    this.#queueDepth.set(stats.waiting);
    this.#running.set(stats.running);
    this.#suspects.set(stats.suspects);
    this.#poolPages.set({ use: "kv" }, stats.pages.kv);
    this.#poolPages.set({ use: "adapter" }, stats.pages.adapter);
    this.#poolPages.set({ use: "free" }, stats.pages.free);
    this.#poolPages.set({ use: "fenced" }, stats.pages.fenced);
    this.#poolPages.set({ use: "cached" }, stats.pages.cached);
    this.#adapterPins.set(stats.adapters.pins);
    // The engine counts these from its start; counters take the increase since last time.
    const { loads, evictions, hits, misses } = stats.adapters;
    const last = this.#lastAdapterCounts;
    if (loads > last.loads) this.#adapterLoads.inc(loads - last.loads);
    if (evictions > last.evictions) {
      this.#adapterEvictions.inc(evictions - last.evictions);
      this.#poolEvictions.inc({ kind: "adapter" }, evictions - last.evictions);
    }
    if (hits > last.hits) this.#adapterRequests.inc({ result: "hit" }, hits - last.hits);
    if (misses > last.misses) this.#adapterRequests.inc({ result: "miss" }, misses - last.misses);
    this.#lastAdapterCounts = { loads, evictions, hits, misses };
    const prefix = stats.prefixCache;
    const lastPrefix = this.#lastPrefixCounts;
    this.#prefixQueries.inc(prefix.queries - lastPrefix.queries);
    this.#prefixQueryTokens.inc(prefix.queryTokens - lastPrefix.queryTokens);
    this.#prefixHitTokens.inc(prefix.hitTokens - lastPrefix.hitTokens);
    this.#poolEvictions.inc({ kind: "kv" }, prefix.evictions - lastPrefix.evictions);
    this.#lastPrefixCounts = {
      queries: prefix.queries,
      queryTokens: prefix.queryTokens,
      hitTokens: prefix.hitTokens,
      evictions: prefix.evictions,
    };
    if (stats.preemptions > this.#lastPreemptions) {
      this.#preemptions.inc(stats.preemptions - this.#lastPreemptions);
    }
    if (stats.deadlineAborts > this.#lastDeadlineAborts) {
      this.#deadlineAborts.inc(stats.deadlineAborts - this.#lastDeadlineAborts);
    }
    this.#lastPreemptions = stats.preemptions;
    this.#lastDeadlineAborts = stats.deadlineAborts;
  }
}
