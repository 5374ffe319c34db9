import {
  batchInputLineSchema,
  type InferenceEndpoint,
  type InferenceRequest,
  requestIssue,
} from "@lorafleet/api";
import { ApiError } from "../errors.ts";

/** One request of a batch input file. */
export type BatchLine = {
  customId: string;
  /** The line's body as the endpoint's shared schema reads it (@lorafleet/api). */
  request: InferenceRequest;
  /** The body as written: what the backend is sent. */
  body: Record<string, unknown>;
};

/** Most lines one batch may hold. */
export const maxBatchLines = 50_000;

/**
 * Parses an OpenAI batch input file: one JSON object per line,
 * `{"custom_id", "method": "POST", "url": <endpoint>, "body": {...}}`, unique
 * custom ids, each body checked with the schema the backend checks it with
 * (`batchInputLineSchema`), so a line the backend would refuse is refused now.
 * A bad line is a 400 naming its line number and field.
 *
 * @example parseBatchInput('{"custom_id":"a","method":"POST","url":"/v1/completions","body":{"model":"m","prompt":"hi"}}', "/v1/completions")
 */
export function parseBatchInput(text: string, endpoint: InferenceEndpoint): BatchLine[] {
  const schema = batchInputLineSchema(endpoint);
  const lines: BatchLine[] = [];
  const ids = new Set<string>();
  for (const [index, raw] of text.split("\n").entries()) {
    if (raw.trim() === "") continue;
    const bad = (why: string) =>
      new ApiError(400, "invalid_batch_input", `Line ${index + 1} of the input file: ${why}`);
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      throw bad("not valid JSON");
    }
    const line = schema.safeParse(json);
    if (!line.success) throw bad(requestIssue(line.error).message);
    const customId = line.data.custom_id;
    if (ids.has(customId)) throw bad(`custom_id ${customId} is used twice`);
    ids.add(customId);
    const { body } = json as { body: Record<string, unknown> };
    lines.push({ customId, request: line.data.body, body });
    if (lines.length > maxBatchLines) throw bad(`a batch holds at most ${maxBatchLines} requests`);
  }
  if (lines.length === 0)
    throw new ApiError(400, "invalid_batch_input", "The input file has no requests");
  return lines;
}
