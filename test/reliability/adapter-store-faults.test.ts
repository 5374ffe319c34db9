// The gateway's adapters, fetched through signed URLs from a store that fails: no answer,
// a 5xx, a body cut short, or bytes that do not hash to the recorded sha256. Each request
// fails clearly (retriable 503 for a store that is down, 400 for a mismatch), nothing is
// cached on disk, and the same adapter is served and cached once the store is right.
// URLs outside --adapter-url-allow, and redirects, are refused before any download (SSRF).
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Backend,
  fixturesDir,
  haveFixtures,
  startBackend,
} from "../backend/backend-process.ts";
import { expectIdle, expectOpenAIError, expectServes, post } from "./backend-probe.ts";

const SECRET = "reliability-backend-secret-0123";
const adapterDir = join(fixturesDir, "adapters/tiny-r8");
const weights = readFileSync(join(adapterDir, "adapter_model.safetensors"));
const config = readFileSync(join(adapterDir, "adapter_config.json"));
const sha256 = createHash("sha256").update(weights).digest("hex");

/** Requests the store received, by path. */
const storeHits: string[] = [];

/** The store's behaviour per path: a healthy file, a 500, a body cut at half its length, a redirect. */
function storeServer(): Server {
  return createServer((req, res) => {
    const path = req.url?.split("?")[0];
    storeHits.push(path ?? "");
    if (path === "/config") res.end(config);
    else if (path === "/weights-redirect") res.writeHead(302, { location: "/weights" }).end();
    else if (path === "/weights") res.end(weights);
    else if (path === "/weights-500") res.writeHead(500).end("store down");
    else if (path === "/weights-cut") {
      res.writeHead(200, { "content-length": String(weights.length) });
      res.write(weights.subarray(0, weights.length / 2));
      setTimeout(() => res.destroy(), 50);
    } else res.writeHead(404).end();
  });
}

/** A port nothing listens on: opened, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe.skipIf(!haveFixtures)("adapter store faults", () => {
  let backend: Backend;
  let store: Server;
  let storeUrl: string;
  let deadUrl: string;
  let dir: string;
  const cacheDir = () => join(dir, ".remote");

  beforeAll(async () => {
    store = storeServer();
    await new Promise<void>((resolve) => store.listen(0, "127.0.0.1", resolve));
    storeUrl = `http://127.0.0.1:${(store.address() as AddressInfo).port}`;
    deadUrl = `http://127.0.0.1:${await closedPort()}`;
    // An empty adapter directory; its .remote/ is the download cache under test.
    dir = mkdtempSync(join(tmpdir(), "lorafleet-store-faults-"));
    backend = await startBackend([
      "--backend-secret",
      SECRET,
      "--adapter-dir",
      dir,
      "--adapter-cache-dir",
      cacheDir(),
      "--adapter-url-allow",
      `${storeUrl},${deadUrl}`,
    ]);
  });
  afterAll(async () => {
    await backend?.stop();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const request = (adapter: object, stream = false) =>
    post(
      `${backend.url}/v1/chat/completions`,
      {
        model: "tenant/tiny-r8",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 3,
        stream,
        lorafleet: { tenant: "t1", adapter },
      },
      { authorization: `Bearer ${SECRET}` },
    );
  const adapter = (id: string, weightsUrl: string, sha = sha256, base = storeUrl) => ({
    id,
    name: "tiny-r8",
    rank: 8,
    sha256: sha,
    config_url: `${base}/config?sig=secret-signature`,
    weights_url: `${weightsUrl}?sig=secret-signature`,
  });

  const FAULTS = [
    {
      name: "store unreachable",
      make: () => adapter("adp_dead", `${deadUrl}/weights`, sha256, deadUrl),
      status: 503,
      code: "adapter_store_unavailable",
    },
    {
      name: "store answers 500",
      make: () => adapter("adp_500", `${storeUrl}/weights-500`),
      status: 503,
      code: "adapter_store_unavailable",
    },
    {
      name: "body cut short",
      make: () => adapter("adp_cut", `${storeUrl}/weights-cut`),
      status: 503,
      code: "adapter_store_unavailable",
    },
    {
      name: "store answers 404",
      make: () => adapter("adp_404", `${storeUrl}/gone`),
      status: 400,
      code: "adapter_invalid",
    },
    {
      name: "sha256 mismatch",
      make: () => adapter("adp_sha", `${storeUrl}/weights`, "f".repeat(64)),
      status: 400,
      code: "adapter_invalid",
    },
    {
      name: "store redirects",
      make: () => adapter("adp_redirect", `${storeUrl}/weights-redirect`),
      status: 400,
      code: "adapter_url_not_allowed",
    },
  ];

  it.each(FAULTS)("$name: $status $code, streamed or not; nothing cached", async (fault) => {
    for (const stream of [false, true]) {
      const response = await request(fault.make(), stream);
      const error = await expectOpenAIError(response, fault.status, { code: fault.code });
      if (fault.status === 503) expect(response.headers.get("retry-after")).not.toBeNull();
      // a signed URL's query is a credential: never echoed
      expect(error.message).not.toContain("secret-signature");
    }
    // nothing half-written or unverified: no entry, no leftover temp dir
    expect(readdirSync(cacheDir())).toEqual([]);
    await expectServes(backend.url, "tiny-llama", { authorization: `Bearer ${SECRET}` });
  });

  it("refuses origins outside --adapter-url-allow before connecting: 400 adapter_url_not_allowed", async () => {
    const port = new URL(storeUrl).port;
    storeHits.length = 0;
    const refusedUrls = [
      `http://localhost:${port}`, // the same server under an origin not on the list
      "http://169.254.169.254",
      "file://",
      `http://user:pw@127.0.0.1:${port}`,
    ];
    for (const base of refusedUrls) {
      for (const stream of [false, true]) {
        const response = await request(
          adapter("adp_ssrf", `${base}/weights`, sha256, base),
          stream,
        );
        const error = await expectOpenAIError(response, 400, { code: "adapter_url_not_allowed" });
        expect(error.message).not.toContain("secret-signature");
      }
    }
    expect(storeHits).toEqual([]);
    expect(readdirSync(cacheDir())).toEqual([]);
    await expectServes(backend.url, "tiny-llama", { authorization: `Bearer ${SECRET}` });
  });

  it("serves and caches the same adapter once the store is right; the cache holds exactly it", async () => {
    const response = await request(adapter("adp_ok", `${storeUrl}/weights`));
    expect(response.status, await response.clone().text()).toBe(200);
    await response.text();
    expect(readdirSync(cacheDir())).toEqual([`adp_ok@${sha256}`]);
    expect(readdirSync(join(cacheDir(), `adp_ok@${sha256}`)).sort()).toEqual([
      "adapter_config.json",
      "adapter_model.safetensors",
    ]);
    await expectIdle(backend.url, 10_000, SECRET);
  });
});
