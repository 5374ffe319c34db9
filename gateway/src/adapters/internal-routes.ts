import { Hono } from "hono";
import { authenticateBackend } from "../auth/backend-auth.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { adapterObjectKey } from "./adapter-store.ts";
import { type AdapterFile, adapterFiles, checkSignedUrl } from "./signed-url.ts";

/**
 * GET /internal/adapters/<id>/<file>?backend=…&exp=…&sig=…: a backend downloads adapter
 * files through URLs the gateway signed for it, sending its own secret; the response
 * carries the sha256 the gateway recorded at upload in `x-lorafleet-sha256` (for the
 * weights file). Neither the URL alone nor another backend's secret is enough.
 */
export function internalRoutes(now: () => number) {
  const app = new Hono<AppEnv>();
  app.get("/adapters/:id/:file", async (c) => {
    const { id, file } = c.req.param();
    const caller = await authenticateBackend(c.env, c.req.header("authorization"));
    const signedFor = c.req.query("backend");
    const refusal = await checkSignedUrl(
      c.env,
      { adapterId: id, file, backendId: signedFor },
      c.req.query("exp"),
      c.req.query("sig"),
      now(),
    );
    if (refusal === "expired")
      throw new ApiError(403, "url_expired", "This signed URL has expired");
    if (refusal !== null)
      throw new ApiError(403, "bad_signature", "This URL's signature is not valid");
    if (signedFor !== caller) {
      throw new ApiError(
        403,
        "url_for_another_backend",
        `This URL was signed for another backend than ${caller}`,
      );
    }
    if (!adapterFiles.includes(file as AdapterFile))
      throw new ApiError(404, "not_found", `No adapter file ${file}`);
    // Only ready adapters are served; the recorded sha256 comes from D1.
    const adapter = await c.env.DB.prepare(
      "SELECT weights_sha256 FROM adapters WHERE id = ? AND status = 'ready'",
    )
      .bind(id)
      .first<{ weights_sha256: string }>();
    const object = adapter === null ? null : await c.env.FILES.get(adapterObjectKey(id, file));
    if (adapter === null || object === null) {
      throw new ApiError(404, "adapter_not_found", `Adapter ${id} has no ${file}`);
    }
    const headers = new Headers({ "content-length": String(object.size), etag: object.httpEtag });
    headers.set(
      "content-type",
      file.endsWith(".json") ? "application/json" : "application/octet-stream",
    );
    if (file === "adapter_model.safetensors")
      headers.set("x-lorafleet-sha256", adapter.weights_sha256);
    return new Response(object.body, { headers });
  });
  return app;
}
