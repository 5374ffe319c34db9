import { SELF } from "cloudflare:test";
import { ChatCompletionRequestSchema } from "@lorafleet/api";
import { beforeAll, describe, expect, it } from "vitest";
import { defaultTokenBounds, estimateTokens } from "../src/limits/estimate-tokens.ts";
import {
  adapterFiles,
  type BaseModelSpec,
  call,
  createTenant,
  defined,
  eventually,
  origin,
  peerRequests,
  registerBaseModel,
  registerPeerBackend,
  saltOf,
  setPeerMode,
  type Tenant,
  tinyModel,
  upload,
  uploadForm,
  usageRows,
} from "./helpers/gateway-client.ts";
import { buildAdapter } from "./helpers/safetensors-builder.ts";

type BatchCall = {
  requests: {
    id: string;
    tenant: string;
    cache_salt: string;
    adapter: { name: string } | null;
    body: { stream: boolean };
  }[];
};

type Batch = {
  id: string;
  status: string;
  output_file_id: string | null;
  error_file_id: string | null;
  request_counts: { total: number; completed: number; failed: number };
};

function uploadFile(key: string, jsonl: string, purpose = "batch") {
  const form = new FormData();
  form.set("purpose", purpose);
  form.set("file", new File([jsonl], "input.jsonl"));
  return SELF.fetch(`${origin}/v1/files`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}` },
    body: form,
  });
}

function line(customId: string, model: string, maxTokens: number, url = "/v1/chat/completions") {
  return JSON.stringify({
    custom_id: customId,
    method: "POST",
    url,
    body: {
      model,
      messages: [{ role: "user", content: `question ${customId}` }],
      max_tokens: maxTokens,
    },
  });
}

async function createBatch(key: string, jsonl: string): Promise<Batch> {
  const file = (await (await uploadFile(key, jsonl)).json()) as { id: string };
  const res = await call(key, "POST", "/v1/batches", {
    input_file_id: file.id,
    endpoint: "/v1/chat/completions",
    completion_window: "24h",
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Batch;
}

async function settled(key: string, id: string, timeoutMs = 20_000): Promise<Batch> {
  return eventually(async () => {
    const batch = (await (await call(key, "GET", `/v1/batches/${id}`)).json()) as Batch;
    expect(["completed", "cancelled", "failed"]).toContain(batch.status);
    return batch;
  }, timeoutMs);
}

describe("Files and Batches", () => {
  let model: BaseModelSpec;
  let tenant: Tenant;
  let backend: string;
  beforeAll(async () => {
    model = await registerBaseModel(tinyModel());
    backend = await registerPeerBackend(model.name);
    tenant = await createTenant();
    expect(
      (await upload(tenant.key, uploadForm("batcher", adapterFiles(buildAdapter(model))))).status,
    ).toBe(201);
  });

  it("runs a 50-line batch over the base model and an adapter, with results in order and usage per line", async () => {
    const lines = Array.from({ length: 50 }, (_, i) =>
      line(`req-${i}`, i % 2 === 0 ? model.name : "batcher", 1 + (i % 4)),
    );
    const batch = await createBatch(tenant.key, lines.join("\n"));
    expect(batch).toMatchObject({
      status: "in_progress",
      request_counts: { total: 50, completed: 0, failed: 0 },
    });
    const done = await settled(tenant.key, batch.id);
    expect(done).toMatchObject({
      status: "completed",
      request_counts: { total: 50, completed: 50, failed: 0 },
      error_file_id: null,
    });

    const output = await (
      await call(tenant.key, "GET", `/v1/files/${done.output_file_id}/content`)
    ).text();
    const results = output
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(results.map((r) => r.custom_id)).toEqual(lines.map((_, i) => `req-${i}`));
    for (const [i, r] of results.entries()) {
      expect(r.error).toBeNull();
      expect(r.response.status_code).toBe(200);
      expect(r.response.body.usage.completion_tokens).toBe(1 + (i % 4));
    }
    // Lines reach the backend as internal batch calls of at most 32 requests, not one by one.
    const calls = (await peerRequests(backend)).filter((r) => r.path === "/internal/batch");
    const items = calls.flatMap((c) => (c.body as unknown as BatchCall).requests);
    expect(calls.length).toBeGreaterThanOrEqual(2);
    expect(calls.length).toBeLessThanOrEqual(4);
    expect(items.filter((i) => i.id.startsWith(batch.id))).toHaveLength(50);
    expect(items.filter((i) => i.adapter?.name === "batcher")).toHaveLength(25);
    expect(items.every((i) => i.tenant === tenant.id && i.body.stream === false)).toBe(true);
    // the prefix cache's salt of the key that created the batch, as for its other requests
    const salt = await saltOf(tenant, tenant.key);
    expect(items.every((i) => i.cache_salt === salt)).toBe(true);
    const rows = (await usageRows(tenant.id)).filter((r) => r.request_id.startsWith(batch.id));
    expect(rows).toHaveLength(50);
    type Usage = { completion_tokens: number; prompt_tokens_details: { cached_tokens: number } };
    const sum = (count: (usage: Usage) => number) =>
      results.reduce((s, r) => s + count(r.response.body.usage), 0);
    expect(rows.reduce((s, r) => s + r.completion_tokens, 0)).toBe(sum((u) => u.completion_tokens));
    // lines of one model share the word "question": the peer's cache finds it
    const cached = sum((u) => u.prompt_tokens_details.cached_tokens);
    expect(cached).toBeGreaterThan(0);
    expect(rows.reduce((s, r) => s + r.cached_tokens, 0)).toBe(cached);
  });

  it("puts failed lines in the error file", async () => {
    const { model: failing, backends } = {
      model: await registerBaseModel(tinyModel()),
      backends: [] as string[],
    };
    backends.push(await registerPeerBackend(failing.name));
    await setPeerMode(defined(backends[0]), { mode: "error" });
    const batch = await createBatch(
      tenant.key,
      [line("a", model.name, 1), line("b", failing.name, 1)].join("\n"),
    );
    const done = await settled(tenant.key, batch.id);
    expect(done).toMatchObject({
      status: "completed",
      request_counts: { completed: 1, failed: 1 },
    });
    const errors = await (
      await call(tenant.key, "GET", `/v1/files/${done.error_file_id}/content`)
    ).text();
    expect(JSON.parse(errors.trim())).toMatchObject({
      custom_id: "b",
      response: null,
      error: { code: "no_backend_available" },
    });
  });

  it("holds batch lines to the monthly token quota", async () => {
    const lines = Array.from({ length: 10 }, (_, i) => line(`m-${i}`, model.name, 1));
    const perLine = estimateTokens(
      ChatCompletionRequestSchema.parse(JSON.parse(defined(lines[0])).body),
      { ...defaultTokenBounds, contextLength: model.max_position_embeddings },
    ).total;
    const capped = await createTenant({ monthly_token_quota: 5 * perLine });
    const batch = await createBatch(capped.key, lines.join("\n"));
    const done = await settled(capped.key, batch.id);
    expect(done.request_counts).toEqual({ total: 10, completed: 5, failed: 5 });
    const errors = await (
      await call(capped.key, "GET", `/v1/files/${done.error_file_id}/content`)
    ).text();
    for (const row of errors.trim().split("\n")) {
      expect(JSON.parse(row).error.code).toBe("monthly_token_quota");
    }
  });

  it("cancels a running batch, keeping what finished", async () => {
    const slowModel = await registerBaseModel(tinyModel());
    const slow = await registerPeerBackend(slowModel.name);
    await setPeerMode(slow, { mode: "slow", delayMs: 300 }); // 4 calls of <= 32: >= 1.2 s
    const lines = Array.from({ length: 100 }, (_, i) => line(`c-${i}`, slowModel.name, 1));
    const batch = await createBatch(tenant.key, lines.join("\n"));
    const cancel = await call(tenant.key, "POST", `/v1/batches/${batch.id}/cancel`);
    expect(cancel.status).toBe(200);
    expect(((await cancel.json()) as Batch).status).toBe("cancelling");
    const done = await settled(tenant.key, batch.id);
    expect(done.status).toBe("cancelled");
    expect(done.request_counts.completed).toBeLessThan(100);
    expect((await call(tenant.key, "POST", `/v1/batches/${batch.id}/cancel`)).status).toBe(409);
  });

  it("refuses bad input files with the line number, and unknown models, before running anything", async () => {
    const good = line("g", model.name, 1);
    /** A line whose body is the good one's with `body` merged in. */
    const withBody = (id: string, body: object) => {
      const parsed = JSON.parse(line(id, model.name, 1));
      return JSON.stringify({ ...parsed, body: { ...parsed.body, ...body } });
    };
    const cases: [string, string][] = [
      ["{not json", "Line 1 of the input file: not valid JSON"],
      [`${line("x", model.name, 1)}\n${line("x", model.name, 1)}`, "Line 2"],
      [
        line("x", model.name, 1, "/v1/completions"),
        "Line 1 of the input file: url: must be the batch's endpoint /v1/chat/completions",
      ],
      ["\n\n", "no requests"],
      // Bodies the backend would refuse are refused now, naming the line and the field,
      // in the backend's words, instead of failing later line by line.
      [
        `${good}\n${withBody("y", { messages: [{ role: "wizard", content: "hi" }] })}`,
        "Line 2 of the input file: body.messages[0].role: Invalid option",
      ],
      [
        withBody("t", { tools: [{ type: "function", function: { name: "a b" } }] }),
        "Line 1 of the input file: body.tools[0].function.name:",
      ],
      [
        withBody("s", { stream: true }),
        "Line 1 of the input file: body.stream: streaming is not available in batches",
      ],
      [withBody("m", { model: "" }), "Line 1 of the input file: body.model: Too small"],
      // issue #20's case: accepted at creation before, then failed line by line
      [
        `${good}\n${good.replace('"g"', '"g2"')}\n${withBody("n", { max_tokens: -5, n: 1000 })}`,
        "Line 3 of the input file: body.n: Too big",
      ],
    ];
    for (const [jsonl, message] of cases) {
      const file = (await (await uploadFile(tenant.key, jsonl)).json()) as { id: string };
      const res = await call(tenant.key, "POST", "/v1/batches", {
        input_file_id: file.id,
        endpoint: "/v1/chat/completions",
        completion_window: "24h",
      });
      expect(res.status).toBe(400);
      const { error } = (await res.json()) as { error: { message: string; code: string } };
      expect(error.message).toContain(message);
      expect(error.code).toBe("invalid_batch_input");
    }
    const unknown = (await (await uploadFile(tenant.key, line("x", "nope", 1))).json()) as {
      id: string;
    };
    const res = await call(tenant.key, "POST", "/v1/batches", {
      input_file_id: unknown.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
    });
    expect(res.status).toBe(404);
    expect((await uploadFile(tenant.key, "x", "fine-tune")).status).toBe(400);
  });

  it("keeps files and batches to their tenant", async () => {
    const other = await createTenant();
    const batch = await createBatch(tenant.key, line("iso", model.name, 1));
    const done = await settled(tenant.key, batch.id);
    const file = (await (await uploadFile(tenant.key, line("iso2", model.name, 1))).json()) as {
      id: string;
    };
    for (const [method, path] of [
      ["GET", `/v1/batches/${batch.id}`],
      ["POST", `/v1/batches/${batch.id}/cancel`],
      ["GET", `/v1/files/${file.id}`],
      ["GET", `/v1/files/${file.id}/content`],
      ["GET", `/v1/files/${done.output_file_id}/content`],
      ["DELETE", `/v1/files/${file.id}`],
    ] as const) {
      expect((await call(other.key, method, path)).status).toBe(404);
    }
    const usingTheirFile = await call(other.key, "POST", "/v1/batches", {
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
    });
    expect(usingTheirFile.status).toBe(404);
    const listed = (await (await call(other.key, "GET", "/v1/batches")).json()) as {
      data: unknown[];
    };
    expect(listed.data).toEqual([]);
    expect((await call(tenant.key, "DELETE", `/v1/files/${file.id}`)).status).toBe(200);
  });
});
