import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  adapterHomeBackends,
  type ConversationKey,
  conversationKey,
  rankForConversation,
} from "./conversation-affinity.ts";
import { loadSlack, preferenceOrder, type RoutableBackend } from "./rendezvous.ts";

const fleet = (loads: number[], capacity = 32): RoutableBackend[] =>
  loads.map((load, i) => ({ id: `gpu-${i}`, capacity, load }));
const three = fleet([0, 0, 0]);
const chatOf = (n: number, adapter: string | null = "ad_1", salt = "salt-a") =>
  conversationKey(salt, adapter, "base", `["user",null,"conversation ${n}"]`);
const first = (key: ConversationKey, backends: readonly RoutableBackend[]) =>
  rankForConversation(key, backends)[0]?.id;

/** The most load `backend` may hold while `backends` hold theirs (rendezvous.ts `boundLoad`). */
const bound = (backend: RoutableBackend, backends: readonly RoutableBackend[]) => {
  const load = backends.reduce((sum, b) => sum + b.load, 0);
  const capacity = backends.reduce((sum, b) => sum + b.capacity, 0);
  return Math.ceil(((1 + loadSlack) * (load + 1) * backend.capacity) / capacity);
};

/** How many of `count` conversations go first to each backend. */
function firstChoices(count: number, adapter: string | null, backends = three) {
  const counts = new Map(backends.map((b) => [b.id, 0]));
  for (let n = 0; n < count; n += 1) {
    const id = first(chatOf(n, adapter), backends) ?? "";
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

describe("rankForConversation", () => {
  it("sends a conversation to one backend whatever the loads, while that one is within its bound", () => {
    fc.assert(
      fc.property(
        fc.nat(10_000),
        fc.array(fc.nat(60), { minLength: 3, maxLength: 3 }),
        (n, loads) => {
          const key = chatOf(n);
          const preferred = first(key, three);
          const loaded = fleet(loads);
          const backend = loaded.find((b) => b.id === preferred);
          if (backend === undefined) throw new Error("no preferred backend");
          if (backend.load < bound(backend, loaded)) expect(first(key, loaded)).toBe(preferred);
          else expect(first(key, loaded)).not.toBe(preferred);
        },
      ),
    );
  });

  it("spreads an adapter's conversations over its home backends, and base-model ones over all", () => {
    const home = preferenceOrder("ad_1", three)
      .slice(0, adapterHomeBackends)
      .map((b) => b.id);
    const byAdapter = firstChoices(2_000, "ad_1");
    for (const [id, count] of byAdapter) {
      if (home.includes(id))
        expect(count).toBeGreaterThan(850); // 1,000 each when even
      else expect(count).toBe(0);
    }
    for (const count of firstChoices(3_000, null).values()) expect(count).toBeGreaterThan(850);
  });

  it("weights the spread by capacity", () => {
    const backends = [
      { id: "big", capacity: 96, load: 0 },
      { id: "small", capacity: 32, load: 0 },
    ];
    const big = firstChoices(2_000, "ad_1", backends).get("big") ?? 0;
    expect(big / 2_000).toBeGreaterThan(0.7);
    expect(big / 2_000).toBeLessThan(0.8);
  });

  it("keys by the cache salt: one conversation's head under other salts spreads", () => {
    const counts = new Map<string, number>();
    for (let salt = 0; salt < 1_000; salt += 1) {
      const id = first(chatOf(7, null, `salt-${salt}`), three) ?? "";
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    for (const count of counts.values()) expect(count).toBeGreaterThan(250);
    expect(chatOf(7, null, "a").conversation).not.toBe(chatOf(7, null, "b").conversation);
  });

  it("moves a failed backend's conversations, each to one backend; the adapter's other backend keeps its own", () => {
    const byAdapter = preferenceOrder("ad_1", three).map((b) => b.id);
    const [homeA, homeB, third] = byAdapter;
    let stayed = 0;
    let onB = 0;
    for (let n = 0; n < 1_000; n += 1) {
      const key = chatOf(n);
      const before = defined(first(key, three));
      // the backend outside the adapter's home failing moves none of its conversations
      expect(
        first(
          key,
          three.filter((b) => b.id !== third),
        ),
      ).toBe(before);
      // a home backend failing: its conversations go to the adapter's next two backends,
      // each to one (its order is fixed while the failure lasts); of the other home's
      // conversations, those that hash higher on the adapter's third backend move there too
      const order = rankForConversation(key, three).map((b) => b.id);
      const without = (id: string | undefined) => three.filter((b) => b.id !== id);
      // a request failing over goes where the next turns go while that backend is out
      expect(rankForConversation(key, without(order[0])).map((b) => b.id)).toEqual(order.slice(1));
      const after = defined(first(key, without(homeA)));
      expect([homeB, third]).toContain(after);
      if (before === homeB) {
        onB += 1;
        if (after === homeB) stayed += 1;
      }
    }
    // a conversation on homeB beat homeA; it beats the third too with probability 2/3
    expect(stayed / onB).toBeGreaterThan(0.6);
    expect(stayed / onB).toBeLessThan(0.73);
  });

  it("keeps every backend within its bound over interleaved 10-turn conversations, and moves a turn only off a backend at its bound", () => {
    // 90 conversations of 6 adapters, 10 turns each, on 3 backends of capacity 8: the turns
    // of a round go in a shuffled order, 45 in flight at a time (the oldest ends first).
    const random = fc.sample(fc.integer(), { seed: 23, numRuns: 900 });
    const backends = fleet([0, 0, 0], 8);
    const inFlight: RoutableBackend[] = [];
    let moved = 0;
    for (let turn = 0; turn < 10; turn += 1) {
      const order = Array.from({ length: 90 }, (_, c) => c).sort(
        (a, b) => (random[turn * 90 + a] ?? 0) - (random[turn * 90 + b] ?? 0),
      );
      for (const c of order) {
        const key = chatOf(c, `ad_${c % 6}`);
        const preferred = defined(backends.find((b) => b.id === first(key, three)));
        const atBound = preferred.load >= bound(preferred, backends);
        const chosen = defined(backends.find((b) => b.id === first(key, backends)));
        const limit = bound(chosen, backends);
        chosen.load += 1;
        expect(chosen.load).toBeLessThanOrEqual(limit);
        if (chosen !== preferred) {
          expect(atBound).toBe(true);
          moved += 1;
        }
        inFlight.push(chosen);
        if (inFlight.length > 45) defined(inFlight.shift()).load -= 1;
      }
    }
    // the trade: a turn moves (and recomputes its prefix) only when its backend is full
    expect(moved / 900).toBeLessThan(0.06); // 35 of 900 turns
    expect(moved).toBeGreaterThan(0);
  });
});

function defined<T>(value: T | undefined): T {
  if (value === undefined) throw new Error("expected a value");
  return value;
}
