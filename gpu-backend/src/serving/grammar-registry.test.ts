import { describe, expect, it } from "vitest";
import { ExecutorRequestError, ExecutorUnavailable } from "../executor/errors.ts";
import type { GrammarCompiled, GrammarKind } from "../protocol/messages.ts";
import { BackendUnavailableError } from "./errors.ts";
import type { ExecutorLink } from "./executor-link.ts";
import { GrammarRegistry } from "./grammar-registry.ts";
import { ServingMetrics } from "./metrics.ts";

/** An executor that compiles what it is told to, refusing regexes that say so. */
function fakeExecutor() {
  const calls: string[] = [];
  let down = false;
  const link = {
    async compileGrammar(id: number, kind: GrammarKind, source: string): Promise<GrammarCompiled> {
      calls.push(`compile ${id} ${kind} ${source}`);
      if (down) throw new ExecutorUnavailable("restarting");
      if (source === "refuse") throw new ExecutorRequestError("grammar_invalid", "no good");
      return { grammarId: id, compileMs: 2, cached: false };
    },
    async dropGrammar(id: number) {
      calls.push(`drop ${id}`);
    },
  } as unknown as ExecutorLink;
  return { link, calls, setDown: (value: boolean) => (down = value) };
}

describe("GrammarRegistry", () => {
  it("compiles a grammar once while requests hold it, and drops it with the last", async () => {
    const { link, calls } = fakeExecutor();
    const registry = new GrammarRegistry(link, new ServingMetrics());
    const spec = { kind: "regex" as const, source: "[a-z]+" };
    const [a, b] = await Promise.all([registry.acquire(spec), registry.acquire(spec)]);
    const other = await registry.acquire({ kind: "grammar", source: "[a-z]+" });
    expect([a, b, other]).toEqual([0, 0, 1]);
    expect(registry.size).toBe(2);
    registry.release(a);
    expect(calls.filter((c) => c.startsWith("drop"))).toEqual([]);
    registry.release(b);
    await Promise.resolve();
    expect(calls).toEqual(["compile 0 regex [a-z]+", "compile 1 grammar [a-z]+", "drop 0"]);
    expect(registry.size).toBe(1);
  });

  it("passes a refusal on and frees the id; no executor: a retriable 503", async () => {
    const { link, calls, setDown } = fakeExecutor();
    const registry = new GrammarRegistry(link, new ServingMetrics());
    await expect(registry.acquire({ kind: "regex", source: "refuse" })).rejects.toMatchObject({
      code: "grammar_invalid",
      reason: "no good",
    });
    expect(calls).toEqual(["compile 0 regex refuse", "drop 0"]);
    expect(registry.size).toBe(0);
    setDown(true);
    await expect(registry.acquire({ kind: "regex", source: "x" })).rejects.toBeInstanceOf(
      BackendUnavailableError,
    );
    expect(registry.size).toBe(0);
  });

  it("compiles every held grammar again under its id after an executor restart", async () => {
    const { link, calls } = fakeExecutor();
    const registry = new GrammarRegistry(link, new ServingMetrics());
    const id = await registry.acquire({ kind: "choice", source: '["a"]' });
    await registry.executorRestarted();
    expect(calls).toEqual([`compile ${id} choice ["a"]`, `compile ${id} choice ["a"]`]);
  });
});
