/**
 * The S-LoRA paper's synthetic workload (Sheng et al. 2023, §7.1): `n` adapters
 * with ranks drawn from a set, adapter popularity by a power law (Zipf, alpha),
 * arrivals by a Gamma process (mean rate, coefficient of variation), input and
 * output lengths uniform in ranges. A trace is a pure function of its spec.
 *
 *   const trace = generateTrace({ ...defaultSpec, numAdapters: 100, numRequests: 500 });
 *   trace.requests[0]; // { id: 0, arrivalS: 0.31, adapter: "adapter-0042", inputLen: 97, ... }
 */
import type { MooncakeSpec } from "./mooncake.ts";
import { Prng } from "./prng.ts";
import type { SaasSpec } from "./saas-chat.ts";

/** Inter-arrival times: Gamma(shape 1/cv², mean 1/rate), or every request at t = 0. */
export type ArrivalSpec = { kind: "gamma"; rate: number; cv: number } | { kind: "burst" };

/** How a request picks its adapter: power law over adapter index, or request i → adapter i mod n. */
export type AssignmentSpec = { kind: "zipf"; alpha: number } | { kind: "round-robin" };

export interface WorkloadSpec {
  kind: "synthetic";
  seed: number;
  /** 0 = every request goes to the base model. */
  numAdapters: number;
  /** Each adapter's rank is drawn uniformly from this set. */
  ranks: number[];
  assignment: AssignmentSpec;
  arrival: ArrivalSpec;
  numRequests: number;
  /** Prompt lengths in tokens, uniform in [lo, hi]. */
  inputLen: [number, number];
  /** Output lengths in tokens, uniform in [lo, hi]; requests ask for exactly this many. */
  outputLen: [number, number];
  /** Prompt token ids are uniform in [lo, hi): keep special ids (bos, eos) below lo. */
  promptTokenIds: [number, number];
  /** Adapter i is named `${adapterPrefix}${i}` zero-padded to 4 digits. */
  adapterPrefix: string;
}

export interface TraceAdapter {
  name: string;
  rank: number;
}

export interface TraceRequest {
  id: number;
  /** Seconds after the trace's start when the request is sent. */
  arrivalS: number;
  /** null = the base model. */
  adapter: string | null;
  inputLen: number;
  outputLen: number;
  /** Token ids, `inputLen` of them. */
  prompt: number[];
}

export interface Trace {
  /** how it was made (written in the trace file's header) */
  spec: WorkloadSpec | MooncakeSpec | SaasSpec;
  adapters: TraceAdapter[];
  requests: TraceRequest[];
}

export class WorkloadSpecError extends Error {
  override name = "WorkloadSpecError";
}

/** The paper's defaults (Table 3/§7.1) at a size that suits a short run. */
export const defaultSpec: WorkloadSpec = {
  kind: "synthetic",
  seed: 0,
  numAdapters: 100,
  ranks: [8, 16, 32, 64],
  assignment: { kind: "zipf", alpha: 1 },
  arrival: { kind: "gamma", rate: 2, cv: 1 },
  numRequests: 100,
  inputLen: [8, 512],
  outputLen: [8, 512],
  promptTokenIds: [3, 32000],
  adapterPrefix: "adapter-",
};

function adapterName(prefix: string, index: number): string {
  return `${prefix}${String(index).padStart(4, "0")}`;
}

