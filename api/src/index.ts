// @lorafleet/api: the request bodies lorafleet accepts, checked by one set of zod schemas
// wherever they arrive (gateway, backend), and the bounded body reader both servers use.
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
