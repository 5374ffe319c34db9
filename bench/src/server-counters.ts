/**
 * What the backend itself counted during one run, from its Prometheus /metrics before
 * and after: how many steps the executor ran and how long each took on average, and
 * the adapter traffic with how long a stage and a load took. Next to the client's
 * latencies this says where time went (executor step vs everything around it).
 */

const COUNTERS = {
  steps: "lorafleet_step_seconds_count",
  stepSeconds: "lorafleet_step_seconds_sum",
  adapterLoads: "lorafleet_adapter_loads_total",
  adapterEvictions: "lorafleet_adapter_evictions_total",
  preemptions: "lorafleet_preemptions_total",
  stages: 'lorafleet_adapter_op_seconds_count{op="stage"}',
  stageSeconds: 'lorafleet_adapter_op_seconds_sum{op="stage"}',
  loads: 'lorafleet_adapter_op_seconds_count{op="load"}',
  loadSeconds: 'lorafleet_adapter_op_seconds_sum{op="load"}',
  prefixQueryTokens: "lorafleet_prefix_cache_query_tokens_total",
  prefixHitTokens: "lorafleet_prefix_cache_hit_tokens_total",
  kvEvictions: 'lorafleet_pool_evictions_total{kind="kv"}',
} as const;

export type ServerCounters = Record<keyof typeof COUNTERS, number>;

export interface ServerActivity {
  steps: number;
  /** mean wall time per step (steps overlap: each from the result before it), ms */
  stepMsMean: number | null;
  adapterLoads: number;
  adapterEvictions: number;
  preemptions: number;
  /** mean time of an adapter's stage (disk to host tier) and load (host tier to pool), ms */
  stageMsMean: number | null;
  loadMsMean: number | null;
  /** tokens admissions computed (prompt, and output again after a preemption): what the cache did not serve */
  prefillTokens: number;
  /** tokens the prefix cache served, recomputes after preemption included */
  prefixHitTokens: number;
  /** cached KV blocks evicted */
  kvEvictions: number;
}

/** Reads the counters out of a Prometheus text exposition (a labelled sample by its name and labels as written). */
export function parseServerCounters(text: string): ServerCounters {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) ([-+.\deE]+|NaN)$/.exec(line.trim());
    if (match) samples.set(match[1] as string, Number(match[2]));
  }
  const counters = {} as ServerCounters;
  for (const [key, name] of Object.entries(COUNTERS))
    counters[key as keyof ServerCounters] = samples.get(name) ?? 0;
  return counters;
}

export async function scrapeServerCounters(baseUrl: string): Promise<ServerCounters> {
  const response = await fetch(new URL("/metrics", baseUrl));
  if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}`);
  return parseServerCounters(await response.text());
}

export function serverActivity(before: ServerCounters, after: ServerCounters): ServerActivity {
  const meanMs = (count: keyof ServerCounters, seconds: keyof ServerCounters) => {
    const n = after[count] - before[count];
    return n > 0 ? ((after[seconds] - before[seconds]) / n) * 1e3 : null;
  };
  return {
    steps: after.steps - before.steps,
    stepMsMean: meanMs("steps", "stepSeconds"),
    adapterLoads: after.adapterLoads - before.adapterLoads,
    adapterEvictions: after.adapterEvictions - before.adapterEvictions,
    preemptions: after.preemptions - before.preemptions,
    stageMsMean: meanMs("stages", "stageSeconds"),
    loadMsMean: meanMs("loads", "loadSeconds"),
    prefillTokens:
      after.prefixQueryTokens -
      before.prefixQueryTokens -
      (after.prefixHitTokens - before.prefixHitTokens),
    prefixHitTokens: after.prefixHitTokens - before.prefixHitTokens,
    kvEvictions: after.kvEvictions - before.kvEvictions,
  };
}
