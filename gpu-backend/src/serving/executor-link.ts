// What the serving loop needs from the executor client and the adapter store: the
// calls it makes, typed structurally so the real client (src/executor/client.ts) and
// store (src/adapters/store.ts) plug in as they are.
import type { ModelInfo, StagedAdapter, StepPlan, StepResult } from "../protocol/messages.ts";

export interface ExecutorLink {
  stageAdapter(adapterId: number, path: string): Promise<StagedAdapter>;
  loadAdapter(adapterId: number, pages: Int32Array): Promise<void>;
  dropAdapter(adapterId: number, tier: "pool" | "host"): Promise<void>;
  step(plan: StepPlan): Promise<StepResult>;
}

/** Brings a crashed executor back (spawn + init); rejects when it cannot. */
export type ExecutorRestarter = () => Promise<ModelInfo>;

/** An adapter as the gateway names it: its two files behind signed URLs, the weights' sha256. */
export interface RemoteAdapter {
  /** the gateway's adapter id, unique across tenants */
  id: string;
  name: string;
  /** of adapter_model.safetensors */
  sha256: string;
  configUrl: string;
  weightsUrl: string;
}

export interface AdapterSource {
  /** A local PEFT directory for an adapter name the store knows, or null. */
  find(name: string): Promise<string | null>;
  /** Downloads (or finds cached) and sha256-verifies; rejects with a message naming the problem. */
  fetch(adapter: RemoteAdapter): Promise<string>;
}
