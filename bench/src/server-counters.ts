/**
 * What the backend itself counted during one run, from its Prometheus /metrics before
 * and after: how many steps the executor ran and how long each took on average, and
 * the adapter traffic. Next to the client's latencies this says where time went
 * (executor step vs everything around it).
 */

const COUNTERS = {
  steps: "lorafleet_step_seconds_count",
  stepSeconds: "lorafleet_step_seconds_sum",
  adapterLoads: "lorafleet_adapter_loads_total",
  adapterEvictions: "lorafleet_adapter_evictions_total",
  preemptions: "lorafleet_preemptions_total",
} as const;

export type ServerCounters = Record<keyof typeof COUNTERS, number>;

export interface ServerActivity {
  steps: number;
  /** mean wall time per step (steps overlap: each from the result before it), ms */
  stepMsMean: number | null;
  adapterLoads: number;
  adapterEvictions: number;
  preemptions: number;
}

/** Reads the counters out of a Prometheus text exposition (unlabelled samples only). */
export function parseServerCounters(text: string): ServerCounters {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*) ([-+.\deE]+|NaN)$/.exec(line.trim());
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
  const steps = after.steps - before.steps;
  return {
    steps,
    stepMsMean: steps > 0 ? ((after.stepSeconds - before.stepSeconds) / steps) * 1e3 : null,
    adapterLoads: after.adapterLoads - before.adapterLoads,
    adapterEvictions: after.adapterEvictions - before.adapterEvictions,
    preemptions: after.preemptions - before.preemptions,
  };
}
