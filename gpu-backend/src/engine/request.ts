import type { ModelInfo } from "../protocol/messages.ts";
import { InvalidRequestError } from "./errors.ts";

/** A LoRA adapter by name; `path` is a local PEFT directory the server has already resolved. */
export interface AdapterRef {
  name: string;
  path: string;
  /** of its weights (and config): part of the prefix cache's key, so new weights under an old name never meet old KV */
  sha256: string;
}

/** Per-request sampling, in the executor's units (PROTOCOL.md `step`). */
export interface SamplingParams {
  /** 0 = greedy */
  temperature: number;
  /** 1 = off */
  topP: number;
  /** 0 = off */
  topK: number;
  /** 0 = off */
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** 1 = off */
  repetitionPenalty: number;
  /** integer >= 0, null = none */
  seed: number | null;
  /** null = none, 0 = the sampled token's only, n <= 20 = also the top n */
  logprobs: number | null;
}

export interface EngineRequest {
  /** unique among unfinished requests */
  id: string;
  /** the unit of fair sharing */
  tenant: string;
  /** prefix caching: only requests of one salt share KV (the tenant, or the gateway's cache_salt) */
  cacheSalt: string;
  /** null = base model */
  adapter: AdapterRef | null;
  promptTokenIds: number[];
  sampling: SamplingParams;
  maxTokens: number;
  /** finish "stop" when one is sampled, as EOS does */
  stopTokenIds: number[];
  /** true: the model's EOS tokens do not finish the request (unless it has a grammar) */
  ignoreEos: boolean;
  /**
   * A grammar the executor compiled (compile_grammar) that constrains every sample; its
   * end is an EOS, which then always finishes the request. null = unconstrained.
   */
  grammarId: number | null;
  /** absolute ms; still unfinished at this time = finish "deadline"; null = none */
  deadlineMs: number | null;
  /** absolute ms */
  arrivalMs: number;
}

const MAX_TOP_LOGPROBS = 20;
const INT32_MAX = 2 ** 31 - 1;

/**
 * Throws InvalidRequestError naming the first field the executor or the model cannot take.
 * The context length (prompt + maxTokens within the model's positions) is admission's to
 * check (serving/admission.ts), before a request gets here.
 */
export function validateRequest(req: EngineRequest, model: ModelInfo): void {
  const fail = (message: string): never => {
    throw new InvalidRequestError(`request ${JSON.stringify(req.id)}: ${message}`);
  };
  if (typeof req.id !== "string" || req.id.length === 0) fail("id must be a non-empty string");
  if (typeof req.tenant !== "string" || req.tenant.length === 0) {
    fail("tenant must be a non-empty string");
  }
  if (typeof req.cacheSalt !== "string") fail("cacheSalt must be a string");
  if (
    req.adapter !== null &&
    (req.adapter.name.length === 0 || req.adapter.path.length === 0 || !req.adapter.sha256)
  ) {
    fail("adapter needs a name, a path and a sha256");
  }
  if (req.promptTokenIds.length === 0) fail("prompt is empty");
  for (const [i, token] of [...req.promptTokenIds, ...req.stopTokenIds].entries()) {
    if (!Number.isInteger(token) || token < 0 || token >= model.vocabSize) {
      fail(`token ${token} (#${i} of prompt + stop tokens) is outside the vocabulary`);
    }
  }
  if (!Number.isSafeInteger(req.maxTokens) || req.maxTokens < 1) {
    fail(`maxTokens must be a positive integer, got ${req.maxTokens}`);
  }
  if (!Number.isFinite(req.arrivalMs)) fail("arrivalMs must be a finite number");
  if (
    req.grammarId !== null &&
    !(Number.isInteger(req.grammarId) && req.grammarId >= 0 && req.grammarId <= INT32_MAX)
  ) {
    fail(`grammarId must be null or an integer in [0, ${INT32_MAX}], got ${req.grammarId}`);
  }
  if (req.deadlineMs !== null && !Number.isFinite(req.deadlineMs)) {
    fail("deadlineMs must be a finite number or null");
  }
  validateSampling(req.sampling, fail);
}

function validateSampling(s: SamplingParams, fail: (message: string) => never): void {
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) {
    fail(`temperature must be >= 0, got ${s.temperature}`);
  }
  // The step plan carries sampling as float32 / int32 (PROTOCOL.md `step`): a value that
  // rounds to 0 or wraps there would make the executor refuse the whole step, failing
  // every request batched with it.
  if (!(s.topP > 0 && s.topP <= 1 && Math.fround(s.topP) > 0)) {
    fail(`topP must be in (0, 1] (and > 0 as float32), got ${s.topP}`);
  }
  if (!Number.isInteger(s.topK) || s.topK < 0 || s.topK > INT32_MAX) {
    fail(`topK must be an integer in [0, ${INT32_MAX}], got ${s.topK}`);
  }
  if (!(s.minP >= 0 && s.minP <= 1)) fail(`minP must be in [0, 1], got ${s.minP}`);
  for (const key of ["presencePenalty", "frequencyPenalty"] as const) {
    if (!(s[key] >= -2 && s[key] <= 2)) fail(`${key} must be in [-2, 2], got ${s[key]}`);
  }
  if (!(Math.fround(s.repetitionPenalty) > 0) || !Number.isFinite(s.repetitionPenalty)) {
    fail(`repetitionPenalty must be > 0 (also as float32), got ${s.repetitionPenalty}`);
  }
  if (s.seed !== null && (!Number.isSafeInteger(s.seed) || s.seed < 0)) {
    fail(`seed must be a safe integer >= 0 or null, got ${s.seed}`);
  }
  if (
    s.logprobs !== null &&
    (!Number.isInteger(s.logprobs) || s.logprobs < 0 || s.logprobs > MAX_TOP_LOGPROBS)
  ) {
    fail(`logprobs must be null or an integer in [0, ${MAX_TOP_LOGPROBS}], got ${s.logprobs}`);
  }
}
