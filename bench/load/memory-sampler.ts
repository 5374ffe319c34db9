// Resident memory of the processes under load, sampled from /proc at a fixed interval,
// and whether it stays flat: over a soak, a leak shows as growth between the first and
// the last part of the run, after a warm-up in which pools and caches fill.
import { readFileSync } from "node:fs";

export interface MemorySample {
  /** seconds since sampling started */
  t: number;
  /** resident set size per pid, in MiB (0 once a process is gone) */
  rssMiB: Record<string, number>;
  totalMiB: number;
}

export interface Flatness {
  /** the samples judged: after the warm-up */
  warmupS: number;
  /** median total RSS over the first and the last fifth of the judged samples */
  startMiB: number;
  endMiB: number;
  growthMiB: number;
  /** least-squares slope of total RSS over the judged samples */
  slopeMiBPerMin: number;
}

export function rssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
    return Math.round((kb / 1024) * 10) / 10;
  } catch {
    return 0;
  }
}

export class MemorySampler {
  readonly samples: MemorySample[] = [];
  readonly #pids: () => number[];
  readonly #started = performance.now();
  readonly #timer: NodeJS.Timeout;

  /** `pids` is asked at every sample: a restarted executor has a new pid. */
  constructor(pids: () => number[], intervalMs: number) {
    this.#pids = pids;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    const rss: Record<string, number> = {};
    for (const pid of this.#pids()) rss[pid] = rssMiB(pid);
    const total = Object.values(rss).reduce((a, b) => a + b, 0);
    const t = Math.round((performance.now() - this.#started) / 100) / 10;
    this.samples.push({ t, rssMiB: rss, totalMiB: Math.round(total * 10) / 10 });
  }

  stop(): MemorySample[] {
    clearInterval(this.#timer);
    this.sample();
    return this.samples;
  }
}

/** @example flatness(samples, 60) // { startMiB: 410, endMiB: 412, growthMiB: 2, ... } */
export function flatness(samples: readonly MemorySample[], warmupS: number): Flatness | null {
  const judged = samples.filter((s) => s.t >= warmupS);
  if (judged.length < 5) return null;
  const fifth = Math.max(1, Math.floor(judged.length / 5));
  const median = (part: readonly MemorySample[]) => {
    const sorted = part.map((s) => s.totalMiB).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? 0;
  };
  const startMiB = median(judged.slice(0, fifth));
  const endMiB = median(judged.slice(-fifth));
  const n = judged.length;
  const meanT = judged.reduce((a, s) => a + s.t, 0) / n;
  const meanM = judged.reduce((a, s) => a + s.totalMiB, 0) / n;
  const cov = judged.reduce((a, s) => a + (s.t - meanT) * (s.totalMiB - meanM), 0);
  const varT = judged.reduce((a, s) => a + (s.t - meanT) ** 2, 0);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    warmupS,
    startMiB,
    endMiB,
    growthMiB: round(endMiB - startMiB),
    slopeMiBPerMin: round(varT === 0 ? 0 : (cov / varT) * 60),
  };
}
