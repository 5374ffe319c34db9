// A request's n choices (× prompts) are admitted all or none under the queue bound. They
// used to be admitted one by one: concurrent multi-choice requests each took part of the
// room, hit the bound, and all failed. 100 batch lines × n=16 against room for 1152 got
// 100 × 429 and served none; all or none serves 72 (= 1152 / 16).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "../backend/backend-process.ts";
import { expectIdle, post } from "./backend-probe.ts";

const SECRET = "reliability-admission-secret-01";

describe.skipIf(!haveFixtures)("multi-choice admission", () => {
  let backend: Backend;

  beforeAll(async () => {
    // room for 128 + 1024 = 1152 unfinished choices (the defaults)
    backend = await startBackend(["--backend-secret", SECRET]);
  });
  afterAll(async () => {
    await backend?.stop();
  });

  it("serves as many 16-choice batch lines as fit (72 of 100), refuses the rest with 429", async () => {
    const requests = Array.from({ length: 100 }, (_, i) => ({
      id: `line-${i}`,
      endpoint: "/v1/completions",
      tenant: "t",
      adapter: null,
      body: { model: "tiny-llama", prompt: `line ${i}`, max_tokens: 2, n: 16 },
    }));
    const response = await post(
      `${backend.url}/internal/batch`,
      { requests },
      { authorization: `Bearer ${SECRET}` },
    );
    expect(response.status).toBe(200);
    const lines = (await response.text())
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { status: number; body: { choices?: unknown[] } });
    expect(lines).toHaveLength(100);
    const served = lines.filter((line) => line.status === 200);
    expect(lines.filter((line) => line.status !== 200 && line.status !== 429)).toEqual([]);
    expect(served.length).toBe(72);
    for (const line of served) expect(line.body.choices).toHaveLength(16);
    await expectIdle(backend.url, 10_000, SECRET);
  });
});
