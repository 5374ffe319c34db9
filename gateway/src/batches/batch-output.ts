import type { ModelTarget } from "../openai/resolve-model.ts";
import type { BatchLine } from "./batch-input.ts";

/** One line's outcome: a line of the output file (ok) or of the error file. */
export type LineResult = { ok: boolean; line: string };

/**
 * One line of a batch on its way to a backend; requestId is "<batch id>-<line index>", made
 * by the gateway, so it is both the line's usage and reservation key and its label.
 */
export type Item = { line: BatchLine; index: number; requestId: string; target: ModelTarget };

/** An output-file line (OpenAI's batch output format). */
export function success(
  item: Pick<Item, "line" | "index" | "requestId">,
  body: unknown,
): [string, LineResult] {
  return [
    resultKey(item.index),
    {
      ok: true,
      line: JSON.stringify({
        id: `batch_req_${item.requestId}`,
        custom_id: item.line.customId,
        response: { status_code: 200, request_id: item.requestId, body },
        error: null,
      }),
    },
  ];
}

/** An error-file line; `response` is the backend's answer when there was one. */
export function failure(
  item: Pick<Item, "line" | "index" | "requestId">,
  code: string,
  message: string,
  answer: { status: number; body: unknown } | null = null,
): [string, LineResult] {
  return [
    resultKey(item.index),
    {
      ok: false,
      line: JSON.stringify({
        id: `batch_req_${item.requestId}`,
        custom_id: item.line.customId,
        response:
          answer === null
            ? null
            : { status_code: answer.status, request_id: item.requestId, body: answer.body },
        error: { code, message },
      }),
    },
  ];
}

/** Storage key of a line's result; zero-padded so storage order is line order. */
export function resultKey(index: number): string {
  return `result:${String(index).padStart(6, "0")}`;
}
