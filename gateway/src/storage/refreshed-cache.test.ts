import { describe, expect, it } from "vitest";
import { RefreshedCache } from "./refreshed-cache.ts";

/** A source whose loads resolve when the test says, counting them. */
function source() {
  const pending: ((value: string) => void)[] = [];
  return {
    loads: () => pending.length,
    load: () => new Promise<string>((resolve) => pending.push(resolve)),
    answer: (i: number, value: string) => pending[i]?.(value),
  };
}

describe("RefreshedCache", () => {
  it("waits for the first load only, then serves an old value while one refresh runs behind it", async () => {
    let now = 0;
    const cache = new RefreshedCache<string>(5_000, () => now);
    const src = source();
    const work: Promise<unknown>[] = [];
    const first = cache.get("k", src.load, (w) => work.push(w));
    src.answer(0, "v1");
    expect(await first).toBe("v1");
    now = 4_999;
    expect(await cache.get("k", src.load, (w) => work.push(w))).toBe("v1");
    expect(src.loads()).toBe(1);
    now = 5_000;
    // old: served at once, one refresh in the background however many requests find it old
    expect(await cache.get("k", src.load, (w) => work.push(w))).toBe("v1");
    expect(await cache.get("k", src.load, (w) => work.push(w))).toBe("v1");
    expect([src.loads(), work.length]).toEqual([2, 1]);
    src.answer(1, "v2");
    await Promise.all(work);
    expect(await cache.get("k", src.load, (w) => work.push(w))).toBe("v2");
  });

  it("serves an old value when the refresh fails, and tries again on the next request", async () => {
    let now = 0;
    const cache = new RefreshedCache<string>(1_000, () => now);
    const work: Promise<unknown>[] = [];
    await cache.get("k", async () => "v1");
    now = 2_000;
    const failing = () => Promise.reject(new Error("D1 down"));
    expect(await cache.get("k", failing, (w) => work.push(w))).toBe("v1");
    await Promise.all(work);
    expect(
      await cache.get(
        "k",
        async () => "v2",
        (w) => work.push(w),
      ),
    ).toBe("v1");
    await Promise.all(work);
    expect(await cache.get("k", failing)).toBe("v2");
  });

  it("waits for a refresh when no background is given, after markStale, and after clear", async () => {
    const cache = new RefreshedCache<number>(60_000);
    let n = 0;
    const load = async () => ++n;
    expect(await cache.get("k", load)).toBe(1);
    cache.markStale();
    expect(await cache.get("k", load)).toBe(2);
    cache.clear();
    expect(await cache.get("k", load, () => {})).toBe(3);
  });
});
