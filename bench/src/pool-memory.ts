/**
 * Pool memory of Unified Paging (issue 7, target 7), from the engine's own allocation:
 * how many adapters fit resident beside the KV cache a batch needs, whether pages that
 * evicted adapters free are reused as KV, and fragmentation. Page counts do not depend on
 * the GPU, so this runs the real Engine (pure TS) against the engine's SimulatedExecutor
 * (a test double of the executor's outputs that checks PROTOCOL.md's page contract), with
 * Llama-2-7B's shapes and the pool an 80 GB H100 has left after the weights.
 *
 *   node bench/src/pool-memory.ts                 # Llama-2-7B, H100 80 GB: ~1 min
 *   node bench/src/pool-memory.ts --smoke         # tiny shapes, a second (CI)
 *   node bench/src/pool-memory.ts --out FILE      # default bench/results/cpu/pool-memory.json
 *
 * The full run also sets `fragmentation` under summary.json's "cpu-engine" key (page counts
 * do not depend on the GPU; the GPU-named entries keep theirs for measured figures).
 *
 * One run per adapter rank (and one of mixed ranks) and per pool sharing (unified, and the
 * no-unifymem split at --adapter-pool-fraction): `batch` base-model requests of
 * `tokensPerSeq` tokens each are admitted first (maxNumSeqs = batch); behind them wait
 * requests on as many distinct adapters as could fill the whole pool, all in the prefetch
 * window, so the engine loads adapters into every page the batch's KV leaves free, and
 * evicts them again as the batch's KV grows. Measured at the step where the batch's KV
 * peaks: resident adapters and free pages. Then the queued requests run, wave by wave.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import type { PoolSharing } from "../../gpu-backend/src/engine/allocator.ts";
import {
  createEngine,
  createRequests,
  drive,
  HOST_BYTES_PER_PAGE,
  SimulatedExecutor,
  testModel,
} from "../../gpu-backend/src/engine/testing.ts";
import type { ModelInfo } from "../../gpu-backend/src/protocol/messages.ts";
import { currentGitSha } from "./git-sha.ts";

const repoRoot = join(import.meta.dirname, "../..");

/** The model and device the pool is sized for. */
export interface PoolShape {
  name: string;
  numLayers: number;
  /** W: one token's K (or V) of one layer, num_kv_heads × head_dim */
  pageWidth: number;
  dtypeBytes: number;
  /** [in, out] of the LoRA-targeted projections */
  modules: Record<string, [number, number]>;
  /** bytes of the base weights */
  weightBytes: number;
  deviceBytes: number;
  /** share of device memory the executor may use (the server's --gpu-memory-utilization) */
  gpuMemoryUtilization: number;
  batch: number;
  tokensPerSeq: number;
  ranks: number[];
}

const h = 4096;
const inter = 11008;
const llama2_7b = {
  numLayers: 32,
  pageWidth: 4096,
  dtypeBytes: 2,
  // embed + lm_head + 32 × (q k v o + gate up down), norms left out (< 0.01%)
  weightBytes: 2 * (2 * 32000 * h + 32 * (4 * h * h + 3 * h * inter)),
};

export const SHAPES: Record<"llama-2-7b" | "smoke", PoolShape> = {
  "llama-2-7b": {
    name: "llama-2-7b on an 80 GB H100",
    ...llama2_7b,
    modules: { q: [h, h], k: [h, h], v: [h, h], o: [h, h] },
    deviceBytes: 80e9,
    gpuMemoryUtilization: 0.9,
    batch: 64,
    tokensPerSeq: 1024,
    ranks: [8, 16, 32, 64],
  },
  smoke: {
    name: "tiny",
    numLayers: 2,
    pageWidth: 64,
    dtypeBytes: 2,
    modules: { q: [64, 64], k: [64, 32], v: [64, 32], o: [64, 64] },
    weightBytes: 0,
    deviceBytes: 2 * 64 * 2 * 2400,
    gpuMemoryUtilization: 1,
    batch: 4,
    tokensPerSeq: 64,
    ranks: [4, 8],
  },
};

