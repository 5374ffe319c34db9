// The records that cross the engine <-> executor boundary, mirroring PROTOCOL.md and
// executor/lorafleet_executor/protocol/messages.py. The engine produces StepPlans and consumes
// StepResults; protocol.ts turns them into frames and back.

export const PROTOCOL_VERSION = 1;

export const StepFlag = {
  /** sample a token after this seq's last new token */
  sample: 1,
  /** first step of this sequence: executor state starts empty */
  new: 2,
  /** the seq's first new token is the one the executor sampled last step (token_ids has -1) */
  useLastSampled: 4,
} as const;

export interface InitConfig {
  modelPath: string;
  dtype: "auto" | "bfloat16" | "float16" | "float32";
  device: "auto" | "cpu" | "cuda";
  /** pages in the pool; 0 = derive from gpuMemoryUtilization */
  numPages: number;
  /** share of the GPU's memory the executor may use in all */
  gpuMemoryUtilization: number;
  maxLoraRank: number;
  maxNumSeqs: number;
  /** per step */
  maxNumBatchedTokens: number;
  hostCacheBytes: number;
  loraBackend: "triton" | "torch";
  cudaGraphs: boolean;
  /** auto: as the checkpoint is (FP8 checkpoints in FP8); fp8: a dense checkpoint's
   * projections quantized to FP8 at load */
  quantization: "auto" | "fp8";
}

export interface ModelInfo {
  numPages: number;
  /** W, elements per page */
  pageWidth: number;
  numLayers: number;
  hiddenSize: number;
  intermediateSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** longest sequence the executor accepts */
  maxPosition: number;
  /** bytes of the host tier (init's hostCacheBytes): the engine keeps staged adapters within it */
  hostCacheBytes: number;
  /** host bytes of the largest adapter `maxLoraRank` allows: what the engine reserves for one being staged */
  maxAdapterHostBytes: number;
  dtype: string;
  device: string;
  /** module name (q k v o gate up down) -> [in, out] features */
  modules: Record<string, [number, number]>;
  eosTokenIds: number[];
  /** how the base projections are served: dense, or float8 weights (PROTOCOL.md) */
  quantization: "none" | "fp8";
}

export interface StagedAdapter {
  adapterId: number;
  rank: number;
  /** alpha / r, or alpha / sqrt(r) with rsLoRA */
  scale: number;
  targets: string[];
  /** pages it needs in the pool */
  numPages: number;
  hostBytes: number;
}

/** One iteration: seqs in order, their new tokens contiguous in tokenIds. */
export interface StepPlan {
  stepId: number;
  /** sequences whose executor state is dropped before this step */
  freeSeqIds: Uint32Array;
  seqIds: Uint32Array;
  /** StepFlag bits */
  flags: Uint8Array;
  numNewTokens: Int32Array;
  /** tokens already in the KV cache */
  numCached: Int32Array;
  numPrompt: Int32Array;
  /** -1 = base model */
  adapterIds: Int32Array;
  /** 0 = greedy */
  temperature: Float32Array;
  topP: Float32Array;
  /** 0 = off */
  topK: Int32Array;
  minP: Float32Array;
  presencePenalty: Float32Array;
  frequencyPenalty: Float32Array;
  /** 1 = off */
  repetitionPenalty: Float32Array;
  /** -1 = none */
  seed: BigInt64Array;
  /** -1 none, 0 sampled token only, n = also the top n */
  logprobs: Int32Array;
  /** -1 where StepFlag.useLastSampled stands in */
  tokenIds: Int32Array;
  /** K page then V page per new token */
  kvPages: Int32Array;
  /**
   * prefix caching: for each seq flagged `new` with numCached > 0, in step order, the ids of
   * its numCached cached tokens
   */
  prefixTokenIds: Int32Array;
  /** and their K page then V page per token: the start of its page table */
  prefixKvPages: Int32Array;
  /** a compiled grammar (compile_grammar) constraining the seq's samples; -1 = none */
  grammarIds: Int32Array;
}

/** One row per seq that sampled, in step order. */
export interface StepResult {
  stepId: number;
  seqIds: Uint32Array;
  tokens: Int32Array;
  /** NaN when not asked */
  logprobs: Float32Array;
  topCounts: Int32Array;
  topIds: Int32Array;
  topLogprobs: Float32Array;
  /** 1 = the row's grammar failed (its token is an EOS): the request ends with an error */
  grammarErrors: Uint8Array;
  forwardMs: number;
  sampleMs: number;
}

export interface ExecutorStats {
  hostCacheBytes: number;
  hostCacheAdapters: number;
  poolAdapters: number;
  liveSeqs: number;
  steps: number;
  deviceMemoryBytes: number;
}

/** What a grammar's source text is (PROTOCOL.md `compile_grammar`). */
export type GrammarKind = "json_schema" | "regex" | "choice" | "grammar" | "lark";

/** A grammar as the executor compiles it. */
export interface GrammarSpec {
  kind: GrammarKind;
  source: string;
}

export interface GrammarCompiled {
  grammarId: number;
  /** wall ms of the compile; 0 when it was cached */
  compileMs: number;
  /** the same grammar was compiled (or compiling) already */
  cached: boolean;
}

/** PROTOCOL.md's error codes. */
export type ExecutorErrorCode =
  | "bad_frame"
  | "bad_message"
  | "unknown_adapter"
  | "adapter_invalid"
  | "page_out_of_range"
  | "capacity"
  | "internal"
  | "grammar_invalid"
  | "grammar_too_complex";
