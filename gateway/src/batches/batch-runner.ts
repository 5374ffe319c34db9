import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";
import { createFile, fileObjectKey } from "../files/file-store.ts";
import { newId } from "../ids.ts";
import type { ModelTarget } from "../openai/resolve-model.ts";
import { backendBody } from "../proxy/backend-body.ts";
import { forwardWithFailover } from "../proxy/forward.ts";
import { usageFrom } from "../proxy/metered-stream.ts";
import { BackendDirectory } from "../routing/backend-directory.ts";
import { rankBackends } from "../routing/rendezvous.ts";
import { recordUsage } from "../usage/record.ts";
import { type BatchEndpoint, type BatchLine, parseBatchInput } from "./batch-input.ts";

/** Everything the runner needs, fixed when the batch is created. */
export type BatchJob = {
  batchId: string;
  tenantId: string;
  keyId: string;
  /** Origin for signed adapter URLs. */
  origin: string;
  endpoint: BatchEndpoint;
  inputFileId: string;
  /** Resolved at creation, so a batch runs against the adapters that existed then. */
  targets: Record<string, ModelTarget>;
};

/** Requests of one batch in flight at once. */
const concurrency = 8;

type LineResult = { ok: boolean; line: string };

/**
 * One instance per batch runs it from an alarm: lines go to the backends
 * `concurrency` at a time through the same routing and failover as
 * interactive requests; each finished line's result is kept in storage, so an
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
    for (let start = 0; start < lines.length; start += concurrency) {
      const status = await this.env.DB.prepare("SELECT status FROM batches WHERE id = ?")
        .bind(job.batchId)
        .first<{ status: string }>();
      if (status?.status === "cancelling") return this.#finish(job, "cancelled");
      const group = lines
        .slice(start, start + concurrency)
        .map((line, offset) => ({ line, index: start + offset }));
      const done = await this.ctx.storage.get<LineResult>(group.map((g) => resultKey(g.index)));
      const results = await Promise.all(
        group
          .filter((g) => !done.has(resultKey(g.index)))
          .map(async (g) => [resultKey(g.index), await this.#run(job, g.line, g.index)] as const),
      );
      await this.ctx.storage.put(Object.fromEntries(results));
      await this.#recordProgress(job);
    }
    await this.#finish(job, "completed");
  }

  async #run(job: BatchJob, line: BatchLine, index: number): Promise<LineResult> {
    const requestId = `${job.batchId}-${index}`;
    const target = job.targets[line.body.model];
    const fail = (
      code: string,
      message: string,
      status: number | null = null,
      body: unknown = null,
    ): LineResult => ({
      ok: false,
      line: JSON.stringify({
        id: `batch_req_${requestId}`,
        custom_id: line.customId,
        response: status === null ? null : { status_code: status, request_id: requestId, body },
        error: { code, message },
      }),
    });
    if (target === undefined)
      return fail("model_not_found", `The model \`${line.body.model}\` does not exist`);
    const started = Date.now();
    const ranked = rankBackends(
      target.adapter?.id ?? target.baseModel,
      await this.#backends.candidates(this.env, target.baseModel),
    );
    const body = await backendBody(
      this.env,
      { origin: job.origin, tenantId: job.tenantId, requestId, now: started },
      { ...line.body, stream: false },
      target,
    );
    const forwarded = await forwardWithFailover(
      this.env,
      this.#backends,
      ranked,
      job.endpoint,
      JSON.stringify(body),
      requestId,
      Date.now,
    );
    const usageBase = {
      requestId,
      tenantId: job.tenantId,
      keyId: job.keyId,
      endpoint: job.endpoint,
      model: line.body.model,
      adapterId: target.adapter?.id ?? null,
    };
    if (forwarded === null) {
      await recordUsage(
        this.env.DB,
        {
          ...usageBase,
          backendId: null,
          promptTokens: 0,
          completionTokens: 0,
          status: 503,
          outcome: "backend_error",
          latencyMs: Date.now() - started,
        },
        Date.now(),
      );
      return fail("no_backend_available", `No backend for ${target.baseModel} answered`);
    }
    const text = await forwarded.response.text();
    this.#backends.end(forwarded.backend.id);
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    const usage = usageFrom(parsed) ?? { promptTokens: 0, completionTokens: 0 };
    const status = forwarded.response.status;
    await recordUsage(
      this.env.DB,
      {
        ...usageBase,
        backendId: forwarded.backend.id,
        ...usage,
        status,
        outcome: forwarded.response.ok ? "ok" : "invalid",
        latencyMs: Date.now() - started,
      },
      Date.now(),
    );
    if (!forwarded.response.ok)
      return fail("backend_error", `The backend answered ${status}`, status, parsed);
    return {
      ok: true,
      line: JSON.stringify({
        id: `batch_req_${requestId}`,
        custom_id: line.customId,
        response: { status_code: status, request_id: requestId, body: parsed },
        error: null,
      }),
    };
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

function resultKey(index: number): string {
  return `result:${String(index).padStart(6, "0")}`;
}
