import { retryD1 } from "../storage/d1-retry.ts";

/** What a tenant sees of one request's usage row. */
export type RequestUsage = {
  /** The gateway's own id of the request: unique. */
  id: string;
  /** The client's `x-request-id` (or the UUID the gateway answered with): what was looked up. */
  request_id: string;
  endpoint: string;
  model: string;
  adapter_id: string | null;
  status: number;
  outcome: string;
  prompt_tokens: number;
  /** as in a response's usage: the prompt tokens the backend found in its prefix cache */
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens: number;
  latency_ms: number;
  created_at: number;
};

/** Most rows one lookup answers: a client id reused more often than this shows its newest. */
export const maxRequestRows = 100;

/**
 * The tenant's usage rows whose label is `requestId` (the `x-request-id` its client sent or
 * was answered with), newest first. A client id is only a label: requests that reused it
 * each have their own row, and another tenant's rows never show.
 *
 * @example await requestRows(env.DB, "tn_1", "my-call-42")
 */
export async function requestRows(
  db: D1Database,
  tenantId: string,
  requestId: string,
): Promise<RequestUsage[]> {
  const { results } = await retryD1(() =>
    db
      .prepare(
        `SELECT id, request_id, endpoint, model, adapter_id, status, outcome, prompt_tokens,
           cached_tokens, completion_tokens, latency_ms, created_at
         FROM usage WHERE tenant_id = ? AND request_id = ? ORDER BY created_at DESC, id LIMIT ?`,
      )
      .bind(tenantId, requestId, maxRequestRows)
      .all<Omit<RequestUsage, "prompt_tokens_details"> & { cached_tokens: number }>(),
  );
  return results.map(({ cached_tokens, ...row }) => ({
    ...row,
    prompt_tokens_details: { cached_tokens },
  }));
}