export function pageBytes(s: PoolShape): number {
  return s.numLayers * s.pageWidth * s.dtypeBytes;
}

/** Pages left for the unified pool once the weights are in (activations left out). */
export function poolPages(s: PoolShape): number {
  return Math.floor((s.deviceBytes * s.gpuMemoryUtilization - s.weightBytes) / pageBytes(s));
}

/** PROTOCOL.md's page layout: r rows of A and r rows of Bᵀ per module, ceil(L / W) pages a row. */
export function adapterPages(s: PoolShape, rank: number): { pages: number; usedElements: number } {
  let pages = 0;
  let usedElements = 0;
  for (const [fanIn, fanOut] of Object.values(s.modules)) {
    pages += rank * (Math.ceil(fanIn / s.pageWidth) + Math.ceil(fanOut / s.pageWidth));
    usedElements += rank * (fanIn + fanOut);
  }
  return { pages, usedElements };
}

export interface FitRun {
  sharing: "unified" | "split";
  ranks: number[];
  /** pages KV held at the batch's peak (2 per token) */
  peakKvPages: number;
  /** every request of the batch held its whole KV at once (a split pool's KV share may not fit it) */
  batchResidentAtOnce: boolean;
  residentAdaptersAtPeak: number;
  adapterPagesAtPeak: number;
  freePagesAtPeak: number;
  /** adapters the pages left beside the batch's KV could hold, by arithmetic */
  expectedResident: number;
  /** page ids that held adapter weights and later KV / KV and later adapter weights */
  adapterPagesReusedAsKv: number;
  kvPagesReusedForAdapters: number;
  /** (free pages nobody could use + row tails of resident adapters) / pool, at the peak */
  fragmentation: number;
  evictions: number;
  preemptions: number;
  steps: number;
}

/** Adapter names carry their rank; the simulated executor stages them with their page count. */
const adapterName = (rank: number, index: number): string => `r${rank}-${index}`;
const rankOf = (name: string): number => Number(name.slice(1, name.indexOf("-")));

