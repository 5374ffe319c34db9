// POST /v1/completions: one or many prompts (text or token ids), n choices each;
// choice index = prompt index × n + choice, as OpenAI numbers them.
import { BackendCompletionRequestSchema, type CompletionRequest } from "@lorafleet/api";
import type { Context } from "hono";
import type { Admission } from "../serving/admission.ts";
import { outputConstraint } from "../structured/output-grammar.ts";
import type { ModelTokenizer } from "../tokenizer/tokenizer.ts";
import type { AppContext } from "./app-context.ts";
import { reworded } from "./chat-plan.ts";
import { awaitFirstOutputs, collectChoices, startChoices, usageOf } from "./choices.ts";
import { type Caller, encodePrompt, FREE_TEXT, generateRequest } from "./generation-request.ts";
import { completionId, completionLogprobs, nowSeconds } from "./openai-format.ts";
import { callerOf, parseBody } from "./parse-body.ts";
import { hasNews, streamChoices } from "./stream-choices.ts";

function promptIdsOf(
  prompt: CompletionRequest["prompt"],
  tokenizer: ModelTokenizer,
  admission: Admission,
): number[][] {
  const encode = (text: string) =>
    encodePrompt(tokenizer, { text, encode: () => tokenizer.encode(text, true) }, admission);
  if (typeof prompt === "string") return [encode(prompt)];
  if (prompt.every((item) => typeof item === "number")) return [prompt as number[]];
  return (prompt as (string | number[])[]).map((item) =>
    typeof item === "string" ? encode(item) : item,
  );
}

async function startCompletion(
  app: AppContext,
  body: CompletionRequest,
  caller: Caller,
  signal: AbortSignal,
) {
  const constraint = outputConstraint(body);
  const output =
    constraint === null ? FREE_TEXT : { grammar: constraint.spec, keepSpecialTokens: false };
  const prompts = promptIdsOf(body.prompt, app.tokenizer, app.serving.admission);
  const logprobs = body.logprobs ?? null;
  // The completions API's default max_tokens is 16.
  const requests = prompts.map((ids) =>
    generateRequest(body, caller, ids, body.max_tokens ?? 16, logprobs, output),
  );
  try {
    const choices = await startChoices(app.serving, requests, body.n ?? 1, signal);
    return { promptLengths: prompts.map((ids) => ids.length), logprobs, choices };
  } catch (error) {
    const origin = constraint && { param: constraint.param, schema: constraint.schema };
    throw reworded(error, origin);
  }
}

/** A whole (non-streamed) text completion; also what /internal/batch answers per item. */
export async function completionJson(
  app: AppContext,
  body: CompletionRequest,
  caller: Caller,
  signal: AbortSignal,
) {
  const { promptLengths, logprobs, choices } = await startCompletion(app, body, caller, signal);
  const collected = await collectChoices(choices);
  return {
    id: completionId("cmpl"),
    object: "text_completion",
    created: nowSeconds(),
    model: body.model,
    choices: collected.map((choice) => ({
      index: choice.index,
      text: choice.text,
      logprobs: logprobs === null ? null : completionLogprobs(choice.tokens, 0),
      finish_reason: choice.finishReason,
    })),
    usage: usageOf(promptLengths, collected),
  };
}

export function completions(app: AppContext) {
  return async function completionsHandler(c: Context) {
    const body = await parseBody(c, BackendCompletionRequestSchema, app.maxBodyBytes);
    const caller = callerOf(app, body.lorafleet ?? null);
    const signal = c.req.raw.signal;
    if (!body.stream) return c.json(await completionJson(app, body, caller, signal));

    const { promptLengths, logprobs, choices } = await startCompletion(app, body, caller, signal);
    await awaitFirstOutputs(choices);
    // A choice's logprobs offsets count the text it streamed so far.
    const textLength = new Map<number, number>();
    return streamChoices(c, choices, {
      kind: "completion",
      model: body.model,
      includeUsage: body.stream_options?.include_usage === true,
      continuousUsage: body.stream_options?.continuous_usage_stats === true,
      promptLengths,
      opening: [],
      choicesOf: (index, delta) => {
        if (!hasNews(delta, logprobs !== null)) return [];
        const offset = textLength.get(index) ?? 0;
        textLength.set(index, offset + delta.text.length);
        return [
          {
            index,
            text: delta.text,
            logprobs: logprobs === null ? null : completionLogprobs(delta.tokens, offset),
            finish_reason: delta.finishReason,
          },
        ];
      },
    });
  };
}
