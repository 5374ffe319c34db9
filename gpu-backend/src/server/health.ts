// /health (the process answers; `load` = unfinished requests, which the gateway's
// health check reads; 503 "draining" after SIGTERM), /ready (the executor is up: 503
// until then, while it restarts and while draining): both open to anyone, for load
// balancers. /metrics (Prometheus text): behind the backend secret when one is set.
import type { Context } from "hono";
import type { AppContext } from "./app-context.ts";

export function health(app: AppContext) {
  return function healthHandler(c: Context) {
    // Draining answers 503: the gateway's health check (GET /health) then routes around it.
    const draining = app.serving.draining;
    return c.json(
      {
        status: draining ? "draining" : "ok",
        load: app.serving.unfinished,
        model: app.servedModelName,
      },
      draining ? 503 : 200,
    );
  };
}

export function ready(app: AppContext) {
  return function readyHandler(c: Context) {
    const isReady = app.ready() && app.serving.available;
    return c.json({ ready: isReady }, isReady ? 200 : 503);
  };
}

export function metrics(app: AppContext) {
  return async function metricsHandler(c: Context) {
    c.header("content-type", app.metrics.registry.contentType);
    return c.body(await app.metrics.registry.metrics());
  };
}
