import { type Context, Hono } from "hono";
import { AdapterResolver } from "./adapters/adapter-resolver.ts";
import { adapterRoutes } from "./adapters/adapter-routes.ts";
import { internalRoutes } from "./adapters/internal-routes.ts";
import { multipartUploadRoutes } from "./adapters/multipart-upload.ts";
import { backendRoutes } from "./admin/backends.ts";
import { baseModelRoutes } from "./admin/base-models.ts";
import { keyRoutes } from "./admin/keys.ts";
import { tenantRoutes } from "./admin/tenants.ts";
import { usageAdminRoutes } from "./admin/usage.ts";
import { KeyResolver } from "./auth/key-resolver.ts";
import { adminAuth } from "./auth/middleware.ts";
import { selfServiceKeyRoutes } from "./auth/self-service-keys.ts";
import { batchRoutes } from "./batches/batch-routes.ts";
import type { AppEnv } from "./env.ts";
import { ApiError } from "./errors.ts";
import { fileRoutes } from "./files/file-routes.ts";
import { SliceLimiter } from "./limits/slice-limiter.ts";
import { requestContext } from "./middleware/request-context.ts";
import { requireSecrets } from "./middleware/require-secrets.ts";
import { accountRoutes } from "./openai/account-routes.ts";
import { inferenceRoutes } from "./openai/inference-routes.ts";
import { ModelResolver } from "./openai/resolve-model.ts";
import { BackendDirectory } from "./routing/backend-directory.ts";
import { isTransientD1Error, storageUnavailable } from "./storage/d1-retry.ts";
import { UsageSender } from "./usage/usage-queue.ts";

/** The per-isolate state the app keeps between requests; tests build their own. */
export type GatewayState = {
  keys: KeyResolver;
  adapters: AdapterResolver;
  models: ModelResolver;
  backends: BackendDirectory;
  /** This isolate's slices of tenants' per-minute limits. */
  slices: SliceLimiter;
  /** Gathers this isolate's usage rows into Queue messages. */
  usage: UsageSender;
  now: () => number;
};

export function createGatewayState(now: () => number = Date.now): GatewayState {
  const adapters = new AdapterResolver(now);
  return {
    keys: new KeyResolver(now),
    adapters,
    models: new ModelResolver(adapters, now),
    backends: new BackendDirectory(now),
    slices: new SliceLimiter(now),
    usage: new UsageSender(),
    now,
  };
}

/**
 * The gateway's HTTP surface.
 *
 * @example export default { fetch: createApp(createGatewayState()).fetch };
 */
export function createApp(state: GatewayState) {
  const app = new Hono<AppEnv>();
  app.use(requestContext(state.now));

  const admin = new Hono<AppEnv>();
  admin.use(adminAuth());
  admin.route("/tenants", tenantRoutes(state.keys));
  admin.route("/", keyRoutes(state.keys, state.now));
  admin.route("/base-models", baseModelRoutes(state.models));
  admin.route("/backends", backendRoutes(state.backends));
  admin.route("/usage", usageAdminRoutes());
  app.route("/admin", admin);

  app.use("/v1/*", requireSecrets());
  app.use("/internal/*", requireSecrets());
  app.route("/v1", inferenceRoutes(state));
  app.route("/v1", accountRoutes(state));
  app.route("/v1/adapters/uploads", multipartUploadRoutes(state.keys, state.now));
  app.route("/v1/adapters", adapterRoutes(state.keys, state.adapters, state.now));
  app.route("/v1/keys", selfServiceKeyRoutes(state.keys, state.now));
  app.route("/v1/files", fileRoutes(state.keys, state.now));
  app.route("/v1/batches", batchRoutes(state));
  app.route("/internal", internalRoutes(state.now));

  app.get("/healthz", (c) => c.json({ ok: true }));

  app.notFound(() => {
    throw new ApiError(404, "not_found", "No such route");
  });
  app.onError(renderError);
  return app;
}

/**
 * Every error as the client sees it: an ApiError as it says, a D1 outage as a 503
 * `storage_unavailable`, anything else as a 500 that tells nothing of the gateway's insides.
 */
export function renderError(error: Error, c: Context<AppEnv>): Response {
  if (error instanceof ApiError) {
    for (const [name, value] of Object.entries(error.headers)) c.header(name, value);
    return c.json(error.body(), error.status);
  }
  if (isTransientD1Error(error)) {
    const unavailable = storageUnavailable();
    for (const [name, value] of Object.entries(unavailable.headers)) c.header(name, value);
    return c.json(unavailable.body(), unavailable.status);
  }
  console.error(
    JSON.stringify({ level: "error", requestId: c.get("requestId"), message: String(error) }),
  );
  return c.json(
    new ApiError(500, "internal_error", "The gateway failed on this request").body(),
    500,
  );
}
