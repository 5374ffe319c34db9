import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StopMatcher } from "./stop-matcher.ts";

function run(stops: string[], deltas: string[]): { out: string; stopped: boolean } {
  const matcher = new StopMatcher(stops);
  let out = "";
  for (const delta of deltas) {
    const match = matcher.push(delta);
    out += match.text;
    if (match.stopped) return { out, stopped: true };
  }
  return { out: out + matcher.finish(), stopped: false };
}

describe("StopMatcher", () => {
  it("holds back a possible stop prefix and releases it when it diverges", () => {
    const matcher = new StopMatcher(["END"]);
    expect(matcher.push("abcE")).toEqual({ text: "abc", stopped: false });
    expect(matcher.push("N")).toEqual({ text: "", stopped: false });
    expect(matcher.push("x")).toEqual({ text: "ENx", stopped: false });
  });

  it("truncates at a stop split across deltas", () => {
    expect(run(["END"], ["ab", "cE", "ND tail"])).toEqual({ out: "abc", stopped: true });
  });

  it("stops at the earliest of several stops", () => {
    expect(run(["zz", "b"], ["azzb"])).toEqual({ out: "a", stopped: true });
  });

  it("releases held text at finish", () => {
    expect(run(["END"], ["abcEN"])).toEqual({ out: "abcEN", stopped: false });
  });

  it("cuts right before a stop, shows no stop, and loses nothing, however the text is split", () => {
    const alphabet = fc.constantFrom("a", "b", "c");
    const word = fc.array(alphabet, { minLength: 1, maxLength: 3 }).map((a) => a.join(""));
    fc.assert(
      fc.property(
        fc.array(word, { minLength: 1, maxLength: 3 }),
        fc.array(
          fc.array(alphabet, { maxLength: 4 }).map((a) => a.join("")),
          { maxLength: 8 },
        ),
        (stops, deltas) => {
          const text = deltas.join("");
          const { out, stopped } = run(stops, deltas);
          expect(text.startsWith(out)).toBe(true);
          expect(stops.some((stop) => out.includes(stop))).toBe(false);
          expect(stopped).toBe(stops.some((stop) => text.includes(stop)));
          if (stopped) {
            expect(stops.some((stop) => text.slice(out.length).startsWith(stop))).toBe(true);
          } else {
            expect(out).toBe(text);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
