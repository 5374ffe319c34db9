import type { Context } from "hono";
import type { z } from "zod";
import { ApiError } from "./errors.ts";

/**
 * Parses a JSON request body against `schema`; a body that is not JSON, or does
 * not match, is a 400 naming the first offending field.
 */
export async function parseJsonBody<T extends z.ZodType>(
  c: Context,
  schema: T,
): Promise<z.infer<T>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new ApiError(400, "invalid_json", "The request body is not valid JSON");
  }
  return parseWith(schema, body);
}

export function parseWith<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const param = issue?.path.join(".") ?? "";
    throw new ApiError(
      400,
      "invalid_request",
      `${param ? `${param}: ` : ""}${issue?.message ?? "invalid"}`,
      {
        param,
      },
    );
  }
  return result.data;
}
