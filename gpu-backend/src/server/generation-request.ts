// From a validated OpenAI body to the serving loop's GenerateRequest: which model or
// adapter, sampling in the executor's units, tenant and deadline from the gateway.
import type { LorafleetField } from "@lorafleet/api";
import type { SamplingParams } from "../engine/index.ts";
import type { GrammarSpec } from "../protocol/messages.ts";
import type { Admission } from "../serving/admission.ts";
import type { GenerateRequest } from "../serving/serving-loop.ts";
import type { ModelTokenizer, Prompt } from "../tokenizer/tokenizer.ts";

/** What both endpoints share after validation. */
export interface SamplingBody {
  model: string;
  temperature?: number | null | undefined;
  top_p?: number | null | undefined;
  top_k?: number | null | undefined;
  min_p?: number | null | undefined;
  seed?: number | null | undefined;
  presence_penalty?: number | null | undefined;
  frequency_penalty?: number | null | undefined;
  repetition_penalty?: number | null | undefined;
  stop: string[];
  stop_token_ids?: number[] | null | undefined;
  ignore_eos?: boolean | null | undefined;
}

/** Who is asking: the gateway's envelope when it came with the backend secret, else a direct caller. */
export interface Caller {
  servedModelName: string;
  lorafleet: LorafleetField | null;
}

const DIRECT_TENANT = "default";

/** What constrains a request's output, and how its text is decoded. */
export interface OutputShape {
  grammar: GrammarSpec | null;
  /** special tokens kept in the text (a tool-call format opened by one, e.g. [TOOL_CALLS]) */
  keepSpecialTokens: boolean;
}

export const FREE_TEXT: OutputShape = { grammar: null, keepSpecialTokens: false };

/**
 * @param logprobs null = none, 0 = sampled token only, n = also the top n
 * @example generateRequest(body, caller, promptIds, 16, null, FREE_TEXT)
 */
export function generateRequest(
  body: SamplingBody,
  caller: Caller,
  promptIds: number[],
  maxTokens: number | null,
  logprobs: number | null,
  output: OutputShape,
): Omit<GenerateRequest, "sampling"> & { sampling: SamplingParams } {
  const gateway = caller.lorafleet;
  const sampling: SamplingParams = {
    // OpenAI's default temperature is 1.
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    // vLLM writes "off" as -1, the executor as 0.
    topK: body.top_k == null || body.top_k < 0 ? 0 : body.top_k,
    minP: body.min_p ?? 0,
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    repetitionPenalty: body.repetition_penalty ?? 1,
    seed: body.seed ?? null,
    logprobs,
  };
  const tenant = gateway?.tenant ?? DIRECT_TENANT;
  return {
    tenant,
    // Only requests of one salt share cached KV: the tenant unless the gateway sets one.
    cacheSalt: gateway?.cache_salt ?? tenant,
    adapterName: gateway || body.model === caller.servedModelName ? null : body.model,
    remoteAdapter: gateway?.adapter
      ? {
          id: gateway.adapter.id,
          name: gateway.adapter.name,
          sha256: gateway.adapter.sha256,
          configUrl: gateway.adapter.config_url,
          weightsUrl: gateway.adapter.weights_url,
        }
      : null,
    promptIds,
    sampling,
    maxTokens,
    stop: body.stop,
    stopTokenIds: body.stop_token_ids ?? [],
    ignoreEos: body.ignore_eos ?? false,
    grammar: output.grammar,
    keepSpecialTokens: output.keepSpecialTokens,
    deadlineMs: gateway?.deadline_ms ?? null,
  };
}

/** Choice i of n gets seed + i, so n seeded choices differ yet each is reproducible. */
export function choiceRequest(request: GenerateRequest, choice: number): GenerateRequest {
  const seed = request.sampling.seed;
  return seed === null || choice === 0
    ? request
    : { ...request, sampling: { ...request.sampling, seed: seed + choice } };
}

/** The prompt's token ids, once admission has looked at the text (too long to encode?). */
export function encodePrompt(
  tokenizer: ModelTokenizer,
  prompt: Prompt,
  admission: Admission,
): number[] {
  admission.checkPromptText(prompt.text, tokenizer);
  return prompt.encode();
}
