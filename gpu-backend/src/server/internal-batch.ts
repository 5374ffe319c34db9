// POST /internal/batch: the gateway's batch call. One HTTP request carries many
// requests (each with its tenant, adapter and deadline and an OpenAI body); the answer
// is NDJSON, one line per request as it completes:
//   {"id": "<caller's id>", "status": 200, "body": <chat.completion | text_completion>}
//   {"id": "<caller's id>", "status": 4xx|5xx, "body": {"error": {...}}}
// All requests enter the engine together, so they share batches on the GPU.
import {
  ChatCompletionRequestSchema,
  CompletionRequestSchema,
  type InternalBatchRequest,
  InternalBatchRequestSchema,
} from "@lorafleet/api";
import type { Context } from "hono";
import { stream } from "hono/streaming";
import type { AppContext } from "./app-context.ts";
import { chatCompletionJson } from "./chat-completions.ts";
import { completionJson } from "./completions.ts";
import type { Caller } from "./generation-request.ts";
import { ApiError, toApiError } from "./openai-error.ts";
import { parseBody } from "./parse-body.ts";

type BatchItem = InternalBatchRequest["requests"][number];

async function answer(app: AppContext, item: BatchItem, signal: AbortSignal) {
  const caller: Caller = {
    servedModelName: app.servedModelName,
    lorafleet: {
      tenant: item.tenant,
      adapter: item.adapter,
      deadline_ms: item.deadline_ms,
      cache_salt: item.cache_salt,
    },
  };
  try {
    const body =
      item.endpoint === "/v1/chat/completions"
        ? await chatCompletionJson(
            app,
            ChatCompletionRequestSchema.parse(item.body),
            caller,
            signal,
          )
        : await completionJson(app, CompletionRequestSchema.parse(item.body), caller, signal);
    return { id: item.id, status: 200, body };
  } catch (error) {
    const apiError = toApiError(error);
    return { id: item.id, status: apiError.status, body: apiError.body };
  }
}

export function internalBatch(app: AppContext) {
  return async function internalBatchHandler(c: Context) {
    const batch = await parseBody(c, InternalBatchRequestSchema, app.maxBodyBytes);
    const ids = new Set(batch.requests.map((item) => item.id));
    if (ids.size !== batch.requests.length) {
      throw new ApiError(400, "request ids must be unique", { param: "requests" });
    }
    const signal = c.req.raw.signal;
    c.header("content-type", "application/x-ndjson");
    return stream(c, async (out) => {
      const pending = new Map(
        batch.requests.map((item) => [item.id, answer(app, item, signal).then((line) => line)]),
      );
      while (pending.size > 0) {
        const line = await Promise.race(pending.values());
        pending.delete(line.id);
        await out.write(`${JSON.stringify(line)}\n`);
      }
    });
  };
}
