// The engine's public surface (README.md): the serving loop and the server import from here
// only. The records it exchanges with the executor are in ../protocol/messages.ts.
export type { AdapterOp, AdapterStats } from "./adapters.ts";
export type { PageStats } from "./allocator.ts";
export { defaultEngineConfig, type EngineConfig, validateEngineConfig } from "./config.ts";
export {
  Engine,
  type EngineDeps,
  type EngineStats,
  type ScheduledStep,
  type TenantStats,
} from "./engine.ts";
export {
  AdapterInUseError,
  DuplicateRequestError,
  EngineConfigError,
  InvalidRequestError,
  PageAllocatorError,
  StepResultError,
  UnknownAdapterError,
} from "./errors.ts";
export type { FinishReason, RequestOutput, TokenLogprobs } from "./output.ts";
export type { BlockHasher, PrefixCacheStats } from "./prefix-cache.ts";
export type { AdapterRef, EngineRequest, SamplingParams } from "./request.ts";
