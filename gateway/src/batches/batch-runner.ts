import { DurableObject } from "cloudflare:workers";
import type { InferenceEndpoint, InternalBatchRequestSchema } from "@lorafleet/api";
import type { z } from "zod";
import type { Env } from "../env.ts";
import { createFile, fileObjectKey } from "../files/file-store.ts";
import { newId } from "../ids.ts";
import { estimateTokens } from "../limits/estimate-tokens.ts";
import type { ModelTarget } from "../openai/resolve-model.ts";
import { adapterField } from "../proxy/backend-body.ts";
import { forwardWithFailover } from "../proxy/forward.ts";
import { noTokens, usageFrom } from "../proxy/metered-stream.ts";
import { type Backend, BackendDirectory } from "../routing/backend-directory.ts";
import { rankBackends } from "../routing/rendezvous.ts";
import { recordUsage } from "../usage/record.ts";
import { type BatchLine, parseBatchInput } from "./batch-input.ts";
import { failure, type Item, type LineResult, resultKey, success } from "./batch-output.ts";

/** Everything the runner needs, fixed when the batch is created. */
export type BatchJob = {
  batchId: string;
  tenantId: string;
  keyId: string;
  /** The prefix cache's salt of the batch's key (proxy/cache-salt.ts), fixed at creation. */
  cacheSalt: string;
  /** Origin for signed adapter URLs. */
  origin: string;
  endpoint: InferenceEndpoint;
  inputFileId: string;
  /** The tenant's monthly token quota when the batch was created; per-minute limits don't apply to batches. */
  monthlyTokenQuota: number | null;
  /** Resolved at creation, so a batch runs against the adapters that existed then. */
  targets: Record<string, ModelTarget>;
};

/** Lines sent to the backends at once (one internal batch call per backend). */
const groupSize = 32;

/**
 * One instance per batch runs it from an alarm: lines go to the backends
 * `groupSize` at a time, through the same routing and failover as
 * interactive requests, as internal batch calls; each finished line's result is kept in storage, so an
 * alarm that is interrupted resumes where it stopped. Between groups it checks
 * for cancellation. At the end it writes the output and error files (JSONL in
 * R2, OpenAI's batch output format) and marks the batch completed or cancelled.
 */
export class BatchRunner extends DurableObject<Env> {
  readonly #backends = new BackendDirectory();

  async start(job: BatchJob): Promise<void> {
    await this.ctx.storage.put("job", job);
    await this.ctx.storage.setAlarm(Date.now());
  }

