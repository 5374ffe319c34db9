// Reads a JSON body against a zod schema with the shared bounded reader (@lorafleet/api):
// its BodyTooLargeError / BodyNotJsonError and schema violations become OpenAI-style
// 413 / 400s in `toApiError`; the gateway's `lorafleet` field is only taken from a caller
// holding the backend secret.
import { type LorafleetField, readJsonBody } from "@lorafleet/api";
import type { Context } from "hono";
import type { z } from "zod";
import type { AppContext } from "./app-context.ts";
import type { Caller } from "./generation-request.ts";
import { ApiError, fromZodError } from "./openai-error.ts";

/**
 * The body as JSON, then checked against `schema`. The body is read with a byte bound (a
 * 413 once it is passed, before the rest is buffered) and decoded as strict UTF-8.
 *
 * @example const body = await parseBody(c, BackendCompletionRequestSchema, app.maxBodyBytes);
 */
export async function parseBody<T extends z.ZodType>(
  c: Context,
  schema: T,
  maxBytes: number,
): Promise<z.infer<T>> {
  const parsed = schema.safeParse(await readJsonBody(c.req.raw, maxBytes));
  if (!parsed.success) throw fromZodError(parsed.error);
  return parsed.data;
}

/**
 * The auth middleware has already checked the secret when one is configured, so a
 * `lorafleet` field is trusted exactly when a secret exists.
 */
export function callerOf(app: AppContext, lorafleet: LorafleetField | null): Caller {
  if (lorafleet !== null && app.backendSecret === null) {
    throw new ApiError(
      401,
      "the lorafleet field needs the backend secret, which is not configured",
      {
        type: "authentication_error",
        param: "lorafleet",
        code: "secret_not_configured",
      },
    );
  }
  if (lorafleet?.base_model != null && lorafleet.base_model !== app.servedModelName) {
    throw new ApiError(
      404,
      `this backend serves ${app.servedModelName}, not ${lorafleet.base_model}`,
      {
        param: "lorafleet.base_model",
        code: "model_not_found",
      },
    );
  }
  return { servedModelName: app.servedModelName, lorafleet };
}
