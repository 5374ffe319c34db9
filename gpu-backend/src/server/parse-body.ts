// Reads a JSON body against a zod schema: oversized bodies become 413s, malformed JSON
// and schema violations OpenAI-style 400s naming the parameter; the gateway's `lorafleet` field is only
// taken from a caller holding the backend secret.
import type { Context } from "hono";
import type { z } from "zod";
import type { AppContext } from "./app-context.ts";
import type { Caller } from "./generation-request.ts";
import { ApiError, fromZodError } from "./openai-error.ts";
import type { LorafleetField } from "./request-schemas.ts";

/**
 * The body as JSON, then checked against `schema`. The body is read with a byte bound (a
 * 413 once it is passed, before the rest is buffered) and decoded as strict UTF-8: JSON
 * is UTF-8 (RFC 8259), and replacing bad bytes with U+FFFD would feed the model text the
 * client never sent.
 *
 * @example const body = await parseBody(c, CompletionRequestSchema, app.maxBodyBytes);
 */
export async function parseBody<T extends z.ZodType>(
  c: Context,
  schema: T,
  maxBytes: number,
): Promise<z.infer<T>> {
  const bytes = await readBody(c.req.raw, maxBytes);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "the request body is not valid UTF-8", { code: "invalid_json" });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ApiError(400, "the request body is not valid JSON", { code: "invalid_json" });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw fromZodError(parsed.error);
  return parsed.data;
}

function tooLarge(maxBytes: number): ApiError {
  return new ApiError(413, `the request body is larger than ${maxBytes} bytes`, {
    code: "request_too_large",
  });
}

/** All of the body, refused as soon as it passes `maxBytes` (declared or counted). */
async function readBody(request: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge(maxBytes);
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw tooLarge(maxBytes);
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
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
