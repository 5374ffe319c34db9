// What the serving loop needs from the executor client and the adapter store: the
// calls it makes and the supervisor's state, typed structurally so the real client
// (src/executor/client.ts) and store (src/adapters/store.ts) plug in as they are.
import type { ExecutorState } from "../executor/client.ts";
import type {
  GrammarCompiled,
  GrammarKind,
  ModelInfo,
  StagedAdapter,
  StepPlan,
  StepResult,
} from "../protocol/messages.ts";

export interface ExecutorLink {
  stageAdapter(adapterId: number, path: string): Promise<StagedAdapter>;
  loadAdapter(adapterId: number, pages: Int32Array): Promise<void>;
  dropAdapter(adapterId: number, tier: "pool" | "host"): Promise<void>;
  step(plan: StepPlan): Promise<StepResult>;
  compileGrammar(grammarId: number, kind: GrammarKind, source: string): Promise<GrammarCompiled>;
  dropGrammar(grammarId: number): Promise<void>;
}

/**
 * The executor's one supervisor (the client: its RestartPolicy is the backend's only
 * restart policy): whether an executor is up, and the way back to one after a loss.
 */
export interface ExecutorSupervisor {
  /** "ready": calls may go out; "restarting"; "failed": it gave up */
  readonly state: ExecutorState;
  /** A fresh executor's model (spawn + init); rejects once the supervisor gives up. */
  recover(): Promise<ModelInfo>;
}

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
