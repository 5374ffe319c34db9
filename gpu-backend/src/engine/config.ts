import type { ModelInfo } from "../protocol/messages.ts";
import type { PoolSharing } from "./allocator.ts";
import { EngineConfigError } from "./errors.ts";

/**
 * Everything the engine's policy depends on; checked once by `validateEngineConfig`. A field
 * that is also a server flag has the flag's name (`maxLoras` = `--max-loras`).
 */
export interface EngineConfig {
  /** admitted (running) requests at most; also the most seqs in one step (--max-num-seqs) */
  maxNumSeqs: number;
  /** tokens per step at most: decode tokens + prefill chunks (--max-num-batched-tokens) */
  maxNumBatchedTokens: number;
  /** steps sent but not answered at most; 2 lets step N+1 be planned while N runs
   * (--max-in-flight-steps) */
  maxInFlightSteps: number;
  /** adapters in the GPU pool at most (--max-loras) */
  maxLoras: number;
  /** adapters in the executor's host tier at most, resident ones too (--max-cpu-loras); its
   * bytes are the executor's `ready.hostCacheBytes` */
  maxCpuLoras: number;
  /** queued requests (in fair-share order) whose adapters are staged and loaded ahead */
  prefetchWindow: number;
  /** VTC cost of one prompt token (Sheng et al., OSDI 2024: w_p) */
  vtcPromptWeight: number;
  /** VTC cost of one output token (w_q) */
  vtcOutputWeight: number;
  /** "unified" (Unified Paging) or a static split of the pool (the no-unify-mem ablation) */
  poolSharing: PoolSharing;
  /** full blocks of finished and preempted requests stay cached for later prompts to
   * reuse (--enable-prefix-caching) */
  enablePrefixCaching: boolean;
  /** tokens per cached block, the unit of prefix reuse (--prefix-block-size) */
  prefixBlockSize: number;
}

export const MAX_IN_FLIGHT_STEPS = 4;

/**
 * A full config from a few overrides.
 * Example: `defaultEngineConfig({ maxNumSeqs: 64 })`.
 */
export function defaultEngineConfig(overrides: Partial<EngineConfig> = {}): EngineConfig {
  return validateEngineConfig({
    maxNumSeqs: 256,
    maxNumBatchedTokens: 8192,
    maxInFlightSteps: 2,
    maxLoras: 64,
    maxCpuLoras: 256,
    prefetchWindow: 32,
    vtcPromptWeight: 1,
    vtcOutputWeight: 2,
    poolSharing: "unified",
    enablePrefixCaching: true,
    prefixBlockSize: 16,
    ...overrides,
  });
}

export function validateEngineConfig(config: EngineConfig): EngineConfig {
  const positiveInts = [
    "maxNumSeqs",
    "maxNumBatchedTokens",
    "maxInFlightSteps",
    "maxLoras",
    "maxCpuLoras",
    "prefetchWindow",
    "prefixBlockSize",
  ] as const;
  for (const key of positiveInts) {
    const value = config[key];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new EngineConfigError(`${key} must be a positive integer, got ${value}`);
    }
  }
  if (config.maxInFlightSteps > MAX_IN_FLIGHT_STEPS) {
    // Each step in flight holds its seqs' KV pages and a sample that may be wasted (EOS
    // comes back late); beyond a few, the executor already has the next step queued.
    throw new EngineConfigError(
      `maxInFlightSteps must be 1 to ${MAX_IN_FLIGHT_STEPS}, got ${config.maxInFlightSteps}`,
    );
  }
  if (config.maxCpuLoras < config.maxLoras) {
    // A resident adapter keeps its host copy, so the host tier must hold every resident one.
    throw new EngineConfigError(
      `maxCpuLoras (${config.maxCpuLoras}) must be at least maxLoras (${config.maxLoras})`,
    );
  }
  for (const key of ["vtcPromptWeight", "vtcOutputWeight"] as const) {
    const value = config[key];
    if (!Number.isFinite(value) || value <= 0) {
      throw new EngineConfigError(`${key} must be a positive number, got ${value}`);
    }
  }
  if (typeof config.enablePrefixCaching !== "boolean") {
    throw new EngineConfigError(
      `enablePrefixCaching must be true or false, got ${config.enablePrefixCaching}`,
    );
  }
  const sharing = config.poolSharing;
  if (sharing !== "unified") {
    const f = sharing.adapterFraction;
    if (!Number.isFinite(f) || f <= 0 || f >= 1) {
      throw new EngineConfigError(`poolSharing.adapterFraction must be in (0, 1), got ${f}`);
    }
  }
  return config;
}

/** The executor's `ready` fields the engine relies on. */
export function validateModelInfo(model: ModelInfo): ModelInfo {
  for (const key of [
    "numPages",
    "vocabSize",
    "maxPosition",
    "hostCacheBytes",
    "maxAdapterHostBytes",
  ] as const) {
    const value = model[key];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new EngineConfigError(`model ${key} must be a positive integer, got ${value}`);
    }
  }
  if (model.maxAdapterHostBytes > model.hostCacheBytes) {
    // Every stage reserves the largest adapter's bytes until it is staged.
    throw new EngineConfigError(
      `the host tier (${model.hostCacheBytes} bytes) cannot hold one adapter of the largest rank (${model.maxAdapterHostBytes} bytes): raise --host-cache-bytes or lower --max-lora-rank`,
    );
  }
  if (!model.eosTokenIds.every((t) => Number.isInteger(t) && t >= 0 && t < model.vocabSize)) {
    throw new EngineConfigError(
      `model eosTokenIds ${model.eosTokenIds} are not all in the vocabulary`,
    );
  }
  return model;
}
