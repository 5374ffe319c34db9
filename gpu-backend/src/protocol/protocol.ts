// PROTOCOL.md's messages <-> frames. `encodeMessage` and `decodeMessage` check every
// message against schema.ts both ways, so a bad record never leaves and a bad frame
// never gets in. Records use the camelCase names of messages.ts; the wire uses
// PROTOCOL.md's snake_case names.
//
//   const bytes = encodeMessage(7, { type: "stats", body: {} });
//   decodeMessage(bytes) // { requestId: 7, type: "stats", body: {} }

import { BadMessage } from "./errors.ts";
import { decodeFrame, dtypeOf, encodeFrame, type NamedArray, type WireArray } from "./frame.ts";
import type {
  ExecutorErrorCode,
  ExecutorStats,
  GrammarCompiled,
  GrammarKind,
  InitConfig,
  ModelInfo,
  StagedAdapter,
  StepPlan,
  StepResult,
} from "./messages.ts";
import {
  type FieldKind,
  MESSAGE_BY_TYPE,
  MESSAGES,
  type MessageName,
  type MessageSpec,
  MODULE_NAMES,
} from "./schema.ts";

export interface MessageBodies {
  init: InitConfig;
  ready: ModelInfo;
  stage_adapter: { adapterId: number; path: string };
  adapter_staged: StagedAdapter;
  load_adapter: { adapterId: number; pages: Int32Array };
  drop_adapter: { adapterId: number; tier: "pool" | "host" };
  step: StepPlan;
  step_result: StepResult;
  stats: Record<string, never>;
  stats_result: ExecutorStats;
  shutdown: Record<string, never>;
  ok: Record<string, never>;
  error: { code: ExecutorErrorCode; message: string; requestId: number };
  compile_grammar: { grammarId: number; kind: GrammarKind; source: string };
  grammar_compiled: GrammarCompiled;
  drop_grammar: { grammarId: number };
}

export type Message = { [K in MessageName]: { type: K; body: MessageBodies[K] } }[MessageName];
export type Decoded = Message & { requestId: number };

/** "num_new_tokens" -> "numNewTokens": the record key of a wire name. */
const recordKey = (wire: string): string =>
  wire.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

export function encodeMessage(requestId: number, message: Message): Uint8Array {
  const spec: MessageSpec = MESSAGES[message.type];
  const body = message.body as unknown as Record<string, unknown>;
  if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffffffff) {
    throw new BadMessage(`request id ${requestId} is not a u32`);
  }
  const arrays: NamedArray[] = spec.arrays.map(({ wire, dtype }) => {
    const data = body[recordKey(wire)];
    if (
      !ArrayBuffer.isView(data) ||
      data instanceof DataView ||
      dtypeOf(data as WireArray) !== dtype
    ) {
      throw new BadMessage(`${message.type}: ${recordKey(wire)} must be the ${dtype} typed array`);
    }
    return { name: wire, dtype, data: data as WireArray };
  });
  const meta: Record<string, unknown> = {};
  for (const field of spec.fields) {
    const key = recordKey(field.wire);
    meta[field.wire] =
      field.lengthOf === undefined
        ? canonical(field.kind, body[key])
        : (body[recordKey(field.lengthOf)] as WireArray).length;
  }
  check(message.type, spec, meta, arrays);
  return encodeFrame(spec.type, requestId, meta, arrays);
}

/** One complete frame -> its message; throws BadFrame or BadMessage naming the problem. */
export function decodeMessage(bytes: Uint8Array): Decoded {
  const frame = decodeFrame(bytes);
  const name = MESSAGE_BY_TYPE.get(frame.type);
  if (name === undefined) throw new BadMessage(`unknown message type ${frame.type}`);
  const spec: MessageSpec = MESSAGES[name];
  check(name, spec, frame.meta, frame.arrays);
  const body: Record<string, unknown> = {};
  for (const field of spec.fields) {
    if (field.lengthOf === undefined) body[recordKey(field.wire)] = frame.meta[field.wire];
  }
  for (const array of frame.arrays) body[recordKey(array.name)] = array.data;
  return { requestId: frame.requestId, type: name, body } as unknown as Decoded;
}

