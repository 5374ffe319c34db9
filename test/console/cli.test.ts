// The `lorafleet` CLI as a user runs it (its bin, a real process) against the real
// stack, with tenants of its own so it does not depend on the browser tests.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { fixturesDir, repoRoot } from "../backend/backend-process.ts";
import { waitForUsage } from "./stack.ts";

const stack = inject("stack");
const adapterDir = join(fixturesDir, "adapters/tiny-r8");
const bin = join(repoRoot, "node_modules/.bin/lorafleet");

type Run = { code: number | null; stdout: string; stderr: string };

/** Runs the CLI with its own config file; `secret` goes in through stdin, as a user pipes it. */
function lorafleet(config: string, args: string[], stdin = "", env: Record<string, string> = {}) {
  return new Promise<Run>((resolve, reject) => {
    const child = spawn(bin, [...args, "--config", config], {
      env: {
        ...process.env,
        PATH: `${join(repoRoot, "node_modules/.bin")}:${process.env.PATH}`,
        LORAFLEET_API_KEY: "",
        LORAFLEET_ADMIN_TOKEN: "",
        ...env,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => {
      stdout += c;
    });
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

async function seedTenant(name: string): Promise<string> {
  const admin = { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" };
  const tenant = await fetch(`${stack.url}/admin/tenants`, {
    method: "POST",
    headers: admin,
    body: JSON.stringify({ name }),
  }).then((r) => r.json() as Promise<{ id: string }>);
  const issued = await fetch(`${stack.url}/admin/tenants/${tenant.id}/keys`, {
    method: "POST",
    headers: admin,
    body: JSON.stringify({ scopes: ["inference", "adapters:write"] }),
  }).then((r) => r.json() as Promise<{ key: string }>);
  return issued.key;
}

/** Another key of the tenant named `name`, with `scopes`. */
async function seedKey(name: string, scopes: string[]): Promise<string> {
  const admin = { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" };
  const tenants = await fetch(`${stack.url}/admin/tenants`, { headers: admin }).then(
    (r) => r.json() as Promise<{ data: { id: string; name: string }[] }>,
  );
  const tenant = tenants.data.find((t) => t.name === name);
  const issued = await fetch(`${stack.url}/admin/tenants/${tenant?.id}/keys`, {
    method: "POST",
    headers: admin,
    body: JSON.stringify({ scopes }),
  }).then((r) => r.json() as Promise<{ key: string }>);
  return issued.key;
}

describe("lorafleet CLI against the running stack", () => {
  let dir: string;
  let config: string;
  let otherConfig: string;
  let key: string;
  let otherKey: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lorafleet-cli-"));
    config = join(dir, "one", "config.json");
    otherConfig = join(dir, "two", "config.json");
    key = await seedTenant("cli-one");
    otherKey = await seedTenant("cli-two");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("refuses a bad key at login and stores nothing", async () => {
    const run = await lorafleet(
      config,
      ["login", "--url", stack.url],
      `lf_live_${"x".repeat(40)}\n`,
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("invalid_api_key");
    expect(() => statSync(config)).toThrow();
  });

  it("logs in: URL and key stored in a 0600 file, scopes reported", async () => {
    const run = await lorafleet(config, ["login", "--url", stack.url], `${key}\n`);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("scopes: inference, adapters:write");
    expect(run.stderr).not.toContain(key);
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(config, "utf8"))).toEqual({ url: stack.url, apiKey: key });
  });

  it("uploads an adapter with a progress bar, lists it", async () => {
    const upload = await lorafleet(config, ["adapters", "upload", adapterDir, "--name", "cli-bot"]);
    expect(upload.code, upload.stderr).toBe(0);
    expect(upload.stdout).toMatch(/^cli-bot\tready\trank 8\t[0-9a-f]{64}\n$/);
    expect(upload.stderr).toMatch(/upload cli-bot \[#{30}\] 100% (\d+)\/\1 bytes/);
    const list = await lorafleet(config, ["adapters", "list"]);
    expect(list.stdout).toMatch(
      /cli-bot\s+tiny-llama\s+8\s+q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj\s+\d+\s+ready/,
    );
  });

  it("names what is wrong with a bad upload or a bad command line", async () => {
    const missing = await lorafleet(config, ["adapters", "upload", dir, "--name", "x"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("lacks adapter_config.json and adapter_model.safetensors");
    const unknown = await lorafleet(config, ["adapters", "list", "--colour"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("--colour");
    const duplicate = await lorafleet(config, [
      "adapters",
      "upload",
      adapterDir,
      "--name",
      "cli-bot",
    ]);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toContain("adapter_exists");
  });

  it("chats with the adapter, streamed to stdout, and the request shows in usage", async () => {
    const run = await lorafleet(config, [
      "chat",
      "--model",
      "cli-bot",
      "--max-tokens",
      "8",
      "--temperature",
      "0",
      "Hello",
      "there",
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim().length).toBeGreaterThan(0);
    expect(run.stderr).toMatch(
      /\[cli-bot: \d+ prompt \+ [1-8] completion tokens, finish (length|stop)\]/,
    );

    await waitForUsage(stack.url, key, 1);
    const csv = await lorafleet(config, ["usage", "--csv", "--days", "2"]);
    expect(csv.code, csv.stderr).toBe(0);
    const today = new Date().toISOString().slice(0, 10);
    expect(csv.stdout).toMatch(new RegExp(`\\r\\n${today},cli-bot,1,\\d+,[1-8],0\\r\\n`));
    const summary = await lorafleet(config, ["usage"]);
    expect(summary.stdout).toContain("last 14 days: 1 requests");
  });

  it("another tenant's key sees none of it", async () => {
    expect(
      (await lorafleet(otherConfig, ["login", "--url", stack.url], `${otherKey}\n`)).code,
    ).toBe(0);
    const list = await lorafleet(otherConfig, ["adapters", "list"]);
    expect(list.stdout).toBe("");
    expect(list.stderr).toContain("No adapters yet");
    const chat = await lorafleet(otherConfig, ["chat", "--model", "cli-bot", "Hi"]);
    expect(chat.code).toBe(1);
    expect(chat.stderr).toContain("HTTP 404");
    const usage = await lorafleet(otherConfig, ["usage"]);
    expect(usage.stdout).toContain("last 14 days: 0 requests");
    const remove = await lorafleet(otherConfig, ["adapters", "delete", "cli-bot"]);
    expect(remove.stderr).toContain("adapter_not_found");
  });

  it("a tenant's admin-scoped key manages the tenant's own keys; an inference key cannot", async () => {
    const own = join(dir, "own", "config.json");
    const adminKey = await seedKey("cli-one", ["admin"]);
    expect((await lorafleet(own, ["login", "--url", stack.url], `${adminKey}\n`)).code).toBe(0);
    const create = await lorafleet(own, [
      "keys",
      "create",
      "--scope",
      "inference",
      "--name",
      "mine",
    ]);
    expect(create.code, create.stderr).toBe(0);
    const issued = create.stdout.trim();
    const id = /Created (key_\S+)/.exec(create.stderr)?.[1] ?? "";
    const list = await lorafleet(own, ["keys", "list"]);
    expect(list.stdout).toMatch(
      new RegExp(`${id}\\s+lf_live_\\S*…\\s+mine\\s+inference\\s.*active`),
    );
    expect(list.stdout).not.toContain(issued);
    expect((await lorafleet(own, ["keys", "revoke", id])).code).toBe(0);
    expect((await lorafleet(own, ["keys", "list"])).stdout).toMatch(new RegExp(`${id}.*revoked`));

    const inferenceOnly = join(dir, "inference-only", "config.json");
    expect(
      (await lorafleet(inferenceOnly, ["login", "--url", stack.url], `${issued}\n`)).code,
    ).toBe(1);
    expect((await lorafleet(otherConfig, ["keys", "list"])).code).toBe(1);
  });

  it("the operator issues, lists and revokes a key; the revoked key can no longer log in", async () => {
    const admin = await lorafleet(config, ["login", "--admin", "--url", stack.url], "", {
      LORAFLEET_ADMIN_TOKEN: stack.adminToken,
    });
    expect(admin.code, admin.stderr).toBe(0);
    expect(JSON.parse(readFileSync(config, "utf8"))).toMatchObject({
      apiKey: key,
      adminToken: stack.adminToken,
    });

    const create = await lorafleet(config, [
      "keys",
      "create",
      "--tenant",
      "cli-one",
      "--scope",
      "inference",
      "--name",
      "from-cli",
    ]);
    expect(create.code, create.stderr).toBe(0);
    const issued = create.stdout.trim();
    expect(issued).toMatch(/^lf_live_[A-Za-z0-9]{40}$/);
    const id = /Created (key_\S+)/.exec(create.stderr)?.[1] ?? "";
    const list = await lorafleet(config, ["keys", "list", "--tenant", "cli-one"]);
    expect(list.stdout).toMatch(
      new RegExp(`${id}\\s+lf_live_\\S*…\\s+from-cli\\s+inference\\s.*active`),
    );
    expect(list.stdout).not.toContain(issued);

    expect((await lorafleet(config, ["keys", "revoke", id, "--tenant", "cli-one"])).code).toBe(0);
    expect((await lorafleet(config, ["keys", "list", "--tenant", "cli-one"])).stdout).toMatch(
      new RegExp(`${id}.*revoked`),
    );
    const relogin = await lorafleet(
      join(dir, "three.json"),
      ["login", "--url", stack.url],
      `${issued}\n`,
    );
    expect(relogin.code).toBe(1);
    expect(relogin.stderr).toContain("invalid_api_key");
  });

  it("deletes the adapter", async () => {
    expect((await lorafleet(config, ["adapters", "delete", "cli-bot"])).code).toBe(0);
    expect((await lorafleet(config, ["adapters", "list"])).stderr).toContain("No adapters yet");
  });
});
