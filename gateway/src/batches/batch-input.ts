import { ApiError } from "../errors.ts";

export const batchEndpoints = ["/v1/chat/completions", "/v1/completions"] as const;
export type BatchEndpoint = (typeof batchEndpoints)[number];

/** One request of a batch input file. */
export type BatchLine = { customId: string; body: Record<string, unknown> & { model: string } };

/** Most lines one batch may hold. */
export const maxBatchLines = 50_000;

/**
 * Parses an OpenAI batch input file: one JSON object per line,
 * `{"custom_id", "method": "POST", "url": <endpoint>, "body": {...}}`, unique
 * custom ids, no streaming. A bad line is a 400 naming its line number.
 *
 * @example parseBatchInput('{"custom_id":"a","method":"POST","url":"/v1/completions","body":{"model":"m","prompt":"hi"}}', "/v1/completions")
 */
export function parseBatchInput(text: string, endpoint: BatchEndpoint): BatchLine[] {
  const lines: BatchLine[] = [];
  const ids = new Set<string>();
  const rows = text.split("\n");
  for (const [index, raw] of rows.entries()) {
    if (raw.trim() === "") continue;
    const bad = (why: string) =>
      new ApiError(400, "invalid_batch_input", `Line ${index + 1} of the input file: ${why}`);
    let item: { custom_id?: unknown; method?: unknown; url?: unknown; body?: unknown };
    try {
      item = JSON.parse(raw);
    } catch {
      throw bad("not valid JSON");
    }
    if (typeof item.custom_id !== "string" || item.custom_id === "")
      throw bad("custom_id must be a non-empty string");
    if (ids.has(item.custom_id)) throw bad(`custom_id ${item.custom_id} is used twice`);
    if (item.method !== "POST") throw bad('method must be "POST"');
    if (item.url !== endpoint) throw bad(`url must be the batch's endpoint ${endpoint}`);
    const body = item.body as Record<string, unknown> | null;
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw bad("body must be a JSON object");
    if (typeof body.model !== "string" || body.model === "") throw bad("body.model is required");
    if (body.stream === true) throw bad("streaming is not available in batches");
    ids.add(item.custom_id);
    lines.push({ customId: item.custom_id, body: body as BatchLine["body"] });
    if (lines.length > maxBatchLines) throw bad(`a batch holds at most ${maxBatchLines} requests`);
  }
  if (lines.length === 0)
    throw new ApiError(400, "invalid_batch_input", "The input file has no requests");
  return lines;
}
