// The backend's Hono app: routes, auth, request logs and one onError that renders every
// error in OpenAI's shape. Built from an AppContext so tests can serve it on any port.
import { Hono } from "hono";
import type { AppContext } from "./app-context.ts";
import { requireSecret } from "./auth.ts";
import { chatCompletions } from "./chat-completions.ts";
import { completions } from "./completions.ts";
import { health, metrics, ready } from "./health.ts";
import { internalBatch } from "./internal-batch.ts";
import { loadLoraAdapter, unloadLoraAdapter } from "./lora-adapters.ts";
import { listModels } from "./models.ts";
import { ApiError, toApiError } from "./openai-error.ts";

export function createApp(app: AppContext): Hono {
  const hono = new Hono();
  hono.use("*", async function logRequest(c, next) {
    const started = performance.now();
    await next();
    app.logger.info(
      {
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: Math.round(performance.now() - started),
        requestId: c.req.header("x-request-id"),
      },
      "request",
    );
  });
  hono.use("/v1/*", requireSecret(app.backendSecret, { optional: true }));
  hono.use("/internal/*", requireSecret(app.backendSecret, { optional: false }));
  // /health and /ready answer anyone (load balancers probe them; they tell only up, load
  // and model); /metrics tells how the backend is used: with a secret set, it needs it.
  hono.use("/metrics", requireSecret(app.backendSecret, { optional: true }));

  hono.get("/health", health(app));
  hono.get("/ready", ready(app));
  hono.get("/metrics", metrics(app));
  hono.get("/v1/models", listModels(app));
  hono.post("/v1/chat/completions", chatCompletions(app));
  hono.post("/v1/completions", completions(app));
  hono.post("/v1/load_lora_adapter", loadLoraAdapter(app));
  hono.post("/v1/unload_lora_adapter", unloadLoraAdapter(app));
  hono.post("/internal/batch", internalBatch(app));

  hono.notFound((c) => {
    const error = new ApiError(404, `no route ${c.req.method} ${c.req.path}`, {
      code: "not_found",
    });
    return c.json(error.body, 404);
  });
  hono.onError((error, c) => {
    const apiError = toApiError(error);
    if (apiError.status >= 500)
      app.logger.error({ err: error, path: c.req.path }, "request failed");
    for (const [name, value] of Object.entries(apiError.headers)) c.header(name, value);
    return c.json(apiError.body, apiError.status);
  });
  return hono;
}
