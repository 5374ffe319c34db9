// The engine's public surface (README.md): the server's loop and the executor client import
// from here only.
export type { AdapterOp, AdapterStats } from "./adapters.ts";
export type { PageStats } from "./allocator.ts";
export { defaultEngineConfig, type EngineConfig, validateEngineConfig } from "./config.ts";
export { Engine, type EngineStats, type ScheduledStep, type TenantStats } from "./engine.ts";
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
export type { AdapterRef, EngineRequest, SamplingParams } from "./request.ts";
