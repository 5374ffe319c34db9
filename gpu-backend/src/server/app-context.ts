// What every route needs, built once in main.ts (or a test) and passed down.
import type { Logger } from "pino";
import type { AdapterRegistry } from "../serving/adapter-registry.ts";
import type { ServingMetrics } from "../serving/metrics.ts";
import type { ServingLoop } from "../serving/serving-loop.ts";
import type { ModelTokenizer } from "../tokenizer/tokenizer.ts";
import type { CallFormat } from "../tool-calls/call-format.ts";

export interface AppContext {
  serving: ServingLoop;
  adapters: AdapterRegistry;
  tokenizer: ModelTokenizer;
  metrics: ServingMetrics;
  logger: Logger;
  servedModelName: string;
  /** how the model writes tool calls (--tool-call-parser) */
  toolCallFormat: CallFormat;
  /** the shared secret of the gateway and /internal/*; null = those are refused */
  backendSecret: string | null;
  /** engine.unloadAdapter: throws while requests still need the adapter */
  unloadAdapter: (name: string) => void;
  /** a request body larger than this is refused with 413 before it is buffered */
  maxBodyBytes: number;
}