export function generateTrace(spec: WorkloadSpec): Trace {
  checkSpec(spec);
  // Independent streams so that, e.g., changing the rate keeps the same
  // adapters, lengths and prompts: sweeps then differ in one variable only.
  const rankRng = new Prng(mix(spec.seed, 1));
  const adapterRng = new Prng(mix(spec.seed, 2));
  const arrivalRng = new Prng(mix(spec.seed, 3));
  const lengthRng = new Prng(mix(spec.seed, 4));
  const promptRng = new Prng(mix(spec.seed, 5));

  const adapters: TraceAdapter[] = [];
  for (let i = 0; i < spec.numAdapters; i++) {
    const rank = spec.ranks[rankRng.int(0, spec.ranks.length - 1)] as number;
    adapters.push({ name: adapterName(spec.adapterPrefix, i), rank });
  }
  const pickAdapter = adapterPicker(spec, adapterRng);

  const requests: TraceRequest[] = [];
  let clock = 0;
  for (let id = 0; id < spec.numRequests; id++) {
    if (spec.arrival.kind === "gamma") clock += interArrival(spec.arrival, arrivalRng);
    const inputLen = lengthRng.int(spec.inputLen[0], spec.inputLen[1]);
    const outputLen = lengthRng.int(spec.outputLen[0], spec.outputLen[1]);
    const [lo, hi] = spec.promptTokenIds;
    const prompt = Array.from({ length: inputLen }, () => promptRng.int(lo, hi - 1));
    const index = pickAdapter(id);
    const adapter = index === null ? null : (adapters[index] as TraceAdapter).name;
    requests.push({ id, arrivalS: clock, adapter, inputLen, outputLen, prompt });
  }
  return { spec, adapters, requests };
}

function interArrival(arrival: { rate: number; cv: number }, rng: Prng): number {
  // Gamma with shape k = 1/cv² and scale θ = 1/(rate·k): mean 1/rate, CV = cv.
  const shape = 1 / (arrival.cv * arrival.cv);
  return rng.gamma(shape) / (arrival.rate * shape);
}

function adapterPicker(spec: WorkloadSpec, rng: Prng): (requestId: number) => number | null {
  const n = spec.numAdapters;
  if (n === 0) return () => null;
  if (spec.assignment.kind === "round-robin") return (id) => id % n;
  const cumulative = zipfCumulative(n, spec.assignment.alpha);
  return () => rng.pickCumulative(cumulative);
}

/** Cumulative weights of P(i) ∝ 1 / (i + 1)^alpha over n: index 0 is the most popular. */
export function zipfCumulative(n: number, alpha: number): number[] {
  const cumulative: number[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += 1 / (i + 1) ** alpha;
    cumulative.push(total);
  }
  return cumulative;
}

function mix(seed: number, stream: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) + stream * 0x632be5ab) >>> 0;
}

function checkSpec(spec: WorkloadSpec): void {
  const fail = (message: string): never => {
    throw new WorkloadSpecError(message);
  };
  const isCount = (x: number) => Number.isSafeInteger(x) && x >= 0;
  if (!Number.isSafeInteger(spec.seed)) fail(`seed must be an integer, got ${spec.seed}`);
  if (!isCount(spec.numAdapters)) fail(`numAdapters must be >= 0, got ${spec.numAdapters}`);
  if (!isCount(spec.numRequests)) fail(`numRequests must be >= 0, got ${spec.numRequests}`);
  if (spec.numAdapters > 0 && spec.ranks.length === 0) fail("ranks must not be empty");
  for (const rank of spec.ranks) if (!(isCount(rank) && rank > 0)) fail(`bad rank ${rank}`);
  if (spec.assignment.kind === "zipf" && !(spec.assignment.alpha >= 0)) {
    fail(`zipf alpha must be >= 0, got ${spec.assignment.alpha}`);
  }
  if (spec.arrival.kind === "gamma") {
    const { rate, cv } = spec.arrival;
    if (!(rate > 0 && Number.isFinite(rate))) fail(`rate must be a positive number, got ${rate}`);
    if (!(cv > 0 && Number.isFinite(cv))) fail(`cv must be a positive number, got ${cv}`);
  }
  for (const [name, [lo, hi]] of [
    ["inputLen", spec.inputLen],
    ["outputLen", spec.outputLen],
  ] as const) {
    if (!(isCount(lo) && isCount(hi) && lo >= 1 && lo <= hi)) {
      fail(`${name} must be a range 1 <= lo <= hi, got [${lo}, ${hi}]`);
    }
  }
  const [lo, hi] = spec.promptTokenIds;
  if (!(isCount(lo) && isCount(hi) && lo < hi)) {
    fail(`promptTokenIds must be a range 0 <= lo < hi, got [${lo}, ${hi}]`);
  }
}
