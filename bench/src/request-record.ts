/** What the open-loop client records per request; times in seconds from the run's start. */
export type RequestStatus = "ok" | "aborted" | "failed";

export interface RequestRecord {
  id: number;
  adapter: string | null;
  /** the `model` field sent: the adapter's name or the base model's */
  model: string;
  inputTokens: number;
  /** output tokens asked for (max_tokens) */
  requestedTokens: number;
  /** when the trace said to send it */
  scheduledS: number;
  /** when fetch was called (later than scheduledS if the client fell behind) */
  sentS: number;
  /** the first streamed chunk that carries a choice; null if none came */
  firstTokenS: number | null;
  /** stream end, error or abort */
  endS: number;
  /** usage.completion_tokens when the server sends usage, else the number of chunks with a choice */
  outputTokens: number;
  /** usage.prompt_tokens_details.cached_tokens: prompt tokens the prefix cache had (null: not sent) */
  cachedTokens: number | null;
  tokenCount: "usage" | "chunks";
  status: RequestStatus;
  finishReason: string | null;
  /** why a request was aborted or failed */
  error: string | null;
}
