import type { StepPlan } from "../protocol/messages.ts";
import type { Sequence } from "./sequence.ts";

/** One seq's part of a step. */
export interface PlannedSeq {
  seq: Sequence;
  seqId: number;
  flags: number;
  numNewTokens: number;
  numCached: number;
  /** -1 = base model */
  adapterId: number;
  /** numNewTokens ids, -1 first where StepFlag.useLastSampled */
  tokenIds: number[];
  /** 2 × numNewTokens */
  kvPages: Int32Array;
  /** a new seq's cached prefix: numCached token ids, and 2 × numCached pages (else empty) */
  prefixTokenIds: readonly number[];
  prefixKvPages: readonly number[];
}

/**
 * The step's row order: one-token seqs first (the executor runs the leading ones on the
 * decode LoRA kernel, the rest by runs of one adapter), each part grouped by adapter,
 * otherwise as planned. Rows of one adapter side by side share their reads of its pages:
 * a prefill run per adapter, and decode blocks of 16 rows on one adapter on the tensor
 * cores (kernels/lora_decode.py).
 */
export function inRowOrder(planned: PlannedSeq[]): PlannedSeq[] {
  const part = (s: PlannedSeq) => (s.numNewTokens === 1 ? 0 : 1);
  return planned.toSorted((a, b) => part(a) - part(b) || a.adapterId - b.adapterId);
}

/** Packs planned seqs into the flat typed arrays of a StepPlan (PROTOCOL.md `step`). */
export function buildStepPlan(stepId: number, freeSeqIds: number[], seqs: PlannedSeq[]): StepPlan {
  const n = seqs.length;
  const numTokens = seqs.reduce((sum, s) => sum + s.numNewTokens, 0);
  const numPrefix = seqs.reduce((sum, s) => sum + s.prefixTokenIds.length, 0);
  const plan: StepPlan = {
    stepId,
    freeSeqIds: Uint32Array.from(freeSeqIds),
    seqIds: new Uint32Array(n),
    flags: new Uint8Array(n),
    numNewTokens: new Int32Array(n),
    numCached: new Int32Array(n),
    numPrompt: new Int32Array(n),
    adapterIds: new Int32Array(n),
    temperature: new Float32Array(n),
    topP: new Float32Array(n),
    topK: new Int32Array(n),
    minP: new Float32Array(n),
    presencePenalty: new Float32Array(n),
    frequencyPenalty: new Float32Array(n),
    repetitionPenalty: new Float32Array(n),
    seed: new BigInt64Array(n),
    logprobs: new Int32Array(n),
    tokenIds: new Int32Array(numTokens),
    kvPages: new Int32Array(2 * numTokens),
    prefixTokenIds: new Int32Array(numPrefix),
    prefixKvPages: new Int32Array(2 * numPrefix),
    grammarIds: new Int32Array(n),
  };
  let offset = 0;
  let prefixOffset = 0;
  for (const [i, s] of seqs.entries()) {
    const sampling = s.seq.req.sampling;
    plan.seqIds[i] = s.seqId;
    plan.flags[i] = s.flags;
    plan.numNewTokens[i] = s.numNewTokens;
    plan.numCached[i] = s.numCached;
    plan.numPrompt[i] = s.seq.numPrompt;
    plan.adapterIds[i] = s.adapterId;
    plan.temperature[i] = sampling.temperature;
    plan.topP[i] = sampling.topP;
    plan.topK[i] = sampling.topK;
    plan.minP[i] = sampling.minP;
    plan.presencePenalty[i] = sampling.presencePenalty;
    plan.frequencyPenalty[i] = sampling.frequencyPenalty;
    plan.repetitionPenalty[i] = sampling.repetitionPenalty;
    plan.seed[i] = BigInt(sampling.seed ?? -1);
    plan.logprobs[i] = sampling.logprobs ?? -1;
    plan.grammarIds[i] = s.seq.req.grammarId ?? -1;
    plan.tokenIds.set(s.tokenIds, offset);
    plan.kvPages.set(s.kvPages, 2 * offset);
    offset += s.numNewTokens;
    plan.prefixTokenIds.set(s.prefixTokenIds, prefixOffset);
    plan.prefixKvPages.set(s.prefixKvPages, 2 * prefixOffset);
    prefixOffset += s.prefixTokenIds.length;
  }
  return plan;
}
