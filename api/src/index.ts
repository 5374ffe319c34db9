// @lorafleet/api: the request bodies lorafleet accepts, checked by one set of zod schemas
// wherever they arrive (gateway, backend), the bounded body reader both servers use, and
// the one set of rules a LoRA adapter must meet (adapter/rules.ts).
export {
  type AdapterFiles,
  type CheckedAdapter,
  checkAdapter,
  missingConfig,
  missingWeights,
} from "./adapter/adapter.ts";
export { type AdapterConfig, checkAdapterConfig } from "./adapter/config.ts";
export {
  type AdapterBase,
  AdapterRuleError,
  LORA_MODULES,
  type LoraModule,
  MAX_CONFIG_BYTES,
  MAX_HEADER_BYTES,
  MAX_SCALE,
  MAX_WEIGHT,
} from "./adapter/rules.ts";
export {
  parseSafetensorsHeader,
  safetensorsHeaderEnd,
  type TensorEntry,
} from "./adapter/safetensors.ts";
export { checkLoraTensors, type LoraTensor } from "./adapter/tensors.ts";
export { WeightValues } from "./adapter/weights.ts";
export { batchInputLineSchema } from "./batch-input-line.ts";
export { BodyNotJsonError, BodyTooLargeError, readBodyBytes, readJsonBody } from "./body-reader.ts";
export {
  BackendChatCompletionRequestSchema,
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
} from "./chat-completion-request.ts";
export {
  BackendCompletionRequestSchema,
  type CompletionRequest,
  CompletionRequestSchema,
} from "./completion-request.ts";
export {
  type InferenceEndpoint,
  type InferenceRequest,
  inferenceEndpoints,
  requestSchemas,
} from "./inference-endpoint.ts";
export { type InternalBatchRequest, InternalBatchRequestSchema } from "./internal-batch-request.ts";
export { type LorafleetField, LorafleetFieldSchema } from "./lorafleet-field.ts";
export { requestIssue } from "./request-issue.ts";
export {
  type StructuredOutputBody,
  structuredOutputLimits,
} from "./structured-output-fields.ts";
export { toolLimits } from "./tool-fields.ts";