  override async alarm(): Promise<void> {
    const job = await this.ctx.storage.get<BatchJob>("job");
    if (job === undefined) return;
    const input = await this.env.FILES.get(fileObjectKey(job.inputFileId));
    if (input === null) return this.#finish(job, "failed");
    const lines = parseBatchInput(await input.text(), job.endpoint);
    for (let start = 0; start < lines.length; start += groupSize) {
      const status = await this.env.DB.prepare("SELECT status FROM batches WHERE id = ?")
        .bind(job.batchId)
        .first<{ status: string }>();
      if (status?.status === "cancelling") return this.#finish(job, "cancelled");
      const group = lines
        .slice(start, start + groupSize)
        .map((line, offset) => ({ line, index: start + offset }));
      const done = await this.ctx.storage.get<LineResult>(group.map((g) => resultKey(g.index)));
      const results = await this.#runGroup(
        job,
        group.filter((g) => !done.has(resultKey(g.index))),
      );
      await this.ctx.storage.put(Object.fromEntries(results));
      await this.#recordProgress(job);
    }
    await this.#finish(job, "completed");
  }

  /**
   * Runs one group of lines: lines are bucketed by the backend rendezvous
   * hashing prefers for their adapter, and each bucket goes to its backend as
   * one `POST /internal/batch` call (NDJSON back), with failover to the next
   * backend as for interactive requests.
   */
  async #runGroup(
    job: BatchJob,
    group: { line: BatchLine; index: number }[],
  ): Promise<[string, LineResult][]> {
    const results: [string, LineResult][] = [];
    const buckets = new Map<string, { ranked: Backend[]; items: Item[] }>();
    const now = Date.now();
    for (const { line, index } of group) {
      const item = {
        line,
        index,
        requestId: `${job.batchId}-${index}`,
        target: job.targets[line.request.model],
      };
      if (item.target === undefined) {
        results.push(
          failure(item, "model_not_found", `The model \`${line.request.model}\` does not exist`),
        );
        continue;
      }
      const candidates = await this.#backends.candidates(this.env, item.target.baseModel);
      const ranked = rankBackends(item.target.adapter?.id ?? item.requestId, candidates);
      const key = ranked[0]?.id ?? `none:${item.target.baseModel}`;
      const bucket = buckets.get(key) ?? { ranked, items: [] };
      bucket.items.push(item as Item);
      buckets.set(key, bucket);
    }
    const answered = await Promise.all(
      [...buckets.values()].map((bucket) =>
        this.#callBackend(job, bucket.ranked, bucket.items, now),
      ),
    );
    return [...results, ...answered.flat()];
  }

  /** Reserves each item's estimated tokens against the monthly quota; returns the refused items' results. */
  async #admit(
    job: BatchJob,
    items: Item[],
  ): Promise<{ admitted: Item[]; refused: [string, LineResult][] }> {
    if (job.monthlyTokenQuota === null) return { admitted: items, refused: [] };
    const limiter = this.env.LIMITER.get(this.env.LIMITER.idFromName(job.tenantId));
    const limits = {
      requestsPerMinute: null,
      tokensPerMinute: null,
      concurrentStreams: null,
      monthlyTokenQuota: job.monthlyTokenQuota,
    };
    const decisions = await Promise.all(
      items.map((item) =>
        limiter.admit({
          requestKey: item.requestId,
          estimatedTokens: estimateTokens(item.line.request, item.target.bounds).total,
          stream: false,
          limits,
        }),
      ),
    );
    const admitted = items.filter((_, i) => decisions[i]?.ok);
    const refused = items.flatMap((item, i) => {
      const decision = decisions[i];
      return decision && !decision.ok ? [failure(item, decision.code, decision.message)] : [];
    });
    return { admitted, refused };
  }

  async #callBackend(
    job: BatchJob,
    ranked: Backend[],
    bucket: Item[],
    started: number,
  ): Promise<[string, LineResult][]> {
    const { admitted: items, refused } = await this.#admit(job, bucket);
    if (items.length === 0) return refused;
    // Built per backend tried: the adapter URLs are signed for that backend.
    const requestsFor = async (backend: Backend) => {
      const requests = await Promise.all(
        items.map(async (item) => ({
          id: item.requestId,
          endpoint: job.endpoint,
          tenant: job.tenantId,
          cache_salt: job.cacheSalt,
          adapter: await adapterField(
            this.env,
            job.origin,
            item.target.adapter,
            backend.id,
            started,
          ),
          body: { ...item.line.body, stream: false },
        })),
      );
      return JSON.stringify({ requests } satisfies z.input<typeof InternalBatchRequestSchema>);
    };
    const callId = `${items[0]?.requestId ?? job.batchId}+${items.length}`;
    const forwarded = await forwardWithFailover(
      this.env,
      this.#backends,
      ranked,
      "/internal/batch",
      requestsFor,
      callId,
      Date.now,
    );
    const answers = new Map<string, { status: number; body: unknown }>();
    if (forwarded !== null) {
      const text = await forwarded.response.text();
      this.#backends.end(forwarded.backend.id);
      if (forwarded.response.ok) {
        for (const row of text.split("\n")) {
          if (row.trim() === "") continue;
          try {
            const answer = JSON.parse(row) as { id?: unknown; status?: unknown; body?: unknown };
            if (typeof answer.id === "string" && typeof answer.status === "number") {
              answers.set(answer.id, { status: answer.status, body: answer.body });
            }
          } catch {
            // A torn line names no id: its request is reported missing below.
          }
        }
      }
    }
    const answered = await Promise.all(
      items.map(async (item): Promise<[string, LineResult]> => {
        const answer = answers.get(item.requestId);
        const status =
          answer?.status ??
          (forwarded === null ? 503 : forwarded.response.ok ? 502 : forwarded.response.status);
        const usage = usageFrom(answer?.body ?? null) ?? noTokens;
        await recordUsage(
          this.env.DB,
          {
            requestKey: item.requestId,
            requestId: item.requestId,
            tenantId: job.tenantId,
            keyId: job.keyId,
            endpoint: job.endpoint,
            model: item.line.request.model,
            adapterId: item.target.adapter?.id ?? null,
            backendId: forwarded?.backend.id ?? null,
            ...usage,
            status,
            outcome: status === 200 ? "ok" : status >= 500 ? "backend_error" : "invalid",
            latencyMs: Date.now() - started,
          },
          Date.now(),
        );
        if (job.monthlyTokenQuota !== null) {
          const limiter = this.env.LIMITER.get(this.env.LIMITER.idFromName(job.tenantId));
          await limiter.settle(item.requestId, usage.promptTokens + usage.completionTokens);
        }
        if (answer?.status === 200) {
          return success(item, answer.body);
        }
        if (forwarded === null)
          return failure(
            item,
            "no_backend_available",
            `No backend for ${item.target.baseModel} answered`,
          );
        if (answer === undefined)
          return failure(
            item,
            "backend_error",
            `The backend's batch answer had no result for this request (HTTP ${forwarded.response.status})`,
          );
        return failure(item, "backend_error", `The backend answered ${answer.status}`, answer);
      }),
    );
    return [...refused, ...answered];
  }

  async #results(): Promise<LineResult[]> {
    // Keys are zero-padded, so storage order is line order.
    return [...(await this.ctx.storage.list<LineResult>({ prefix: "result:" })).values()];
  }

  async #recordProgress(job: BatchJob): Promise<void> {
    const results = await this.#results();
    const failed = results.filter((r) => !r.ok).length;
    await this.env.DB.prepare("UPDATE batches SET completed = ?, failed = ? WHERE id = ?")
      .bind(results.length - failed, failed, job.batchId)
      .run();
  }

  async #finish(job: BatchJob, status: "completed" | "cancelled" | "failed"): Promise<void> {
    const results = await this.#results();
    const write = async (ok: boolean, suffix: string) => {
      const lines = results.filter((r) => r.ok === ok).map((r) => `${r.line}\n`);
      if (lines.length === 0) return null;
      const file = await createFile(
        this.env,
        {
          id: newId("file-"),
          tenantId: job.tenantId,
          purpose: "batch_output",
          filename: `${job.batchId}_${suffix}.jsonl`,
          bytes: lines.join(""),
        },
        Date.now(),
      );
      return file.id;
    };
    const outputId = await write(true, "output");
    const errorId = await write(false, "error");
    const failed = results.filter((r) => !r.ok).length;
    await this.env.DB.prepare(
      "UPDATE batches SET status = ?, output_file_id = ?, error_file_id = ?, completed = ?, failed = ?, finished_at = ? WHERE id = ?",
    )
      .bind(status, outputId, errorId, results.length - failed, failed, Date.now(), job.batchId)
      .run();
    await this.ctx.storage.deleteAll();
  }
}
