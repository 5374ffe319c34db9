import { ApiError } from "../errors.ts";

/**
 * D1's own transient failures: the messages Cloudflare's D1 guide names as safe to retry
 * (https://developers.cloudflare.com/d1/best-practices/retry-queries), and an overloaded
 * database. Anything else (SQL errors, constraint violations) is a bug or a real refusal.
 */
const transientMessages = [
  "Network connection lost",
  "storage caused object to be reset",
  "reset because its code was updated",
  "D1 DB is overloaded",
];

export function isTransientD1Error(error: unknown): boolean {
  const text = String(error);
  return transientMessages.some((m) => text.includes(m));
}

/** The answer when D1 stays unavailable: retriable, in OpenAI's shape. */
export function storageUnavailable(): ApiError {
  return new ApiError(
    503,
    "storage_unavailable",
    "The gateway's database is briefly unavailable; retry the request",
    { headers: { "retry-after": "1" } },
  );
}

/** Delays before the 2nd and 3rd attempt: a blip passes, a client is not kept waiting. */
const backoffMs = [25, 100];

/**
 * Runs an idempotent D1 operation (a read, or a write keyed so a repeat is a no-op),
 * retrying transient failures; when they persist, throws storage_unavailable (503).
 *
 * @example const row = await retryD1(() => env.DB.prepare(sql).bind(id).first());
 */
export async function retryD1<T>(operation: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (!isTransientD1Error(error)) throw error;
      const delay = backoffMs[attempt];
      if (delay === undefined) throw storageUnavailable();
      await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
    }
  }
}
