import type { z } from "zod";

/** A refused request body, as both the gateway and the backend word it in OpenAI's error shape. */
export type RequestIssue = {
  /** the field's path first, e.g. `messages[0].role: Invalid option: ...` */
  message: string;
  /** the offending field as OpenAI names parameters (`messages[0].role`); null for the body itself */
  param: string | null;
  /** `invalid_value`, or the code a refinement names (e.g. `unsupported_parameter`) */
  code: string;
};

/**
 * The first issue of a failed parse, the way every lorafleet server reports it, so the
 * gateway and a backend refuse the same body with the same words.
 *
 * @example const { message, param, code } = requestIssue(schema.safeParse(body).error)
 */
export function requestIssue(error: z.ZodError): RequestIssue {
  const issue = error.issues[0];
  const param = issue
    ? issue.path
        .map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`))
        .join("")
        .replace(/^\./, "")
    : "";
  const message = issue ? `${param ? `${param}: ` : ""}${issue.message}` : "invalid request";
  // A refinement may name its own code (e.g. `unsupported_parameter`).
  const custom =
    issue?.code === "custom" ? (issue.params as { code?: unknown } | undefined) : undefined;
  const code = typeof custom?.code === "string" ? custom.code : "invalid_value";
  return { message, param: param || null, code };
}
