// AdapterStore against a real local HTTP server (node:http): downloads, sha256 checks,
// failures (404, timeouts, truncated bodies, too large), single-flight, the LRU disk
// cache, and local adapter directories.

import { createHash, randomBytes } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { RemoteAdapter } from "../serving/executor-link.ts";
import {
  AdapterCacheFull,
  AdapterChecksumMismatch,
  AdapterDownloadFailed,
  AdapterTooLarge,
  AdapterUrlRefused,
  InvalidAdapterRef,
} from "./errors.ts";
import { AdapterStore, type AdapterStoreOptions } from "./store.ts";
import { AdapterUrlPolicy } from "./url-policy.ts";

const CONFIG = JSON.stringify({
  peft_type: "LORA",
  r: 8,
  lora_alpha: 16,
  target_modules: ["q_proj"],
});
const weights = (seed: number) =>
  Buffer.concat([Buffer.from(`weights ${seed}:`), randomBytes(20_000)]);
const FILES: Record<string, Buffer> = { a: weights(1), b: weights(2), c: weights(3) };
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

let server: Server;
let base: string;
const hits = new Map<string, number>();
/** the authorization header of the last request to each path */
const authorizations = new Map<string, string | undefined>();
const hanging: ServerResponse[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    authorizations.set(path, req.headers.authorization);
    const [, kind, name] = path.split("/");
    if (kind === "config") return void res.end(name === "broken" ? "[1," : CONFIG);
    if (kind === "weights" && name !== undefined && FILES[name] !== undefined) {
      // Slow enough that concurrent fetches overlap.
      return void setTimeout(() => res.end(FILES[name]), 50);
    }
    if (kind === "hang") return void hanging.push(res);
    if (kind === "redirect") {
      res.writeHead(302, { location: `${base}/weights/${name}` });
      return void res.end();
    }
    if (kind === "stall") {
      res.writeHead(200, { "content-length": "1000" });
      res.write(Buffer.alloc(100));
      return void hanging.push(res);
    }
    if (kind === "truncated") {
      res.writeHead(200, { "content-length": "1000" });
      res.write(Buffer.alloc(100), () => res.destroy());
      return;
    }
    if (kind === "huge") {
      res.writeHead(200, { "content-length": String(10 ** 9) });
      return void res.write(Buffer.alloc(10), () => res.destroy());
    }
    res.statusCode = 404;
    res.end("not found");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

let root: string;
const stores: AdapterStore[] = [];
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "lorafleet-store-"));
  hits.clear();
  authorizations.clear();
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  rmSync(root, { recursive: true, force: true });
});

function store(options: Partial<AdapterStoreOptions> = {}): AdapterStore {
  const made = new AdapterStore({
    dir: join(root, "local"),
    cacheDir: join(root, "cache"),
    urlPolicy: new AdapterUrlPolicy([base]),
    ...options,
  });
  stores.push(made);
  return made;
}

const remote = (name: string, overrides: Partial<RemoteAdapter> = {}): RemoteAdapter => ({
  id: `id-${name}`,
  name,
  sha256: sha(FILES[name] ?? Buffer.alloc(0)),
  configUrl: `${base}/config/${name}?sig=secret`,
  weightsUrl: `${base}/weights/${name}?sig=secret`,
  ...overrides,
});

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection");
}

/** The cache directory holds exactly these entries and no temp dirs. */
const cacheEntries = () => readdirSync(join(root, "cache")).sort();

