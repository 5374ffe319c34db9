// Killing the Python executor mid-run: the backend restarts it, requests that were in
// flight either finish (re-queued and recomputed) or fail with a retriable 503, and the
// backend serves again afterwards. An executor that cannot start again is given up after
// the restart policy's 5 restarts in a row, and the backend says so.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pythonThatStartsOnce } from "../../gpu-backend/src/executor/test-fixtures.ts";
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

describe.skipIf(!haveFixtures)("an executor that cannot start again", () => {
  const dir = mkdtempSync(join(tmpdir(), "lorafleet-crash-loop-"));
  let backend: Backend | undefined;
  afterAll(async () => {
    await backend?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is restarted 5 times, then given up: /health and /ready 503, requests a retriable 503", async () => {
    // --python: the real executor the first time, a start that fails every time after.
    const python = pythonThatStartsOnce(dir);
    const spawns = python.spawns;
    backend = await startBackend(["--python", python.path]);
    const url = backend.url;
    for (const pid of backend.childPids()) process.kill(pid, "SIGKILL");
    const noticed = Date.now() + 10_000;
    while ((await fetch(`${url}/ready`)).status === 200 && Date.now() < noticed) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    // restarting (backoff 0.5 + 1 + 2 + 4 + 8 s before the 5 restarts), then failed
    let health = await fetch(`${url}/health`);
    const deadline = Date.now() + 60_000;
    while (health.status === 200 && Date.now() < deadline) {
      expect(await health.json()).toMatchObject({ status: expect.stringMatching(/ok|restarting/) });
      expect((await fetch(`${url}/ready`)).status).toBe(503);
      await new Promise((resolve) => setTimeout(resolve, 500));
      health = await fetch(`${url}/health`);
    }
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: "failed", load: 0 });
    expect((await fetch(`${url}/ready`)).status).toBe(503);
    expect(spawns()).toBe(1 + 5);

    const refused = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny-llama", prompt: "hello", max_tokens: 2 }),
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
      "backend_unavailable",
    );
    // given up means given up: no start is tried for new requests
    expect(spawns()).toBe(1 + 5);
  });
});
