// POST /v1/chat/completions: messages through the model's chat template, n choices,
// whole JSON or SSE chunks (with a usage chunk when stream_options.include_usage).
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppContext } from "./app-context.ts";
import {
  awaitFirstOutputs,
  cancelChoices,
  collectChoice,
  mergeChoices,
  startChoices,
  usageOf,
} from "./choices.ts";
import { type Caller, encodePrompt, generateRequest } from "./generation-request.ts";
import { ApiError, toApiError } from "./openai-error.ts";
import { chatLogprobs, completionId, nowSeconds } from "./openai-format.ts";
import { callerOf, parseBody } from "./parse-body.ts";
import { type ChatCompletionRequest, ChatCompletionRequestSchema } from "./request-schemas.ts";

/** The prompt of a chat request; throws ApiError / ChatTemplateError for what cannot render. */
function chatPromptIds(app: AppContext, body: ChatCompletionRequest): number[] {
  const template = app.tokenizer.chatTemplate;
  if (template === null) {
    throw new ApiError(400, "this model has no chat template; use /v1/completions", {
      code: "no_chat_template",
    });
  }
  const prompt = template.render(body.messages, body.add_generation_prompt ?? true);
  return encodePrompt(app.tokenizer, prompt, false, app.serving.maxModelLen);
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
  const choices = await startChoices(app.serving, [request], body.n ?? 1);
  signal.addEventListener("abort", () => cancelChoices(choices));
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
  // One failed choice ends the others too: the client gets one error, not half an answer.
  const collected = await Promise.all(choices.map(collectChoice)).catch((error: unknown) => {
    cancelChoices(choices);
    throw error;
  });
  const completionTokens = collected.reduce((sum, choice) => sum + choice.numOutputTokens, 0);
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
    usage: usageOf([promptIds.length], completionTokens),
  };
}

export function chatCompletions(app: AppContext) {
  return async function chatCompletionsHandler(c: Context) {
    const body = await parseBody(c, ChatCompletionRequestSchema, app.maxBodyBytes);
    const caller = callerOf(app, body.lorafleet ?? null);
    const signal = c.req.raw.signal;
    if (!body.stream) return c.json(await chatCompletionJson(app, body, caller, signal));

    const { promptIds, logprobs, choices } = await startChat(app, body, caller, signal);
    await awaitFirstOutputs(choices);
    const id = completionId("chatcmpl");
    const created = nowSeconds();
    const model = body.model;
    const includeUsage = body.stream_options?.include_usage === true;
    return streamSSE(c, async (sse) => {
      sse.onAbort(() => cancelChoices(choices));
      const chunk = (choicesPart: unknown[], usage: unknown = undefined) =>
        sse.writeSSE({
          data: JSON.stringify({
            id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: choicesPart,
            ...(includeUsage ? { usage: usage ?? null } : {}),
          }),
        });
      for (const choice of choices) {
        await chunk([
          {
            index: choice.index,
            delta: { role: "assistant", content: "" },
            logprobs: null,
            finish_reason: null,
          },
        ]);
      }
      const outputTokens = new Map<number, number>();
      try {
        for await (const { index, delta } of mergeChoices(choices)) {
          outputTokens.set(index, delta.numOutputTokens);
          if (delta.text === "" && delta.finishReason === null && logprobs === null) continue;
          await chunk([
            {
              index,
              delta: delta.text === "" ? {} : { content: delta.text },
              logprobs: logprobs === null ? null : chatLogprobs(delta.tokens),
              finish_reason: delta.finishReason,
            },
          ]);
        }
      } catch (error) {
        await sse.writeSSE({ data: JSON.stringify(toApiError(error).body) });
        cancelChoices(choices);
      }
      if (includeUsage) {
        const completionTokens = [...outputTokens.values()].reduce((a, b) => a + b, 0);
        await chunk([], usageOf([promptIds.length], completionTokens));
      }
      await sse.writeSSE({ data: "[DONE]" });
    });
  };
}