describe("AdapterStore downloads", () => {
  it("downloads, verifies and caches; the second fetch makes no request", async () => {
    const s = store();
    const path = await s.fetch(remote("a"));
    expect(path).toBe(join(root, "cache", `id-a@${sha(FILES.a as Buffer)}`));
    expect(readFileSync(join(path, "adapter_model.safetensors")).equals(FILES.a as Buffer)).toBe(
      true,
    );
    expect(readFileSync(join(path, "adapter_config.json"), "utf8")).toBe(CONFIG);
    expect(await s.fetch(remote("a"))).toBe(path);
    expect(hits.get("/weights/a")).toBe(1);
    expect(await s.cacheStats()).toEqual({
      bytes: (FILES.a as Buffer).length + CONFIG.length,
      adapters: 1,
    });
  });

  it("downloads again when a cached directory was removed behind its back", async () => {
    const s = store();
    const path = await s.fetch(remote("a"));
    rmSync(path, { recursive: true });
    expect(await s.fetch(remote("a"))).toBe(path);
    expect(hits.get("/weights/a")).toBe(2);
    expect((await s.cacheStats()).adapters).toBe(1);
  });

  it("shares one download among concurrent fetches of one adapter", async () => {
    const s = store();
    const paths = await Promise.all(Array.from({ length: 8 }, () => s.fetch(remote("b"))));
    expect(new Set(paths).size).toBe(1);
    expect(hits.get("/weights/b")).toBe(1);
  });

  it("refuses weights whose sha256 differs, caching nothing", async () => {
    const s = store();
    const wrong = remote("a", { sha256: sha(FILES.b as Buffer) });
    const error = await failure(s.fetch(wrong));
    expect(error).toBeInstanceOf(AdapterChecksumMismatch);
    expect(error.message).toContain(sha(FILES.a as Buffer));
    expect(cacheEntries()).toEqual([]);
    // the right sha256 afterwards downloads again and succeeds
    await s.fetch(remote("a"));
    expect(cacheEntries()).toEqual([`id-a@${sha(FILES.a as Buffer)}`]);
  });

  it("names a 404 without leaking the signed query", async () => {
    const error = await failure(
      store().fetch(remote("a", { weightsUrl: `${base}/nothing?sig=secret` })),
    );
    expect(error).toBeInstanceOf(AdapterDownloadFailed);
    expect((error as AdapterDownloadFailed).status).toBe(404);
    expect(error.message).toContain("HTTP 404");
    expect(error.message).not.toContain("secret");
    expect(cacheEntries()).toEqual([]);
  });

  it("times out a server that never answers", async () => {
    const s = store({ headersTimeoutMs: 200 });
    const error = await failure(s.fetch(remote("a", { weightsUrl: `${base}/hang` })));
    expect(error).toBeInstanceOf(AdapterDownloadFailed);
    expect(error.message).toMatch(/timed out/);
    expect(cacheEntries()).toEqual([]);
  });

  it("times out a body that stalls", async () => {
    const s = store({ bodyTimeoutMs: 200 });
    const error = await failure(s.fetch(remote("a", { weightsUrl: `${base}/stall` })));
    expect(error).toBeInstanceOf(AdapterDownloadFailed);
    expect(error.message).toMatch(/timed out/);
    expect(cacheEntries()).toEqual([]);
  });

  it("bounds a whole download by totalTimeoutMs", async () => {
    const s = store({ totalTimeoutMs: 300 });
    const error = await failure(s.fetch(remote("a", { weightsUrl: `${base}/stall` })));
    expect(error).toBeInstanceOf(AdapterDownloadFailed);
    expect(error.message).toMatch(/timed out after 300 ms/);
    expect(cacheEntries()).toEqual([]);
  });

  it("refuses a truncated body", async () => {
    const error = await failure(store().fetch(remote("a", { weightsUrl: `${base}/truncated` })));
    expect(error).toBeInstanceOf(AdapterDownloadFailed);
    expect(error.message).toMatch(/truncated/);
    expect(cacheEntries()).toEqual([]);
  });

  it("refuses files over the size limit by their Content-Length", async () => {
    const s = store({ maxAdapterBytes: 1 << 20 });
    const error = await failure(s.fetch(remote("a", { weightsUrl: `${base}/huge` })));
    expect(error).toBeInstanceOf(AdapterTooLarge);
    expect(cacheEntries()).toEqual([]);
  });

  it("refuses a config that is not JSON, and unsafe ids or sha256s", async () => {
    const s = store();
    const broken = await failure(s.fetch(remote("a", { configUrl: `${base}/config/broken` })));
    expect(broken.message).toMatch(/adapter_config.json is not a JSON object/);
    expect(await failure(s.fetch(remote("a", { id: "../etc" })))).toBeInstanceOf(InvalidAdapterRef);
    expect(await failure(s.fetch(remote("a", { sha256: "abc" })))).toBeInstanceOf(
      InvalidAdapterRef,
    );
    expect(cacheEntries()).toEqual([]);
  });
});

