// POST /v1/chat/completions: messages (and tools) through the model's chat template, n
// choices, whole JSON or SSE chunks (with a usage chunk when stream_options.include_usage).
// With tools the answer carries `tool_calls` (tool-calls/answer.ts, call-deltas.ts);
// structured outputs and calls are constrained by a grammar (chat-plan.ts).
import { BackendChatCompletionRequestSchema, type ChatCompletionRequest } from "@lorafleet/api";
import type { Context } from "hono";
import type { GenerationDelta } from "../serving/generation-stream.ts";
import { toolAnswer } from "../tool-calls/answer.ts";
import { CallDeltas, type ChatDelta } from "../tool-calls/call-deltas.ts";
import type { AppContext } from "./app-context.ts";
import { type ChatPlan, planChat, reworded } from "./chat-plan.ts";
import { awaitFirstOutputs, collectChoices, startChoices, usageOf } from "./choices.ts";
import { type Caller, generateRequest } from "./generation-request.ts";
import { chatLogprobs, completionId, nowSeconds } from "./openai-format.ts";
import { callerOf, parseBody } from "./parse-body.ts";
import { hasNews, streamChoices } from "./stream-choices.ts";

async function startChat(
  app: AppContext,
  body: ChatCompletionRequest,
  caller: Caller,
  signal: AbortSignal,
) {
  const plan = planChat(app, body);
  const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : null;
  const request = generateRequest(
    body,
    caller,
    plan.promptIds,
    body.max_completion_tokens ?? body.max_tokens ?? null,
    logprobs,
    plan.output,
  );
  try {
    const choices = await startChoices(app.serving, [request], body.n ?? 1, signal);
    return { plan, logprobs, choices };
  } catch (error) {
    throw reworded(error, plan.origin);
  }
}

/** The request's calls are read out of its answers (tools offered, tool_choice not "none"). */
function callsOn(plan: ChatPlan) {
  return plan.tools !== null && plan.tools.choice !== "none" ? plan.tools : null;
}

/** A whole (non-streamed) chat completion; also what /internal/batch answers per item. */
export async function chatCompletionJson(
  app: AppContext,
  body: ChatCompletionRequest,
  caller: Caller,
  signal: AbortSignal,
) {
  const { plan, logprobs, choices } = await startChat(app, body, caller, signal);
  const collected = await collectChoices(choices);
  const tools = callsOn(plan);
  return {
    id: completionId("chatcmpl"),
    object: "chat.completion",
    created: nowSeconds(),
    model: body.model,
    choices: collected.map((choice) => {
      const answer =
        tools === null
          ? {
              message: { role: "assistant", content: choice.text },
              finishReason: choice.finishReason,
            }
          : toolAnswer(app.toolCallFormat, tools, choice.text, choice.finishReason);
      return {
        index: choice.index,
        message: answer.message,
        logprobs: logprobs === null ? null : chatLogprobs(choice.tokens),
        finish_reason: answer.finishReason,
      };
    }),
    usage: usageOf([plan.promptIds.length], collected),
  };
}

export function chatCompletions(app: AppContext) {
  return async function chatCompletionsHandler(c: Context) {
    const body = await parseBody(c, BackendChatCompletionRequestSchema, app.maxBodyBytes);
    const caller = callerOf(app, body.lorafleet ?? null);
    const signal = c.req.raw.signal;
    if (!body.stream) return c.json(await chatCompletionJson(app, body, caller, signal));

    const { plan, logprobs, choices } = await startChat(app, body, caller, signal);
    await awaitFirstOutputs(choices);
    const tools = callsOn(plan);
    const calls = new Map<number, CallDeltas>();
    const choice = (index: number, delta: ChatDelta, tokens: GenerationDelta["tokens"]) => ({
      index,
      delta,
      logprobs: logprobs === null ? null : chatLogprobs(tokens),
      finish_reason: null as string | null,
    });
    return streamChoices(c, choices, {
      kind: "chat",
      model: body.model,
      includeUsage: body.stream_options?.include_usage === true,
      continuousUsage: body.stream_options?.continuous_usage_stats === true,
      promptLengths: [plan.promptIds.length],
      opening: choices.map((choice) => ({
        index: choice.index,
        delta: { role: "assistant", content: "" },
        logprobs: null,
        finish_reason: null,
      })),
      choicesOf: (index, delta) => {
        if (tools === null) {
          if (!hasNews(delta, logprobs !== null)) return [];
          const text = delta.text === "" ? {} : { content: delta.text };
          return [{ ...choice(index, text, delta.tokens), finish_reason: delta.finishReason }];
        }
        let reader = calls.get(index);
        if (reader === undefined) {
          reader = new CallDeltas(app.toolCallFormat, tools.legacy);
          calls.set(index, reader);
        }
        const out = reader.push(delta.text, delta.finishReason !== null).map((d, i) =>
          // a delta's tokens (logprobs) go with its first chunk
          choice(index, d, i === 0 ? delta.tokens : []),
        );
        if (out.length === 0 && logprobs !== null && delta.tokens.length > 0) {
          out.push(choice(index, {}, delta.tokens));
        }
        if (delta.finishReason !== null) {
          const called = reader.sawCalls && delta.finishReason === "stop";
          const finish = called
            ? tools.legacy
              ? "function_call"
              : "tool_calls"
            : delta.finishReason;
          out.push({ ...choice(index, {}, []), finish_reason: finish });
        }
        return out;
      },
    });
  };
}
