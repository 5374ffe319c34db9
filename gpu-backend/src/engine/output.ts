/** Why a request ended. "stop": EOS, a stop token, or the server's stop string (abort "stop"). */
export type FinishReason = "stop" | "length" | "abort" | "deadline" | "error";

export interface TokenLogprobs {
  /** natural log of the sampled token's probability */
  logprob: number;
  /** the top n alternatives when sampling.logprobs = n > 0, most likely first */
  top: { tokenId: number; logprob: number }[];
}

/** What the engine tells the server about one request: only the tokens new since the last one. */
export interface RequestOutput {
  id: string;
  tenant: string;
  newTokenIds: number[];
  /** parallel to newTokenIds when sampling.logprobs was set, else null */
  logprobs: TokenLogprobs[] | null;
  /** null = still running; each request gets exactly one non-null, and nothing after it */
  finishReason: FinishReason | null;
  /** the EOS or stop token that finished it (the last of newTokenIds), to leave out of text */
  stopTokenId: number | null;
  /** set when finishReason is "error" */
  error: string | null;
  numPromptTokens: number;
  /** prompt tokens whose KV the prefix cache had at the first admission (OpenAI's cached_tokens) */
  numCachedTokens: number;
  /** all output tokens so far, for usage */
  numOutputTokens: number;
}
