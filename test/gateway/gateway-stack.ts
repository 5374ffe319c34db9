// The whole stack the end-to-end suites start: the gateway under `wrangler dev` in front of
// one real backend (tiny-llama, the Python executor on CPU), started together, the backend
// with its own secret and the gateway's origin allowed, registered as `cpu-0` of base model
// `tiny-llama`. Stops both.
import { join } from "node:path";
import { type Backend, fixturesDir, startBackend } from "../backend/backend-process.ts";
import { GatewayAdmin } from "./gateway-admin.ts";
import {
  backendSecretFor,
  freePort,
  type Gateway,
  gatewayOrigin,
  startGateway,
} from "./gateway-process.ts";

export interface Stack {
  gateway: Gateway;
  backend: Backend;
  /** the backend's own secret (what `/metrics` and direct calls need) */
  backendSecret: string;
  admin: GatewayAdmin;
  stop: () => Promise<void>;
}

/** `masterSecret` is the gateway's BACKEND_SECRET; `backendArgs` are added to the backend's flags. */
export async function startStack(masterSecret: string, backendArgs: string[] = []): Promise<Stack> {
  const port = await freePort();
  const backendSecret = await backendSecretFor(masterSecret, "cpu-0");
  const [gateway, backend] = await Promise.allSettled([
    startGateway(masterSecret, port),
    startBackend([
      "--backend-secret",
      backendSecret,
      "--adapter-url-allow",
      gatewayOrigin(port),
      ...backendArgs,
    ]),
  ]);
  if (gateway.status === "rejected" || backend.status === "rejected") {
    await Promise.all([
      gateway.status === "fulfilled" ? gateway.value.stop() : null,
      backend.status === "fulfilled" ? backend.value.stop() : null,
    ]);
    throw gateway.status === "rejected"
      ? gateway.reason
      : (backend as PromiseRejectedResult).reason;
  }
  const admin = new GatewayAdmin(gateway.value.url, gateway.value.adminToken);
  await admin.registerBaseModel("tiny-llama", join(fixturesDir, "tiny-llama"));
  await admin.registerBackend("cpu-0", backend.value.url, "tiny-llama");
  return {
    gateway: gateway.value,
    backend: backend.value,
    backendSecret,
    admin,
    stop: async () => {
      await Promise.all([gateway.value.stop(), backend.value.stop()]);
    },
  };
}