describe("AdapterStore disk cache", () => {
  const entryBytes = (FILES.a as Buffer).length + CONFIG.length;

  it("evicts the least recently used adapter past the byte bound", async () => {
    const s = store({ cacheMaxBytes: 2 * entryBytes + 10, protectMs: 0 });
    const a = await s.fetch(remote("a"));
    await s.fetch(remote("b"));
    await new Promise((r) => setTimeout(r, 5));
    await s.fetch(remote("a")); // a is now more recent than b
    await s.fetch(remote("c"));
    expect(cacheEntries()).toEqual([
      `id-a@${sha(FILES.a as Buffer)}`,
      `id-c@${sha(FILES.c as Buffer)}`,
    ]);
    expect(await s.fetch(remote("a"))).toBe(a);
    expect(hits.get("/weights/a")).toBe(1);
    expect((await s.cacheStats()).bytes).toBeLessThanOrEqual(2 * entryBytes + 10);
  });

  it("keeps its byte count and the disk in step when downloads commit concurrently", async () => {
    const s = store({ cacheMaxBytes: 2 * entryBytes + 10, protectMs: 0 });
    await s.fetch(remote("a"));
    await s.fetch(remote("b"));
    await Promise.all([s.fetch(remote("c")), s.fetch(remote("a", { id: "id-a2" }))]);
    const onDisk = cacheEntries();
    expect(onDisk).toEqual([`id-a2@${sha(FILES.a as Buffer)}`, `id-c@${sha(FILES.c as Buffer)}`]);
    expect(await s.cacheStats()).toEqual({ bytes: 2 * entryBytes, adapters: 2 });
  });

  it("does not evict adapters handed out within protectMs: it says the cache is full", async () => {
    const s = store({ cacheMaxBytes: entryBytes + 10, protectMs: 60_000 });
    await s.fetch(remote("a"));
    const error = await failure(s.fetch(remote("b")));
    expect(error).toBeInstanceOf(AdapterCacheFull);
    expect(cacheEntries()).toEqual([`id-a@${sha(FILES.a as Buffer)}`]);
  });

  it("refuses an adapter larger than the whole cache", async () => {
    const error = await failure(store({ cacheMaxBytes: 1000 }).fetch(remote("a")));
    expect(error).toBeInstanceOf(AdapterCacheFull);
    expect(cacheEntries()).toEqual([]);
  });

  it("a new store finds the entries and the order on disk, and drops stale temp dirs", async () => {
    const first = store({ protectMs: 0 });
    await first.fetch(remote("a"));
    await first.fetch(remote("b"));
    const stale = join(root, "cache", ".partial-dead");
    mkdirSync(stale);
    utimesSync(stale, 0, 0);
    const fresh = join(root, "cache", ".partial-live");
    mkdirSync(fresh);
    const second = store({ cacheMaxBytes: 2 * entryBytes + 10, protectMs: 0 });
    expect(await second.cacheStats()).toEqual({ bytes: 2 * entryBytes, adapters: 2 });
    expect(cacheEntries()).toContain(".partial-live");
    expect(cacheEntries()).not.toContain(".partial-dead");
    await second.fetch(remote("c"));
    expect(hits.get("/weights/a")).toBe(1);
    expect(cacheEntries()).not.toContain(`id-a@${sha(FILES.a as Buffer)}`);
  });
});

describe("AdapterStore local directory", () => {
  it("finds adapter folders by name, nothing else", async () => {
    const local = join(root, "local", "tiny-r8");
    mkdirSync(local, { recursive: true });
    writeFileSync(join(local, "adapter_config.json"), CONFIG);
    const s = store();
    expect(await s.find("tiny-r8")).toBe(local);
    expect(await s.find("missing")).toBeNull();
    expect(await s.find("../local/tiny-r8")).toBeNull();
    expect(await s.find(".remote")).toBeNull();
    const noDir = new AdapterStore({ cacheDir: join(root, "c2") });
    stores.push(noDir);
    expect(await noDir.find("tiny-r8")).toBeNull();
  });
});

describe("AdapterStore URL policy (SSRF)", () => {
  const refused = async (s: AdapterStore, adapter: RemoteAdapter) => {
    const error = await failure(s.fetch(adapter));
    expect(error).toBeInstanceOf(AdapterUrlRefused);
    expect(error.message).not.toContain("secret");
    return error.message;
  };

  it("refuses an origin outside the policy before connecting, and by default every URL", async () => {
    const elsewhere = store({ urlPolicy: AdapterUrlPolicy.parse("http://127.0.0.1:1") });
    expect(await refused(elsewhere, remote("a"))).toMatch(
      /origin http:\/\/127\.0\.0\.1:\d+ is not allowed/,
    );
    expect(await refused(store({ urlPolicy: undefined }), remote("a"))).toMatch(
      /--adapter-url-allow is empty/,
    );
    // The weights URL alone on another origin is refused too.
    await refused(store(), remote("a", { weightsUrl: "http://169.254.169.254/latest/meta-data" }));
    expect(hits.size).toBe(0);
    expect(cacheEntries()).toEqual([]);
  });

  it("refuses other schemes, credentials and look-alike origins", async () => {
    const s = store();
    const port = new URL(base).port;
    for (const url of [
      "file:///etc/passwd",
      "ftp://127.0.0.1/x",
      "data:text/plain,hi",
      `http://user:pw@127.0.0.1:${port}/config/a`,
      `https://127.0.0.1:${port}/config/a`,
      `http://localhost:${port}/config/a`,
      `http://127.0.0.1:${port}.evil.example/config/a`,
      "not a url",
    ]) {
      await refused(s, remote("a", { configUrl: url }));
    }
    expect(hits.size).toBe(0);
  });

  it("sends its credential to the allowed origin with each download, and none without one", async () => {
    await store({ credential: "gpu-0.v1.secret" }).fetch(remote("a"));
    expect(authorizations.get("/config/a")).toBe("Bearer gpu-0.v1.secret");
    expect(authorizations.get("/weights/a")).toBe("Bearer gpu-0.v1.secret");
    await store({ cacheDir: join(root, "cache-no-credential") }).fetch(remote("b"));
    expect(authorizations.has("/weights/b")).toBe(true);
    expect(authorizations.get("/weights/b")).toBeUndefined();
  });

  it("does not follow a redirect, even to an allowed origin", async () => {
    const message = await refused(store(), remote("a", { weightsUrl: `${base}/redirect/a` }));
    expect(message).toMatch(/HTTP 302 \(a redirect\): redirects are not followed/);
    expect(hits.get("/weights/a")).toBeUndefined();
    expect(cacheEntries()).toEqual([]);
  });
});
