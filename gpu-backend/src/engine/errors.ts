// Named errors of the engine: every bad input or broken contract throws one of these,
// so callers (server, executor client) can map them to a status or a restart.

/** An EngineConfig field out of range. */
export class EngineConfigError extends Error {
  override name = "EngineConfigError";
}

/** A request the engine cannot serve as given (empty prompt, too long, bad sampling). */
export class InvalidRequestError extends Error {
  override name = "InvalidRequestError";
}

/** addRequest with the id of a request that is still unfinished. */
export class DuplicateRequestError extends Error {
  override name = "DuplicateRequestError";
}

/**
 * A step result the engine did not ask for: not the oldest step in flight, rows that are not
 * its sampled seqs in order, or a token outside the vocabulary. Engine and executor disagree:
 * restart the executor.
 */
export class StepResultError extends Error {
  override name = "StepResultError";
}

/** An adapter outcome for an adapter id the engine is not waiting on. */
export class UnknownAdapterError extends Error {
  override name = "UnknownAdapterError";
}

/** unloadAdapter while waiting or running requests still name the adapter. */
export class AdapterInUseError extends Error {
  override name = "AdapterInUseError";
}

/** The page allocator was asked for more pages than it can give, or to free pages it did not give. */
export class PageAllocatorError extends Error {
  override name = "PageAllocatorError";
}
