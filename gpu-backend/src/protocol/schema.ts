// Every message of PROTOCOL.md as data: its type number, meta fields (wire names, in
// wire order) and arrays. protocol.ts checks frames against this table both ways;
// executor/lorafleet_executor/protocol/schema.py holds the same table.

import type { Dtype } from "./frame.ts";

export const MODULE_NAMES = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export const ERROR_CODES = [
  "bad_frame",
  "bad_message",
  "unknown_adapter",
  "adapter_invalid",
  "page_out_of_range",
  "capacity",
  "internal",
  "grammar_invalid",
  "grammar_too_complex",
] as const;
export const GRAMMAR_KINDS = ["json_schema", "regex", "choice", "grammar", "lark"] as const;

/**
 * What a meta field may hold. `count`: an integer 0 … 2^53-1 (sizes, byte counts);
 * `u32`: an id 0 … 2^32-1; `number`: any finite number; `modules`: exactly the keys of
 * MODULE_NAMES, each an [in, out] pair of counts; `u32_list`/`string_list`: JSON lists.
 */
export type FieldKind =
  | "count"
  | "u32"
  | "number"
  | "string"
  | "bool"
  | "modules"
  | "u32_list"
  | "string_list"
  | { oneOf: readonly string[] };

export interface FieldSpec {
  wire: string;
  kind: FieldKind;
  /** a count the sender computes from this array's length; the receiver checks it */
  lengthOf?: string;
}

/** An array's length: anything, a meta field's value, or twice it. */
export type LengthRule = "any" | { field: string; times?: number };

export interface ArraySpec {
  wire: string;
  dtype: Dtype;
  length: LengthRule;
}

export interface MessageSpec {
  type: number;
  fields: FieldSpec[];
  arrays: ArraySpec[];
}

const f = (wire: string, kind: FieldKind, lengthOf?: string): FieldSpec =>
  lengthOf === undefined ? { wire, kind } : { wire, kind, lengthOf };
const perSeq = (wire: string, dtype: Dtype): ArraySpec => ({
  wire,
  dtype,
  length: { field: "num_seqs" },
});
const perRow = (wire: string, dtype: Dtype): ArraySpec => ({
  wire,
  dtype,
  length: { field: "num_sampled" },
});

