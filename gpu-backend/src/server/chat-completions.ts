// POST /v1/chat/completions: messages through the model's chat template, n choices,
// whole JSON or SSE chunks (with a usage chunk when stream_options.include_usage).
import { BackendChatCompletionRequestSchema, type ChatCompletionRequest } from "@lorafleet/api";
import type { Context } from "hono";
import type { AppContext } from "./app-context.ts";
import { awaitFirstOutputs, collectChoices, startChoices, usageOf } from "./choices.ts";
import { type Caller, encodePrompt, generateRequest } from "./generation-request.ts";
import { ApiError } from "./openai-error.ts";
import { chatLogprobs, completionId, nowSeconds } from "./openai-format.ts";
import { callerOf, parseBody } from "./parse-body.ts";
import { streamChoices } from "./stream-choices.ts";

/** The prompt of a chat request; throws ApiError / ChatTemplateError for what cannot render. */
function chatPromptIds(app: AppContext, body: ChatCompletionRequest): number[] {
  if (app.tokenizer.chatTemplate === null) {
    throw new ApiError(400, "this model has no chat template; use /v1/completions", {
      code: "no_chat_template",
    });
  }
  const prompt = app.tokenizer.chatPrompt(body.messages, body.add_generation_prompt ?? true);
  return encodePrompt(app.tokenizer, prompt, app.serving.admission);
}

async function startChat(
  app: AppContext,
  body: ChatCompletionRequest,
  caller: Caller,
  signal: AbortSignal,
) {
  const promptIds = chatPromptIds(app, body);
  const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : null;
  const request = generateRequest(
    body,
    caller,
    promptIds,
    body.max_completion_tokens ?? body.max_tokens ?? null,
    logprobs,
  );
  const choices = await startChoices(app.serving, [request], body.n ?? 1, signal);
  return { promptIds, logprobs, choices };
}

/** A whole (non-streamed) chat completion; also what /internal/batch answers per item. */
export async function chatCompletionJson(
  app: AppContext,
  body: ChatCompletionRequest,
  caller: Caller,
  signal: AbortSignal,
) {
  const { promptIds, logprobs, choices } = await startChat(app, body, caller, signal);
  const collected = await collectChoices(choices);
  return {
    id: completionId("chatcmpl"),
    object: "chat.completion",
    created: nowSeconds(),
    model: body.model,
    choices: collected.map((choice) => ({
      index: choice.index,
      message: { role: "assistant", content: choice.text },
      logprobs: logprobs === null ? null : chatLogprobs(choice.tokens),
      finish_reason: choice.finishReason,
    })),
    usage: usageOf([promptIds.length], collected),
  };
}

export function chatCompletions(app: AppContext) {
  return async function chatCompletionsHandler(c: Context) {
    const body = await parseBody(c, BackendChatCompletionRequestSchema, app.maxBodyBytes);
    const caller = callerOf(app, body.lorafleet ?? null);
    const signal = c.req.raw.signal;
    if (!body.stream) return c.json(await chatCompletionJson(app, body, caller, signal));

    const { promptIds, logprobs, choices } = await startChat(app, body, caller, signal);
    await awaitFirstOutputs(choices);
    return streamChoices(c, choices, {
      kind: "chat",
      model: body.model,
      includeUsage: body.stream_options?.include_usage === true,
      continuousUsage: body.stream_options?.continuous_usage_stats === true,
      promptLengths: [promptIds.length],
      logprobs: logprobs !== null,
      opening: choices.map((choice) => ({
        index: choice.index,
        delta: { role: "assistant", content: "" },
        logprobs: null,
        finish_reason: null,
      })),
      choiceOf: (index, delta) => ({
        index,
        delta: delta.text === "" ? {} : { content: delta.text },
        logprobs: logprobs === null ? null : chatLogprobs(delta.tokens),
        finish_reason: delta.finishReason,
      }),
    });
  };
}