export function fitRun(s: PoolShape, ranks: number[], sharing: PoolSharing): FitRun {
  const numPages = poolPages(s);
  const model: ModelInfo = testModel({
    numPages,
    pageWidth: s.pageWidth,
    numLayers: s.numLayers,
    maxPosition: Math.max(2048, s.tokensPerSeq),
    // The host tier stages any of them (SimulatedExecutor's host bytes are per page).
    maxAdapterHostBytes:
      Math.max(...ranks.map((r) => adapterPages(s, r).pages)) * HOST_BYTES_PER_PAGE,
  });
  const kvPages = 2 * s.batch * s.tokensPerSeq;
  const meanPages = ranks.reduce((sum, r) => sum + adapterPages(s, r).pages, 0) / ranks.length;
  // Enough distinct adapters to fill the whole pool: the prefetch is what fills it.
  const numQueued = Math.ceil(numPages / meanPages);
  const engine = createEngine(
    {
      maxNumSeqs: s.batch,
      // The whole batch prefills in one step, so its requests hold their full KV together.
      maxNumBatchedTokens: s.batch * s.tokensPerSeq,
      maxInFlightSteps: 2,
      maxLoras: numQueued + 1,
      maxCpuLoras: numQueued + 1,
      prefetchWindow: numQueued,
      poolSharing: sharing,
      // Page accounting of distinct requests: createRequests' prompts share their first
      // tokens, which the prefix cache would store once.
      enablePrefixCaching: false,
    },
    model,
  );
  const decode = 8;
  const batch = createRequests({
    numRequests: s.batch,
    idPrefix: "batch",
    // The last sampled token is never fed back: prompt + decode - 1 tokens take KV.
    promptLength: () => s.tokensPerSeq - decode + 1,
    maxTokens: () => decode,
  });
  const queued = createRequests({
    numRequests: numQueued,
    idPrefix: "q",
    adapter: (k) => adapterName(ranks[k % ranks.length] as number, k),
    promptLength: () => 4,
    maxTokens: () => 1,
  });
  for (const req of [...batch, ...queued]) engine.addRequest(req);
  const sim = new SimulatedExecutor(model, (name) => adapterPages(s, rankOf(name)).pages);
  // Page ids by their last use: reuse across uses is what Unified Paging is for.
  const lastUse = new Int8Array(numPages); // 0 never, 1 KV, 2 adapter
  let adapterToKv = 0;
  let kvToAdapter = 0;
  const adapterIdPages = new Map<number, number>();
  let peak = { kv: -1, resident: 0, adapterPages: 0, free: 0, tailWaste: 0 };
  let steps = 0;
  const outputs = drive(engine, sim, {
    maxSteps: 1_000_000,
    afterSchedule: ({ plan, adapterOps }) => {
      steps++;
      for (const op of adapterOps) {
        if (op.kind !== "load") continue;
        for (const page of op.pages) {
          if (lastUse[page] === 1) kvToAdapter++;
          lastUse[page] = 2;
        }
        adapterIdPages.set(op.adapterId, op.pages.length);
      }
      for (const page of plan?.kvPages ?? []) {
        if (lastUse[page] === 2) adapterToKv++;
        lastUse[page] = 1;
      }
      const stats = engine.stats();
      if (stats.pages.kv > peak.kv) {
        const resident = stats.adapters.resident + stats.adapters.loading;
        peak = {
          kv: stats.pages.kv,
          resident,
          adapterPages: stats.pages.adapter,
          free: stats.pages.free + stats.pages.fenced,
          // Row tails: the pages of resident adapters beyond the elements they hold.
          tailWaste: stats.pages.adapter - residentElements(s, stats.pages.adapter, ranks),
        };
      }
    },
  });
  const stats = engine.stats();
  const unserved = [...batch, ...queued].filter(
    (r) => outputs.get(r.id)?.at(-1)?.finishReason !== "length",
  );
  if (unserved.length > 0) {
    throw new Error(
      `${unserved.length} requests did not run to their end, e.g. ${unserved[0]?.id}`,
    );
  }
  const adapterShare =
    sharing === "unified"
      ? numPages - kvPages
      : Math.min(numPages - 1, Math.max(1, Math.round(numPages * sharing.adapterFraction)));
  return {
    sharing: sharing === "unified" ? "unified" : "split",
    ranks,
    peakKvPages: peak.kv,
    batchResidentAtOnce: peak.kv >= kvPages,
    residentAdaptersAtPeak: peak.resident,
    adapterPagesAtPeak: peak.adapterPages,
    freePagesAtPeak: peak.free,
    expectedResident: Math.floor(Math.max(0, adapterShare) / meanPages),
    adapterPagesReusedAsKv: adapterToKv,
    kvPagesReusedForAdapters: kvToAdapter,
    fragmentation: (peak.free + peak.tailWaste) / numPages,
    evictions: stats.adapters.evictions,
    preemptions: stats.preemptions,
    steps,
  };
}

/** Pages' worth of elements that `adapterPageCount` pages of these ranks' adapters hold. */
function residentElements(s: PoolShape, adapterPageCount: number, ranks: number[]): number {
  const per = ranks.map((r) => adapterPages(s, r));
  const pages = per.reduce((sum, a) => sum + a.pages, 0);
  const used = per.reduce((sum, a) => sum + a.usedElements, 0) / s.pageWidth;
  return (adapterPageCount * used) / pages;
}

export interface PoolMemoryResult {
  schema: 1;
  bench: "pool-memory";
  device: "cpu-engine";
  shape: PoolShape;
  pool: { pages: number; pageBytes: number; bytes: number; formula: string };
  batchKvPages: number;
  /** per rank: pages per adapter and its row-tail waste, q/k/v/o and all seven modules */
  adapterLayout: { rank: number; pages: number; tailWaste: number; allModulesTailWaste: number }[];
  runs: FitRun[];
  /** headline: the worst fragmentation of the unified runs (issue 7: below 5%) */
  fragmentation: number;
  gitSha: string | null;
  command: string;
}

