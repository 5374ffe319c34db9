import type { ContentfulStatusCode } from "hono/utils/http-status";

/**
 * An error the client should see, rendered in OpenAI's shape:
 * `{"error": {"message", "type", "param", "code"}}`.
 *
 * @example throw new ApiError(404, "model_not_found", "The model `x` does not exist");
 */
export class ApiError extends Error {
  readonly status: ContentfulStatusCode;
  readonly code: string;
  readonly type: string;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: ContentfulStatusCode,
    code: string,
    message: string,
    options: { param?: string | null; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.type = errorType(status);
    this.param = options.param ?? null;
    this.headers = options.headers ?? {};
  }

  body(): { error: { message: string; type: string; param: string | null; code: string } } {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}

function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}
