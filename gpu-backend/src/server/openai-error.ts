// Errors as OpenAI's API answers them: {error: {message, type, param, code}} with the
// matching status, one mapping from every named error the server and serving layer throw.
import { BodyNotJsonError, BodyTooLargeError, requestIssue } from "@lorafleet/api";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { InvalidRequestError } from "../engine/index.ts";
import { isGrammarRefusal } from "../executor/errors.ts";
import {
  AdapterBusyError,
  AdapterLoadError,
  AdapterStoreUnavailableError,
  AdapterUrlNotAllowedError,
  BackendUnavailableError,
  ExecutorFailedError,
  PromptTooLongError,
  QueueFullError,
  TooManyCompletionsError,
  UnknownModelError,
} from "../serving/errors.ts";
import { StructuredOutputError } from "../structured/structured-output-error.ts";
import { ChatTemplateError } from "../tokenizer/chat-template.ts";

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error to answer as is; thrown by routes, rendered by the app's onError. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  readonly status: ContentfulStatusCode;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;
  constructor(
    status: ContentfulStatusCode,
    message: string,
    options: {
      type?: string;
      param?: string | null;
      code?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.status = status;
    this.type = options.type ?? "invalid_request_error";
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }

  get body(): OpenAIErrorBody {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}

/** The first zod issue as a 400 naming its parameter (e.g. `messages[0].role`), in the gateway's words too (`requestIssue`). */
export function fromZodError(error: z.ZodError): ApiError {
  const { message, param, code } = requestIssue(error);
  return new ApiError(400, message, { param, code });
}

/** Maps any error to the ApiError a client sees; unknown ones become a 500 without internals. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof z.ZodError) return fromZodError(error);
  if (error instanceof BodyTooLargeError) {
    return new ApiError(413, error.message, { code: "request_too_large" });
  }
  if (error instanceof BodyNotJsonError) {
    return new ApiError(400, error.message, { code: "invalid_json" });
  }
  if (error instanceof QueueFullError) {
    return new ApiError(429, error.message, {
      type: "rate_limit_error",
      code: "queue_full",
      headers: { "retry-after": String(error.retryAfterS) },
    });
  }
  if (error instanceof TooManyCompletionsError) {
    return new ApiError(400, error.message, { param: error.param, code: "invalid_value" });
  }
  if (error instanceof UnknownModelError) {
    return new ApiError(404, error.message, { param: "model", code: "model_not_found" });
  }
  if (error instanceof PromptTooLongError) {
    return new ApiError(400, error.message, { param: "messages", code: "context_length_exceeded" });
  }
  if (error instanceof InvalidRequestError || error instanceof ChatTemplateError) {
    // The engine names the request by its internal id, which means nothing to the client.
    const message = error.message.replace(/^request "[^"]*": /, "");
    return new ApiError(400, message, { code: "invalid_value" });
  }
  if (error instanceof StructuredOutputError) {
    return new ApiError(400, error.message, { param: error.param, code: error.code });
  }
  if (isGrammarRefusal(error)) {
    return new ApiError(400, error.reason, { code: error.code });
  }
  if (error instanceof AdapterLoadError) {
    return new ApiError(400, error.message, { param: "model", code: "adapter_invalid" });
  }
  if (error instanceof AdapterUrlNotAllowedError) {
    return new ApiError(400, error.message, {
      param: "lorafleet.adapter",
      code: "adapter_url_not_allowed",
    });
  }
  if (error instanceof AdapterStoreUnavailableError) {
    return new ApiError(503, error.message, {
      type: "server_error",
      param: "model",
      code: "adapter_store_unavailable",
      headers: { "retry-after": "1" },
    });
  }
  if (error instanceof AdapterBusyError) {
    return new ApiError(409, error.message, { code: "adapter_in_use" });
  }
  if (error instanceof BackendUnavailableError) {
    return new ApiError(503, error.message, {
      type: "server_error",
      code: "backend_unavailable",
      headers: { "retry-after": "1" },
    });
  }
  if (error instanceof ExecutorFailedError) {
    // x-should-retry: the OpenAI SDKs retry 5xx unless told not to; this one would fail again.
    return new ApiError(500, error.message, {
      type: "server_error",
      code: "executor_failed",
      headers: { "x-should-retry": "false" },
    });
  }
  if (error instanceof HTTPException) {
    return new ApiError(error.status as ContentfulStatusCode, error.message);
  }
  return new ApiError(500, "internal server error", {
    type: "server_error",
    code: "internal_error",
  });
}