function check(
  name: MessageName,
  spec: MessageSpec,
  meta: Record<string, unknown>,
  arrays: NamedArray[],
): void {
  for (const key of Object.keys(meta)) {
    if (!spec.fields.some((field) => field.wire === key)) {
      throw new BadMessage(`${name}: unknown meta field "${key}"`);
    }
  }
  for (const field of spec.fields) {
    if (!Object.hasOwn(meta, field.wire)) {
      throw new BadMessage(`${name}: meta field "${field.wire}" is missing`);
    }
    const problem = fieldProblem(field.kind, meta[field.wire]);
    if (problem !== undefined)
      throw new BadMessage(`${name}: meta field "${field.wire}" ${problem}`);
  }
  if (
    arrays.length !== spec.arrays.length ||
    spec.arrays.some((a, i) => arrays[i]?.name !== a.wire)
  ) {
    const want = spec.arrays.map((a) => a.wire).join(", ") || "none";
    const got = arrays.map((a) => a.name).join(", ") || "none";
    throw new BadMessage(`${name}: arrays must be [${want}] in this order, got [${got}]`);
  }
  spec.arrays.forEach((want, i) => {
    const got = arrays[i] as NamedArray;
    if (got.dtype !== want.dtype) {
      throw new BadMessage(`${name}: array ${want.wire} must be ${want.dtype}, got ${got.dtype}`);
    }
    if (want.length !== "any") {
      const expected = (meta[want.length.field] as number) * (want.length.times ?? 1);
      if (got.data.length !== expected) {
        throw new BadMessage(
          `${name}: array ${want.wire} has ${got.data.length} elements, ${want.length.field} says ${expected}`,
        );
      }
    }
  });
  const byName = new Map(arrays.map((a) => [a.name, a.data]));
  if (name === "step") {
    const total = sum(byName.get("num_new_tokens") as Int32Array);
    if (total !== meta.num_tokens) {
      throw new BadMessage(
        `step: num_new_tokens sum to ${total}, num_tokens is ${meta.num_tokens}`,
      );
    }
  }
  if (name === "step_result") {
    const counts = byName.get("top_counts") as Int32Array;
    if (counts.some((c) => c < 0))
      throw new BadMessage("step_result: a top_counts entry is negative");
    const total = sum(counts);
    for (const wire of ["top_ids", "top_logprobs"]) {
      const length = (byName.get(wire) as WireArray).length;
      if (length !== total) {
        throw new BadMessage(
          `step_result: ${wire} has ${length} elements, top_counts sum to ${total}`,
        );
      }
    }
  }
}

const sum = (values: Int32Array): number => values.reduce((a, b) => a + b, 0);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isU32 = (v: unknown): v is number => isCount(v) && v <= 0xffffffff;

/** Why `value` is not of `kind`, or undefined when it is. */
function fieldProblem(kind: FieldKind, value: unknown): string | undefined {
  if (typeof kind === "object") {
    return kind.oneOf.includes(value as string)
      ? undefined
      : `must be one of ${kind.oneOf.join(" | ")}`;
  }
  switch (kind) {
    case "count":
      return isCount(value) ? undefined : "must be an integer 0 … 2^53-1";
    case "u32":
      return isU32(value) ? undefined : "must be an integer 0 … 2^32-1";
    case "number":
      return typeof value === "number" && Number.isFinite(value)
        ? undefined
        : "must be a finite number";
    case "string":
      return typeof value === "string" ? undefined : "must be a string";
    case "bool":
      return typeof value === "boolean" ? undefined : "must be true or false";
    case "u32_list":
      return Array.isArray(value) && value.every(isU32) ? undefined : "must be a list of u32";
    case "string_list":
      return Array.isArray(value) && value.every((v) => typeof v === "string")
        ? undefined
        : "must be a list of strings";
    case "modules": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return "must be an object of module name -> [in, out]";
      }
      const keys = Object.keys(value).sort();
      if (keys.join() !== [...MODULE_NAMES].sort().join()) {
        return `must have exactly the modules ${MODULE_NAMES.join(" ")}`;
      }
      const pairs = Object.values(value);
      return pairs.every((p) => Array.isArray(p) && p.length === 2 && p.every(isCount))
        ? undefined
        : "must map each module to [in, out] counts";
    }
  }
}

/** Values whose JSON could come out in different orders are put in the canonical one. */
function canonical(kind: FieldKind, value: unknown): unknown {
  if (kind !== "modules" || typeof value !== "object" || value === null) return value;
  const modules = value as Record<string, unknown>;
  return Object.fromEntries(
    [...MODULE_NAMES, ...Object.keys(modules).filter((k) => !MODULE_NAMES.includes(k as never))]
      .filter((k) => Object.hasOwn(modules, k))
      .map((k) => [k, modules[k]]),
  );
}
