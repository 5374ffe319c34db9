// /health (the process answers; `load` = unfinished requests, which the gateway's
// health check reads), /ready (the executor is up: 503 until then and while it
// restarts), /metrics (Prometheus text).
import type { Context } from "hono";
import type { AppContext } from "./app-context.ts";

export function health(app: AppContext) {
  return function healthHandler(c: Context) {
    return c.json({ status: "ok", load: app.serving.unfinished, model: app.servedModelName });
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
