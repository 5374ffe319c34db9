// The whole system the console runs against: the real backend (tiny-llama on CPU,
// Python executor) behind `wrangler dev` (local D1/KV/R2/DO in a fresh folder, the
// real migrations applied, the console built into console/dist and served as assets),
// seeded through the admin API with a base model, the backend, two tenants and an
// admin-scoped key of the first.
// Gateway start and seeding are the end-to-end suite's own helpers (test/gateway/).
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { type Backend, repoRoot, startBackend, tinyModel } from "../backend/backend-process.ts";
import { GatewayAdmin } from "../gateway/gateway-admin.ts";
import {
  backendSecretFor,
  freePort,
  gatewayOrigin,
  startGateway,
} from "../gateway/gateway-process.ts";

/** What the tests get: where the gateway listens and the secrets of two tenants. */
export type StackInfo = {
  url: string;
  adminToken: string;
  baseModel: string;
  /** tenant "acme": a key with inference + adapters:write */
  acme: { id: string; key: string };
  /** a second key of acme with only the `admin` scope: manages acme's keys (/v1/keys) */
  acmeAdmin: { id: string; key: string };
  /** tenant "globex", to check that acme's things stay invisible to it */
  globex: { id: string; key: string };
};

export type Stack = StackInfo & { stop: () => Promise<void> };

export async function startStack(): Promise<Stack> {
  const node = join(repoRoot, "node_modules/.bin/node");
  const build = spawnSync(node, [join(repoRoot, "console/build.mjs")], { encoding: "utf8" });
  if (build.status !== 0) throw new Error(`console build failed:\n${build.stderr}`);

  const backendSecret = randomBytes(16).toString("hex");
  const port = await freePort();
  const backend: Backend = await startBackend([
    "--backend-secret",
    await backendSecretFor(backendSecret, "cpu-0"),
    "--adapter-url-allow",
    gatewayOrigin(port),
  ]);
  const gateway = await startGateway(backendSecret, port).catch(async (error) => {
    await backend.stop();
    throw error;
  });
  const stop = async () => {
    await gateway.stop();
    await backend.stop();
  };
  try {
    const baseModel = "tiny-llama";
    const admin = new GatewayAdmin(gateway.url, gateway.adminToken);
    await admin.registerBaseModel(baseModel, tinyModel);
    await admin.registerBackend("cpu-0", backend.url, baseModel);
    const tenant = async (name: string) => {
      const { id, key } = await admin.createTenant(name);
      return { id, key };
    };
    const acme = await tenant("acme");
    return {
      url: gateway.url,
      adminToken: gateway.adminToken,
      baseModel,
      acme,
      acmeAdmin: await admin.issueKey(acme.id, ["admin"]).then(({ id, key }) => ({ id, key })),
      globex: await tenant("globex"),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Waits until the tenant of `apiKey` has `requests` usage rows: rows reach D1 through the
 * usage Queue about a second after their request ends (gateway/README.md "Usage").
 */
export async function waitForUsage(url: string, apiKey: string, requests: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const response = await fetch(`${url}/v1/usage`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    const usage = (await response.json()) as { requests: number };
    if (usage.requests >= requests) return;
    if (Date.now() > deadline)
      throw new Error(`usage shows ${usage.requests} requests, not ${requests}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
