// /health (the process answers; `load` = unfinished requests, which the gateway's
// health check reads), /ready (requests are served now): both open to anyone, for load
// balancers. /metrics (Prometheus text): behind the backend secret when one is set.
//
//   phase       /health                   /ready
//   serving     200 {status: "ok"}        200
//   restarting  200 {status: "restarting"} 503   (the executor comes back: keep routing)
//   failed      503 {status: "failed"}    503   (its supervisor gave up: route around)
//   draining    503 {status: "draining"}  503   (SIGTERM: route around)
import type { Context } from "hono";
import type { Phase } from "../serving/admission.ts";
import type { AppContext } from "./app-context.ts";

const STATUS: Record<Phase, string> = {
  serving: "ok",
  restarting: "restarting",
  failed: "failed",
  draining: "draining",
};

export function health(app: AppContext) {
  return function healthHandler(c: Context) {
    const phase = app.serving.phase;
    // A 503 makes the gateway's health check (GET /health) route around this backend.
    const healthy = phase === "serving" || phase === "restarting";
    return c.json(
      { status: STATUS[phase], load: app.serving.unfinished, model: app.servedModelName },
      healthy ? 200 : 503,
    );
  };
}

export function ready(app: AppContext) {
  return function readyHandler(c: Context) {
    const isReady = app.serving.phase === "serving";
    return c.json({ ready: isReady }, isReady ? 200 : 503);
  };
}

export function metrics(app: AppContext) {
  return async function metricsHandler(c: Context) {
    c.header("content-type", app.metrics.registry.contentType);
    return c.body(await app.metrics.registry.metrics());
  };
}