export function poolMemory(s: PoolShape, adapterFraction: number): PoolMemoryResult {
  const numPages = poolPages(s);
  const rankSets = [...s.ranks.map((r) => [r]), s.ranks];
  const runs: FitRun[] = [];
  for (const ranks of rankSets) {
    runs.push(fitRun(s, ranks, "unified"));
    runs.push(fitRun(s, ranks, { adapterFraction }));
  }
  const allModules: PoolShape = {
    ...s,
    modules: {
      ...s.modules,
      gate: [s.modules.q?.[0] ?? 0, inter],
      up: [s.modules.q?.[0] ?? 0, inter],
      down: [inter, s.modules.q?.[0] ?? 0],
    },
  };
  const waste = (shape: PoolShape, r: number): number => {
    const a = adapterPages(shape, r);
    return 1 - a.usedElements / (a.pages * shape.pageWidth);
  };
  return {
    schema: 1,
    bench: "pool-memory",
    device: "cpu-engine",
    shape: s,
    pool: {
      pages: numPages,
      pageBytes: pageBytes(s),
      bytes: numPages * pageBytes(s),
      formula:
        "floor((deviceBytes × gpuMemoryUtilization − weightBytes) / (numLayers × W × dtypeBytes))",
    },
    batchKvPages: 2 * s.batch * s.tokensPerSeq,
    adapterLayout: s.ranks.map((r) => ({
      rank: r,
      pages: adapterPages(s, r).pages,
      tailWaste: waste(s, r),
      allModulesTailWaste: waste(allModules, r),
    })),
    runs,
    fragmentation: Math.max(
      ...runs.filter((r) => r.sharing === "unified").map((r) => r.fragmentation),
    ),
    gitSha: currentGitSha(repoRoot),
    command: ["node", "bench/src/pool-memory.ts", ...process.argv.slice(2)].join(" "),
  };
}

/** summary.json's "cpu-engine" entry: the device-independent headline, beside the GPUs'. */
function mergeSummary(path: string, result: PoolMemoryResult, resultFile: string): void {
  const summary = existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : {};
  summary["cpu-engine"] = {
    ...summary["cpu-engine"],
    fragmentation: result.fragmentation,
    command: result.command,
    git_sha: result.gitSha,
    device: `cpu-engine: Engine + SimulatedExecutor page accounting, ${result.shape.name}`,
    sources: { fragmentation: resultFile.slice(dirname(path).length + 1) },
    measured_at: { fragmentation: result.gitSha },
  };
  writeFileSync(path, `${JSON.stringify(summary, null, 2)}\n`);
}

function main(): void {
  const { values } = parseArgs({
    options: {
      smoke: { type: "boolean", default: false },
      out: { type: "string" },
      "adapter-pool-fraction": { type: "string", default: "0.5" },
      summary: { type: "string", default: join(repoRoot, "bench/results/summary.json") },
    },
  });
  const shape = values.smoke ? SHAPES.smoke : SHAPES["llama-2-7b"];
  const result = poolMemory(shape, Number(values["adapter-pool-fraction"]));
  const out = values.out ?? join(repoRoot, "bench/results/cpu/pool-memory.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  if (!values.smoke) mergeSummary(values.summary, result, out);
  for (const r of result.runs) {
    console.log(
      `${r.sharing.padEnd(7)} ranks ${r.ranks.join("/").padEnd(11)} resident ${r.residentAdaptersAtPeak} ` +
        `(expected ${r.expectedResident}) beside ${r.peakKvPages} KV pages; whole batch at once ${r.batchResidentAtOnce}; ` +
        `adapter->KV reuse ${r.adapterPagesReusedAsKv} pages; fragmentation ${(100 * r.fragmentation).toFixed(3)}%; ` +
        `preemptions ${r.preemptions}, evictions ${r.evictions}`,
    );
  }
  console.log(out);
}

if (import.meta.main) main();