export const MESSAGES = {
  init: {
    type: 1,
    fields: [
      f("model_path", "string"),
      f("dtype", { oneOf: ["auto", "bfloat16", "float16", "float32"] }),
      f("device", { oneOf: ["auto", "cpu", "cuda"] }),
      f("num_pages", "count"),
      f("gpu_memory_utilization", "number"),
      f("max_lora_rank", "count"),
      f("max_num_seqs", "count"),
      f("max_num_batched_tokens", "count"),
      f("host_cache_bytes", "count"),
      f("lora_backend", { oneOf: ["triton", "torch"] }),
      f("cuda_graphs", "bool"),
      f("quantization", { oneOf: ["auto", "fp8"] }),
    ],
    arrays: [],
  },
  ready: {
    type: 2,
    fields: [
      f("num_pages", "count"),
      f("page_width", "count"),
      f("num_layers", "count"),
      f("hidden_size", "count"),
      f("intermediate_size", "count"),
      f("num_heads", "count"),
      f("num_kv_heads", "count"),
      f("head_dim", "count"),
      f("vocab_size", "count"),
      f("max_position", "count"),
      f("host_cache_bytes", "count"),
      f("max_adapter_host_bytes", "count"),
      f("dtype", "string"),
      f("device", "string"),
      f("modules", "modules"),
      f("eos_token_ids", "u32_list"),
      f("quantization", { oneOf: ["none", "fp8"] }),
    ],
    arrays: [],
  },
  stage_adapter: { type: 3, fields: [f("adapter_id", "u32"), f("path", "string")], arrays: [] },
  adapter_staged: {
    type: 4,
    fields: [
      f("adapter_id", "u32"),
      f("rank", "count"),
      f("scale", "number"),
      f("targets", "string_list"),
      f("num_pages", "count"),
      f("host_bytes", "count"),
    ],
    arrays: [],
  },
  load_adapter: {
    type: 5,
    fields: [f("adapter_id", "u32")],
    arrays: [{ wire: "pages", dtype: "i32", length: "any" }],
  },
  drop_adapter: {
    type: 6,
    fields: [f("adapter_id", "u32"), f("tier", { oneOf: ["pool", "host"] })],
    arrays: [],
  },
  step: {
    type: 7,
    fields: [
      f("step_id", "u32"),
      f("num_seqs", "count", "seq_ids"),
      f("num_tokens", "count", "token_ids"),
      f("num_prefix_tokens", "count", "prefix_token_ids"),
    ],
    arrays: [
      { wire: "free_seq_ids", dtype: "u32", length: "any" },
      perSeq("seq_ids", "u32"),
      perSeq("flags", "u8"),
      perSeq("num_new_tokens", "i32"),
      perSeq("num_cached", "i32"),
      perSeq("num_prompt", "i32"),
      perSeq("adapter_ids", "i32"),
      perSeq("temperature", "f32"),
      perSeq("top_p", "f32"),
      perSeq("top_k", "i32"),
      perSeq("min_p", "f32"),
      perSeq("presence_penalty", "f32"),
      perSeq("frequency_penalty", "f32"),
      perSeq("repetition_penalty", "f32"),
      perSeq("seed", "i64"),
      perSeq("logprobs", "i32"),
      { wire: "token_ids", dtype: "i32", length: { field: "num_tokens" } },
      { wire: "kv_pages", dtype: "i32", length: { field: "num_tokens", times: 2 } },
      { wire: "prefix_token_ids", dtype: "i32", length: { field: "num_prefix_tokens" } },
      {
        wire: "prefix_kv_pages",
        dtype: "i32",
        length: { field: "num_prefix_tokens", times: 2 },
      },
      perSeq("grammar_ids", "i32"),
    ],
  },
  step_result: {
    type: 8,
    fields: [
      f("step_id", "u32"),
      f("num_sampled", "count", "seq_ids"),
      f("forward_ms", "number"),
      f("sample_ms", "number"),
    ],
    arrays: [
      perRow("seq_ids", "u32"),
      perRow("tokens", "i32"),
      perRow("logprobs", "f32"),
      perRow("top_counts", "i32"),
      { wire: "top_ids", dtype: "i32", length: "any" },
      { wire: "top_logprobs", dtype: "f32", length: "any" },
      perRow("grammar_errors", "u8"),
    ],
  },
  stats: { type: 9, fields: [], arrays: [] },
  stats_result: {
    type: 10,
    fields: [
      f("host_cache_bytes", "count"),
      f("host_cache_adapters", "count"),
      f("pool_adapters", "count"),
      f("live_seqs", "count"),
      f("steps", "count"),
      f("device_memory_bytes", "count"),
    ],
    arrays: [],
  },
  shutdown: { type: 11, fields: [], arrays: [] },
  ok: { type: 12, fields: [], arrays: [] },
  error: {
    type: 13,
    fields: [f("code", { oneOf: ERROR_CODES }), f("message", "string"), f("request_id", "u32")],
    arrays: [],
  },
  compile_grammar: {
    type: 14,
    fields: [f("grammar_id", "u32"), f("kind", { oneOf: GRAMMAR_KINDS }), f("source", "string")],
    arrays: [],
  },
  grammar_compiled: {
    type: 15,
    fields: [f("grammar_id", "u32"), f("compile_ms", "number"), f("cached", "bool")],
    arrays: [],
  },
  drop_grammar: { type: 16, fields: [f("grammar_id", "u32")], arrays: [] },
} as const satisfies Record<string, MessageSpec>;

export type MessageName = keyof typeof MESSAGES;

export const MESSAGE_BY_TYPE: ReadonlyMap<number, MessageName> = new Map(
  (Object.keys(MESSAGES) as MessageName[]).map((name) => [MESSAGES[name].type, name]),
);
