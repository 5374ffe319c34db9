import { requestIssue } from "@lorafleet/api";
import type { Context } from "hono";
import type { z } from "zod";
import { ApiError } from "./errors.ts";
import { bodyLimits, readJson } from "./request-body.ts";

/**
 * Parses a control-plane JSON request body against `schema`: over
 * `bodyLimits.control` is a 413; a body that is not UTF-8 JSON, or does not
 * match, is a 400 naming the first offending field.
 */
export async function parseJsonBody<T extends z.ZodType>(
  c: Context,
  schema: T,
): Promise<z.infer<T>> {
  return parseWith(schema, await readJson(c.req.raw, bodyLimits.control));
}

/**
 * `value` checked against `schema`, or a 400 worded as gpu-backend words it
 * (`requestIssue`, @lorafleet/api): the first issue, its field as `param`.
 *
 * @example const body = parseWith(ChatCompletionRequestSchema, json);
 */
export function parseWith<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const { message, param, code } = requestIssue(result.error);
    throw new ApiError(400, code, message, { param });
  }
  return result.data;
}
