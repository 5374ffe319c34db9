import type { Context } from "hono";
import type { z } from "zod";
import { ApiError } from "./errors.ts";
import { bodyLimits, readJsonBody } from "./request-body.ts";

/**
 * Parses a control-plane JSON request body against `schema`: over
 * `bodyLimits.control` is a 413; a body that is not UTF-8 JSON, or does not
 * match, is a 400 naming the first offending field.
 */
export async function parseJsonBody<T extends z.ZodType>(
  c: Context,
  schema: T,
): Promise<z.infer<T>> {
  return parseWith(schema, await readJsonBody(c.req.raw, bodyLimits.control));
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
