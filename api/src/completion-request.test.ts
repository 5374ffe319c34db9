import { describe, expect, it } from "vitest";
import { BackendCompletionRequestSchema, CompletionRequestSchema } from "./completion-request.ts";
import { requestIssue } from "./request-issue.ts";

const parse = (extra: object) =>
  CompletionRequestSchema.safeParse({ model: "m", prompt: "p", ...extra });

describe("CompletionRequestSchema", () => {
  it("takes OpenAI's four prompt forms", () => {
    for (const prompt of ["one", ["one two", "three"], [1, 2, 3], [[1, 2], [3]]]) {
      expect(parse({ prompt }).data?.prompt).toEqual(prompt);
    }
  });

  it("refuses every other prompt, naming `prompt` or the bad item in it", () => {
    // A list mixing texts and token-id lists is none of OpenAI's forms (OpenAI refuses it too).
    const cases: [unknown, string][] = [
      [[], "prompt"],
      [[{}], "prompt"],
      [["x", 1.5], "prompt"],
      [7, "prompt"],
      [["one", [1, 2]], "prompt"],
      [[[1, 2], "one"], "prompt"],
      // a form it clearly meant (token ids), with a bad item
      [[[]], "prompt[0]"],
      [[-1], "prompt[0]"],
    ];
    for (const [prompt, param] of cases) {
      const result = parse({ prompt });
      expect(result.success).toBe(false);
      expect(requestIssue(result.error as never).param).toBe(param);
    }
  });

  it("refuses what the backend does not do instead of ignoring it", () => {
    for (const [param, value] of [
      ["echo", true],
      ["best_of", 3],
      ["suffix", "end"],
      ["logit_bias", { "1": 1 }],
    ] as const) {
      const result = parse({ [param]: value });
      expect(result.success).toBe(false);
      expect(requestIssue(result.error as never).param).toBe(param);
    }
    expect(parse({ echo: false, best_of: 1, suffix: "" }).success).toBe(true);
  });

  it("accepts the gateway's `lorafleet` only in the backend's schema", () => {
    const lorafleet = { tenant: "t", deadline_ms: 5 };
    expect(parse({ lorafleet }).data).not.toHaveProperty("lorafleet");
    expect(
      BackendCompletionRequestSchema.parse({ model: "m", prompt: "p", lorafleet }).lorafleet,
    ).toEqual({ tenant: "t", deadline_ms: 5, adapter: null });
  });

  it("takes the gateway's prefix cache salt: a non-empty string of at most 200 characters", () => {
    const parseSalt = (cache_salt: unknown) =>
      BackendCompletionRequestSchema.safeParse({
        model: "m",
        prompt: "p",
        lorafleet: { tenant: "t", cache_salt },
      });
    expect(parseSalt("tenant-7:opt-in").data?.lorafleet?.cache_salt).toBe("tenant-7:opt-in");
    expect(parseSalt(null).success).toBe(true);
    for (const bad of ["", "x".repeat(201), 7]) {
      const result = parseSalt(bad);
      expect(result.success).toBe(false);
      expect(requestIssue(result.error as never).param).toBe("lorafleet.cache_salt");
    }
  });
});
