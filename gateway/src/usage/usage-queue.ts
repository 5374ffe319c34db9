import type { Env } from "../env.ts";
import { retryD1 } from "../storage/d1-retry.ts";
import { type UsageRow, usageInsertMany } from "./record.ts";

/** One Queue message: the rows of requests that ended in one isolate within `usageLingerMs`. */
export type UsageMessage = { rows: UsageRow[] };

/** How long an isolate gathers rows into one message: a message, not a row, is what a Queue counts and bills. */
export const usageLingerMs = 50;
/** Rows per message at most (a row is ~350 bytes of JSON; a message may hold 128 KB). */
export const maxRowsPerMessage = 100;
/**
 * Rows per D1 statement in the consumer (usageInsertMany): each chunk is one transaction,
 * acked once it committed. ~150 bytes of JSON a row keeps a chunk's parameter far under
 * D1's 2 MB for a value.
 */
export const usageWriteChunk = 1000;

type OpenMessage = { rows: UsageRow[]; sent: Promise<void> };

/**
 * Sends usage rows to the usage Queue, off the request path: the rows of requests that end
 * within `usageLingerMs` of each other in this isolate go as one message. `add` answers when
 * the row's message was sent; the request hands that to `waitUntil`, so the isolate keeps it
 * until then and no row is lost with an isolate. When the Queue refuses the message its rows
 * are written to D1 directly instead.
 */
export class UsageSender {
  #open: OpenMessage | null = null;
  readonly #lingerMs: number;

  constructor(lingerMs = usageLingerMs) {
    this.#lingerMs = lingerMs;
  }

  add(env: Env, row: UsageRow): Promise<void> {
    let open = this.#open;
    if (open === null) {
      const rows: UsageRow[] = [];
      const message: OpenMessage = {
        rows,
        sent: new Promise((resolve) => setTimeout(resolve, this.#lingerMs)).then(() => {
          if (this.#open === message) this.#open = null;
          return sendRows(env, rows);
        }),
      };
      this.#open = message;
      open = message;
    }
    open.rows.push(row);
    // a full message takes no more rows; it is still sent when its time is up
    if (open.rows.length >= maxRowsPerMessage) this.#open = null;
    return open.sent;
  }
}

async function sendRows(env: Env, rows: UsageRow[]): Promise<void> {
  try {
    await env.USAGE.send({ rows }, { contentType: "json" });
  } catch (error) {
    console.warn(
      JSON.stringify({ level: "warn", event: "usage_queue_error", message: String(error) }),
    );
    await retryD1(() => usageInsertMany(env.DB, rows).run());
  }
}

/**
 * The usage Queue's consumer: writes the rows of its messages in D1 batches of about
 * `chunk` rows (whole messages, one transaction each) and acks a chunk's messages once it
 * committed; a chunk that fails is retried (its messages redelivered later), the chunks
 * before it stay acked. Exactly once by request: every row is an `INSERT OR IGNORE` keyed by
 * the gateway's request key, so a message delivered twice, or a batch redelivered whole
 * after a consumer died between its commit and its acks, writes nothing the second time.
 */
export async function writeUsageBatch(
  db: D1Database,
  batch: MessageBatch<UsageMessage>,
  chunk = usageWriteChunk,
): Promise<void> {
  const messages = batch.messages;
  for (let start = 0; start < messages.length; ) {
    let end = start + 1;
    let rows = messages[start]?.body.rows.length ?? 0;
    while (end < messages.length && rows + (messages[end]?.body.rows.length ?? 0) <= chunk) {
      rows += messages[end]?.body.rows.length ?? 0;
      end += 1;
    }
    const part = messages.slice(start, end);
    try {
      await usageInsertMany(
        db,
        part.flatMap((m) => m.body.rows),
      ).run();
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
    start = end;
  }
}
