import { type RelayEnd, relayText } from "./relay-text.ts";

/** Token counts from a backend's `usage` object. */
export type TokenUsage = {
  promptTokens: number;
  completionTokens: number;
  /** Of `promptTokens`, those the backend found in its prefix cache (`prompt_tokens_details.cached_tokens`). */
  cachedTokens: number;
};

/** The usage of a request that used none (refused, or no answer carried a usage). */
export const noTokens: TokenUsage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };

/** How a proxied answer (a stream, or a JSON answer held open) ended, reported exactly once. */
export type StreamEnd = {
  /** backend_error: the backend's body broke off, or a stream carried an error event */
  outcome: "ok" | "client_disconnect" | "backend_error";
  /**
   * The usage of the last event that carried one: the backend puts the usage so far in every
   * chunk (`continuous_usage_stats`, which the gateway asks for), so for a stream cut short
   * this counts what was relayed; null when no event carried one.
   */
  usage: TokenUsage | null;
};

/** What the client asked to see of usage in the stream. */
export type UsageWanted = {
  /** stream_options.include_usage: the final usage-only chunk, and `usage: null` in the others */
  final: boolean;
  /** stream_options.continuous_usage_stats: the usage so far in every chunk */
  continuous: boolean;
};

/** An OpenAI-shaped error event (`data: {"error": {...}}`), as gpu-backend sends when generation fails mid-stream. */
function isErrorEvent(parsed: unknown): boolean {
  const error = (parsed as { error?: unknown } | null)?.error;
  return typeof error === "object" && error !== null;
}

type UsageObject = {
  prompt_tokens?: unknown;
  completion_tokens?: unknown;
  prompt_tokens_details?: { cached_tokens?: unknown } | null;
};

/** The token counts of an answer or chunk's `usage`; null when it has none. No details: none cached. */
export function usageFrom(value: unknown): TokenUsage | null {
  const u = (value as { usage?: UsageObject } | null)?.usage;
  if (typeof u?.prompt_tokens !== "number" || typeof u.completion_tokens !== "number") return null;
  const cached = u.prompt_tokens_details?.cached_tokens;
  return {
    promptTokens: u.prompt_tokens,
    completionTokens: u.completion_tokens,
    cachedTokens: typeof cached === "number" ? cached : 0,
  };
}

/** The `usage` of a JSON answer's text; null when it has none, or is cut short or not JSON. */
export function usageInJson(text: string): TokenUsage | null {
  try {
    return usageFrom(JSON.parse(text));
  } catch {
    return null;
  }
}

/** What a relayed body's end means for the request. */
export const relayOutcome: Record<RelayEnd, StreamEnd["outcome"]> = {
  done: "ok",
  client_disconnect: "client_disconnect",
  upstream_failed: "backend_error",
};

/** The event a client gets when the backend failed mid-stream. */
function streamFailed(error: unknown): string {
  const body = {
    error: {
      message: `The backend failed mid-stream: ${String(error)}`,
      type: "server_error",
      param: null,
      code: "backend_stream_failed",
    },
  };
  return `data: ${JSON.stringify(body)}\n\n`;
}

/**
 * Passes a backend's SSE stream to the client event by event (each event is sent as soon
 * as its blank line arrives; nothing waits for more), reads the usage on the way, and calls
 * `onEnd` once however the stream ends: finished, cut by the backend, or cancelled by the
 * client (which also cancels the backend call). The client sees usage as it asked for it
 * (`wanted`), as OpenAI would send it: the gateway always asks the backend for the usage in
 * every chunk and for the usage-only chunk, to meter. A backend failure mid-stream ends the
 * client's stream with an OpenAI-shaped error event. A stream in which the backend itself
 * sent an error event failed too, however cleanly it ends after (usage chunk, `[DONE]`): it
 * is reported as `backend_error`, not `ok`.
 *
 * @example return new Response(meterSse(upstream.body, wanted, (end) => record(end), request.signal), { headers })
 */
export function meterSse(
  upstream: ReadableStream<Uint8Array>,
  wanted: UsageWanted,
  onEnd: (end: StreamEnd) => void,
  clientGone: AbortSignal,
): ReadableStream<Uint8Array> {
  let pending = "";
  let usage: TokenUsage | null = null;
  let backendFailed = false;

  /** Complete events in `pending`, in order; keeps the unfinished tail. */
  const takeEvents = (): string[] => {
    const events: string[] = [];
    pending = pending.replaceAll("\r\n", "\n");
    let boundary = pending.indexOf("\n\n");
    while (boundary !== -1) {
      events.push(pending.slice(0, boundary + 2));
      pending = pending.slice(boundary + 2);
      boundary = pending.indexOf("\n\n");
    }
    return events;
  };

  /** Reads what an event says; returns what the client gets of it ("" = nothing). */
  const forward = (event: string): string => {
    const data = event
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trimStart())
      .join("\n");
    if (data === "" || data === "[DONE]") return event;
    let parsed: { choices?: unknown[]; usage?: unknown } | null = null;
    try {
      parsed = JSON.parse(data);
    } catch {
      return event;
    }
    if (isErrorEvent(parsed)) backendFailed = true;
    const eventUsage = usageFrom(parsed);
    if (eventUsage !== null) usage = eventUsage;
    if (parsed === null || !("usage" in parsed) || wanted.continuous) return event;
    const hasChoices = Array.isArray(parsed.choices) && parsed.choices.length > 0;
    // the usage-only chunk: only for a client that asked for it
    if (!hasChoices && eventUsage !== null) return wanted.final ? event : "";
    const { usage: _, ...withoutUsage } = parsed;
    const shown = wanted.final ? { ...withoutUsage, usage: null } : withoutUsage;
    return `data: ${JSON.stringify(shown)}\n\n`;
  };

  return relayText(
    upstream,
    {
      pass(text) {
        pending += text;
        return takeEvents().map(forward).join("");
      },
      flush: () => pending,
      failed: streamFailed,
    },
    (how) => {
      const outcome = relayOutcome[how];
      onEnd({ outcome: outcome === "ok" && backendFailed ? "backend_error" : outcome, usage });
    },
    clientGone,
  );
}
