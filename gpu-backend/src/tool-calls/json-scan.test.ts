import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type JsonNode, scanJson } from "./json-scan.ts";

/** A node's ends, nested, for comparing shapes. */
const ends = (node: JsonNode | null): unknown =>
  node === null
    ? null
    : node.kind === "object"
      ? [node.end, node.entries.map((e) => [e.key, ends(e.value)])]
      : node.kind === "array"
        ? [node.end, node.items.map(ends)]
        : node.end;

describe("scanJson", () => {
  it("finds a whole value's end, after whitespace, inside a longer text", () => {
    const text = 'x  {"a": [1, "b\\"}"], "c": {"d": null}} tail';
    const node = scanJson(text, 1);
    expect(node?.kind).toBe("object");
    expect(text.slice(node?.start, node?.end ?? 0)).toBe('{"a": [1, "b\\"}"], "c": {"d": null}}');
  });

  it("reads a value cut anywhere: complete parts have ends, the open ones none", () => {
    expect(ends(scanJson('{"a": [1, "b', 0))).toEqual([null, [["a", [null, [8, null]]]]]);
    expect(ends(scanJson('{"ke', 0))).toEqual([null, [[null, null]]]);
    const number = scanJson('{"n": 12', 0);
    expect(node(number).entries[0]?.value?.end).toBeNull(); // "12" may still grow
  });

  it("decodes escapes, and refuses what is not JSON", () => {
    const s = scanJson('"a\\u00e9\\n\\"b"', 0);
    expect(s).toMatchObject({ kind: "string", value: 'aé\n"b' });
    for (const bad of ["{'a': 1}", '{"a" 1}', "[1 2]", "tru e", '"a\u0001"', "nope"]) {
      expect(scanJson(bad, 0)).toBeNull();
    }
  });

  it("agrees with JSON.parse on every prefix of random JSON: whole ones end where JSON does", () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        const whole = scanJson(text, 0);
        expect(whole).not.toBeNull();
        // a bare number at the very end may still grow: no end yet, as for any prefix
        expect(whole?.end ?? text.length).toBe(text.length);
        for (let cut = 1; cut < text.length; cut++) {
          const prefix = scanJson(text.slice(0, cut), 0);
          expect(prefix).not.toBeNull(); // a prefix of JSON is never refused
        }
      }),
      { numRuns: 300 },
    );
  });
});

function node(value: JsonNode | null): JsonNode & { kind: "object" } {
  if (value?.kind !== "object") throw new Error("not an object");
  return value;
}
