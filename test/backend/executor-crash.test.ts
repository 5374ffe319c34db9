// Killing the Python executor mid-run: the backend restarts it, requests that were in
// flight either finish (re-queued and recomputed) or fail with a retriable 503, and the
// backend serves again afterwards.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "./backend-process.ts";

describe.skipIf(!haveFixtures)("executor crash", () => {
  let backend: Backend;
  let client: OpenAI;

  beforeAll(async () => {
    backend = await startBackend();
    client = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(async () => {
    await backend?.stop();
  });

  const complete = (prompt: string, maxTokens: number) =>
    client.completions.create({
      model: "tiny-llama",
      prompt,
      max_tokens: maxTokens,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);

  it("is survived", async () => {
    const reference = (await complete("survive this", 200)).choices[0]?.text;
    const executors = backend.childPids();
    expect(executors.length).toBeGreaterThan(0);

    let settledBeforeKill = 0;
    const inFlight = Array.from({ length: 8 }, () =>
      complete("survive this", 200).finally(() => settledBeforeKill++),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const pid of executors) process.kill(pid, "SIGKILL");
    // the kill did land mid-run
    expect(settledBeforeKill).toBeLessThan(8);

    const outcomes = await Promise.allSettled(inFlight);
    for (const outcome of outcomes) {
      if (outcome.status === "fulfilled") {
        // recomputed after the restart: greedy output is unchanged
        expect(outcome.value.choices[0]?.text).toBe(reference);
      } else {
        expect(outcome.reason).toBeInstanceOf(OpenAI.APIError);
        expect((outcome.reason as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
      }
    }
    // a new executor serves again
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !(await fetch(`${backend.url}/ready`)).ok) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const after = await complete("survive this", 200);
    expect(after.choices[0]?.text).toBe(reference);
    expect(backend.childPids().some((pid) => !executors.includes(pid))).toBe(true);
    const metrics = await (await fetch(`${backend.url}/metrics`)).text();
    expect(metrics).toMatch(/lorafleet_executor_restarts_total [1-9]/);
  });
});
