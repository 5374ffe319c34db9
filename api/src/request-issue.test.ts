import { describe, expect, it } from "vitest";
import { z } from "zod";
import { requestIssue } from "./request-issue.ts";

const issueOf = (schema: z.ZodType, value: unknown) => {
  const result = schema.safeParse(value);
  if (result.success) throw new Error("accepted");
  return requestIssue(result.error);
};

describe("requestIssue", () => {
  it("names the first issue's field as OpenAI does: dots for keys, brackets for indexes", () => {
    const schema = z.object({ a: z.array(z.object({ b: z.string() })) });
    expect(issueOf(schema, { a: [{ b: "x" }, { b: 1 }] })).toEqual({
      message: "a[1].b: Invalid input: expected string, received number",
      param: "a[1].b",
      code: "invalid_value",
    });
  });

  it("gives the body itself no param", () => {
    expect(issueOf(z.object({}), [1, 2])).toEqual({
      message: "Invalid input: expected object, received array",
      param: null,
      code: "invalid_value",
    });
  });

  it("takes the code a refinement names", () => {
    const schema = z.object({
      tools: z.unknown().refine((v) => v == null, { params: { code: "unsupported_parameter" } }),
    });
    expect(issueOf(schema, { tools: [1] })).toMatchObject({
      param: "tools",
      code: "unsupported_parameter",
    });
  });
});
