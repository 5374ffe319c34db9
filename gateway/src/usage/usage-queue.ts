import type { Env } from "../env.ts";
import { recordUsage, type UsageMessage, usageInsert } from "./record.ts";

/** Rows per D1 batch in the consumer: each chunk is one transaction, acked once it committed. */
export const usageWriteChunk = 50;

/**
 * Sends a request's usage row to the usage Queue: the request path never waits on D1. When
 * the Queue refuses the message, the row is written to D1 directly instead, so none is lost.
 */
export async function enqueueUsage(env: Env, message: UsageMessage): Promise<void> {
  try {
    await env.USAGE.send(message, { contentType: "json" });
  } catch (error) {
    console.warn(
      JSON.stringify({ level: "warn", event: "usage_queue_error", message: String(error) }),
    );
    await recordUsage(env.DB, message.record, message.createdAt);
  }
}

/**
 * The usage Queue's consumer: writes the rows in D1 batches of `chunk` (one transaction
 * each) and acks a chunk's messages once it committed; a chunk that fails is retried (its
 * messages redelivered later), the chunks before it stay acked. Exactly once by request:
 * every row is an `INSERT OR IGNORE` keyed by the gateway's request key, so a message
 * delivered twice, or a batch redelivered whole after a consumer died between its commit
 * and its acks, writes nothing the second time.
 */
export async function writeUsageBatch(
  db: D1Database,
  batch: MessageBatch<UsageMessage>,
  chunk = usageWriteChunk,
): Promise<void> {
  const messages = batch.messages;
  for (let start = 0; start < messages.length; start += chunk) {
    const part = messages.slice(start, start + chunk);
    try {
      await db.batch(part.map((m) => usageInsert(db, m.body.record, m.body.createdAt)));
    } catch (error) {
      console.warn(
        JSON.stringify({
          level: "warn",
          event: "usage_write_retry",
          messages: messages.length - start,
          message: String(error),
        }),
      );
      for (const m of messages.slice(start)) m.retry();
      return;
    }
    for (const m of part) m.ack();
  }
}
