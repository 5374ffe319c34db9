/// <reference lib="dom" />
// The console in a real browser against the real stack: an operator issues a key, the
// tenant signs in with it, uploads an adapter, chats with it and sees the request in
// usage; the key is revoked; another tenant sees none of it. A tenant key with the
// admin scope manages its own tenant's keys; one without it has no keys page.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { fixturesDir } from "../backend/backend-process.ts";
import {
  type Browser,
  chromiumMissing,
  haveChromium,
  launchBrowser,
  screenshot,
} from "./browser.ts";
import { waitForUsage } from "./stack.ts";

const stack = inject("stack");
const adapterDir = join(fixturesDir, "adapters/tiny-r8");
const adapterName = "support-bot";

type DroppedFile = { name: string; base64: string };

function fixtureFile(name: string, bytes?: Buffer): DroppedFile {
  return { name, base64: (bytes ?? readFileSync(join(adapterDir, name))).toString("base64") };
}

/** Drops files on the upload zone the way a file manager does: a drop event with a DataTransfer. */
async function dropFiles(page: Page, files: DroppedFile[]) {
  const dataTransfer = await page.evaluateHandle((list) => {
    const transfer = new DataTransfer();
    for (const f of list) {
      const bytes = Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0));
      transfer.items.add(new File([bytes], f.name));
    }
    return transfer;
  }, files);
  await page.getByTestId("dropzone").dispatchEvent("drop", { dataTransfer });
}

async function signIn(page: Page, kind: "tenant" | "admin", token: string) {
  await page.goto(stack.url);
  await page.getByLabel(kind === "admin" ? "Operator (admin token)" : "Tenant (API key)").check();
  await page.getByLabel(kind === "admin" ? "Admin token" : "API key", { exact: true }).fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function signOut(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect.poll(() => page.getByRole("button", { name: "Sign in" }).count()).toBe(1);
}

async function openPage(page: Page, title: string) {
  await page.getByRole("link", { name: title }).click();
  await page.getByRole("heading", { level: 2, name: title }).waitFor();
}

describe.skipIf(!haveChromium)(
  `tenant console in Chromium${haveChromium ? "" : ` (${chromiumMissing})`}`,
  () => {
    let browser: Browser;
    let page: Page;
    let issuedKey = "";
    const policyViolations: string[] = [];

    beforeAll(async () => {
      browser = await launchBrowser(stack.url);
      page = browser.page;
      page.on("console", (message) => {
        if (message.text().includes("Content Security Policy"))
          policyViolations.push(message.text());
      });
    });
    afterAll(async () => {
      await browser?.close();
    });

    it("an operator sees tenants and healthy backends, and issues a key shown once", async () => {
      const response = await page.goto(stack.url);
      expect(response?.headers()["content-security-policy"]).toContain("default-src 'self'");
      await signIn(page, "admin", stack.adminToken);
      await page.getByRole("heading", { level: 2, name: "Tenants" }).waitFor();
      await page.locator("tr[data-tenant=acme]").waitFor();
      await page.locator("tr[data-tenant=acme]").getByRole("button", { name: "Limits" }).click();
      await page.getByLabel("requests_per_minute").first().fill("600");
      await page.getByRole("button", { name: "Save limits" }).click();
      await expect
        .poll(() => page.locator("tr[data-tenant=acme] td.num").first().textContent())
        .toBe("600");
      await page.getByLabel("New tenant").fill("initech");
      await page.getByRole("button", { name: "Create tenant" }).click();
      await page.locator("tr[data-tenant=initech]").waitFor();
      await screenshot(page, "admin-tenants");

      await openPage(page, "Backends");
      const backend = page.locator("tr[data-backend=cpu-0]");
      await backend.waitFor();
      expect(await backend.textContent()).toContain("healthy");
      await screenshot(page, "admin-backends");

      await openPage(page, "API keys");
      await page.getByLabel("Tenant").selectOption({ label: "acme" });
      await page.getByLabel("Name (optional)").fill("console-test");
      await page.getByLabel("adapters:write").check();
      await page.getByRole("button", { name: "Create key" }).click();
      issuedKey = (await page.getByTestId("new-key").textContent()) ?? "";
      expect(issuedKey).toMatch(/^lf_live_[A-Za-z0-9]{40}$/);
      await page.getByRole("button", { name: "Copy" }).click();
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(issuedKey);
      const row = page.locator("tr", { hasText: "console-test" });
      expect(await row.textContent()).toContain("inference, adapters:write");
      expect(await row.textContent()).not.toContain(issuedKey);
      await screenshot(page, "admin-keys");
      await page.getByRole("button", { name: "Done" }).click();
      expect(await page.content()).not.toContain(issuedKey);
      await signOut(page);
    });

    it("a bad key is refused with the gateway's message, and the key never enters the URL", async () => {
      await signIn(page, "tenant", `lf_live_${"x".repeat(40)}`);
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("invalid_api_key");
      await signIn(page, "tenant", issuedKey);
      await page.getByRole("heading", { level: 2, name: "Adapters" }).waitFor();
      expect(page.url()).not.toContain(issuedKey);
      expect(await page.getByText("Tenant key · inference, adapters:write").count()).toBe(1);
    });

    it("uploads an adapter by drag and drop; validation errors show next to the file", async () => {
      await page.getByText("No adapters yet").waitFor();
      await screenshot(page, "adapters-empty");

      await dropFiles(page, [
        fixtureFile("adapter_config.json"),
        fixtureFile("adapter_model.bin", Buffer.from("pickle")),
      ]);
      const pickle = page.locator("li[data-file='adapter_model.bin']");
      expect(await pickle.getByRole("alert").textContent()).toContain("Pickle checkpoints");
      await pickle.getByRole("button", { name: "Remove adapter_model.bin" }).click();

      // A safetensors file cut short passes the browser's checks; the gateway names the problem.
      const weights = readFileSync(join(adapterDir, "adapter_model.safetensors"));
      await dropFiles(page, [
        fixtureFile("adapter_model.safetensors", weights.subarray(0, weights.length - 100)),
      ]);
      await page.getByLabel("Adapter name").fill(adapterName);
      await page.getByRole("button", { name: "Upload" }).click();
      const weightsRow = page.locator("li[data-file='adapter_model.safetensors']");
      await weightsRow.getByRole("alert").waitFor();
      expect(await weightsRow.getByRole("alert").textContent()).toContain("safetensors_");
      await screenshot(page, "adapters-validation");

      await dropFiles(page, [fixtureFile("adapter_model.safetensors")]);
      // A slow uplink (Chromium's own throttling, ~110 KiB at 40 KB/s) so the bar is seen moving.
      const cdp = await browser.context.newCDPSession(page);
      const throttle = (uploadThroughput: number) =>
        cdp.send("Network.emulateNetworkConditions", {
          offline: false,
          latency: 0,
          downloadThroughput: -1,
          uploadThroughput,
        });
      await throttle(40_000);
      await page.getByRole("button", { name: "Upload" }).click();
      const bar = page.getByLabel("Uploading…");
      await expect
        .poll(async () => Number((await bar.getAttribute("value").catch(() => null)) ?? 0), {
          timeout: 10_000,
        })
        .toBeGreaterThan(0);
      expect(Number(await bar.getAttribute("value"))).toBeLessThan(
        Number(await bar.getAttribute("max")),
      );
      await screenshot(page, "adapters-uploading");
      const listed = page.locator(`tr[data-adapter='${adapterName}']`);
      await listed.waitFor();
      await throttle(-1);
      const text = (await listed.textContent()) ?? "";
      for (const shown of [stack.baseModel, "ready", "q_proj", "down_proj"])
        expect(text).toContain(shown);
      expect(await listed.locator("td.num").first().textContent()).toBe("8");
      await screenshot(page, "adapters");
    });

    it("chats with the adapter in the playground, streamed, with the equivalent snippets", async () => {
      await openPage(page, "Playground");
      await page.getByLabel("Model").selectOption(adapterName);
      await page.getByLabel("max_tokens").fill("24");
      await page.getByLabel("Message", { exact: true }).fill("Tell me a story");
      // Counts how often the answer changes while it is written: streaming means more than once.
      await page.evaluate(() => {
        const w = window as unknown as { updates: number };
        w.updates = 0;
        const transcript = document.querySelector("[aria-label=Conversation]");
        new MutationObserver(() => {
          w.updates += 1;
        }).observe(transcript as Node, { subtree: true, characterData: true, childList: true });
      });
      await page.getByRole("button", { name: "Send" }).click();
      // The usage line ends a good stream; an alert says why a stream failed.
      await page.locator("[data-testid=chat-usage], [role=alert]").first().waitFor();
      expect(await page.getByRole("alert").allTextContents()).toEqual([]);
      const answer = await page.locator("[data-role=assistant]").textContent();
      expect((answer ?? "").replace(/^assistant/, "").length).toBeGreaterThan(0);
      expect(
        await page.evaluate(() => (window as unknown as { updates: number }).updates),
      ).toBeGreaterThan(2);
      expect(await page.getByTestId("chat-usage").textContent()).toMatch(
        /\d+ prompt \+ \d+ completion tokens/,
      );

      const snippet = page.getByRole("tabpanel");
      expect(await snippet.textContent()).toContain(`"model": "${adapterName}"`);
      expect(await snippet.textContent()).toContain("$LORAFLEET_API_KEY");
      await page.getByRole("tab", { name: "openai (Python)" }).click();
      expect(await snippet.textContent()).toContain(`base_url="${stack.url}/v1"`);
      expect(await page.content()).not.toContain(issuedKey);
      await screenshot(page, "playground");
    });

    it("counts the request in usage, per day and per adapter, and exports CSV", async () => {
      await waitForUsage(stack.url, issuedKey, 1);
      await openPage(page, "Usage");
      await expect.poll(() => page.getByTestId("total-requests").textContent()).toBe("1");
      await page.locator(`tr[data-model='${adapterName}']`).waitFor();
      expect(await page.locator("svg.chart").count()).toBe(3);
      const download = page.waitForEvent("download");
      await page.getByRole("button", { name: "Export CSV" }).click();
      const csv = readFileSync((await (await download).path()) ?? "", "utf8");
      expect(csv.split("\r\n")[0]).toBe(
        "day,model,requests,prompt_tokens,completion_tokens,errors",
      );
      expect(csv).toContain(`,${adapterName},1,`);
      await screenshot(page, "usage");
      await signOut(page);
    });

    it("another tenant's key sees none of it", async () => {
      await signIn(page, "tenant", stack.globex.key);
      await page.getByText("No adapters yet").waitFor();
      await openPage(page, "Usage");
      await expect.poll(() => page.getByTestId("total-requests").textContent()).toBe("0");
      await page.getByText("No requests in this period yet").waitFor();
      await openPage(page, "Playground");
      const options = await page.getByLabel("Model").locator("option").allTextContents();
      expect(options.join(" ")).not.toContain(adapterName);
      await signOut(page);
    });

    it("the operator sees each tenant's usage", async () => {
      await signIn(page, "admin", stack.adminToken);
      await openPage(page, "Usage");
      await page.getByLabel("Tenant").selectOption({ label: "acme" });
      await expect.poll(() => page.getByTestId("total-requests").textContent()).toBe("1");
      await page.getByLabel("Tenant").selectOption({ label: "globex" });
      await expect.poll(() => page.getByTestId("total-requests").textContent()).toBe("0");
    });

    it("a revoked key stops working at once in this location", async () => {
      await openPage(page, "API keys");
      await page.getByLabel("Tenant").selectOption({ label: "acme" });
      page.once("dialog", (dialog) => dialog.accept());
      const row = page.locator("tr", { hasText: "console-test" });
      await row.getByRole("button", { name: /^Revoke/ }).click();
      await expect.poll(() => row.textContent()).toContain("revoked");
      await signOut(page);
      await signIn(page, "tenant", issuedKey);
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("invalid_api_key");
    });

    it("a key without the admin scope has no keys page", async () => {
      await signIn(page, "tenant", stack.acme.key);
      await page.getByRole("heading", { level: 2, name: "Adapters" }).waitFor();
      expect(await page.getByRole("link", { name: "API keys" }).count()).toBe(0);
      await page.goto(`${stack.url}/#/keys`);
      await page.getByRole("heading", { level: 2, name: "Adapters" }).waitFor();
      expect(await page.getByRole("heading", { name: "Issue a key" }).count()).toBe(0);
      await signOut(page);
    });

    // After the usage checks: its requests would count there.
    it("sends a JSON schema and shows the model's tool calls", async () => {
      await signIn(page, "tenant", stack.acme.key);
      await openPage(page, "Playground");
      await page.getByLabel("Model").selectOption(adapterName);
      const schema = {
        type: "object",
        properties: { n: { type: "integer", minimum: 0, maximum: 99 } },
        required: ["n"],
        additionalProperties: false,
      };
      await page.getByLabel("JSON schema of the answer (optional)").fill("{ not json");
      expect(await page.getByRole("alert").textContent()).toContain("The JSON schema is not JSON");
      await page.getByLabel("JSON schema of the answer (optional)").fill(JSON.stringify(schema));
      await page.getByLabel("max_tokens").fill("40");
      await page.getByLabel("Message", { exact: true }).fill("A number, please");
      await page.getByRole("button", { name: "Send" }).click();
      await page.locator("[data-testid=chat-usage], [role=alert]").first().waitFor();
      expect(await page.getByRole("alert").allTextContents()).toEqual([]);
      const answer = (await page.locator("[data-role=assistant]").textContent()) ?? "";
      expect(Number.isInteger(JSON.parse(answer.replace(/^assistant/, "")).n)).toBe(true);
      await page.getByRole("tab", { name: "curl" }).click();
      expect(await page.getByRole("tabpanel").textContent()).toContain('"response_format"');

      await page.getByRole("button", { name: "Clear" }).click();
      await page.getByLabel("JSON schema of the answer (optional)").fill("");
      const tools = [
        {
          type: "function",
          function: {
            name: "get_time",
            parameters: { type: "object", properties: {}, additionalProperties: false },
          },
        },
      ];
      await page.getByLabel("tools (optional, a JSON list)").fill(JSON.stringify(tools));
      await page.getByLabel("tool_choice").selectOption("required");
      // A model with random weights would list calls until max_tokens.
      await page.getByLabel("parallel_tool_calls").uncheck();
      await page.getByLabel("max_tokens").fill("100");
      await page.getByLabel("Message", { exact: true }).fill("What time is it?");
      await page.getByRole("button", { name: "Send" }).click();
      await page.getByTestId("chat-usage").waitFor();
      const calls = await page.getByTestId("tool-call").all();
      expect(calls).toHaveLength(1);
      for (const call of calls) {
        expect(await call.locator("code").textContent()).toBe("get_time");
        expect(JSON.parse((await call.locator("pre").textContent()) ?? "")).toEqual({});
      }
      expect(await page.getByTestId("chat-usage").textContent()).toContain("finish: tool_calls");
      await screenshot(page, "playground-tools");
      await page.getByLabel("tools (optional, a JSON list)").fill("");
      await signOut(page);
    });

    it("a tenant's admin-scoped key issues, lists and revokes its own keys", async () => {
      await signIn(page, "tenant", stack.acmeAdmin.key);
      await openPage(page, "API keys");
      const own = page.locator(`tr[data-key='${stack.acmeAdmin.id}']`);
      await own.waitFor();
      expect(await own.textContent()).toContain("this key");
      // Its own tenant's keys only: acme's, used earlier in this file, and never globex's.
      const used = page
        .locator("tr")
        .filter({ has: page.getByRole("cell", { name: "e2e", exact: true }) });
      expect(await used.textContent()).toContain("inference, adapters:write");
      expect(await used.textContent()).not.toContain("never");
      expect(await page.content()).not.toContain(stack.globex.key.slice(0, 12));
      expect(await page.getByLabel("Tenant", { exact: true }).count()).toBe(0);

      await page.getByLabel("Name (optional)").fill("self-service");
      await page.getByLabel("adapters:write").check();
      await page.getByRole("button", { name: "Create key" }).click();
      const secret = (await page.getByTestId("new-key").textContent()) ?? "";
      expect(secret).toMatch(/^lf_live_[A-Za-z0-9]{40}$/);
      await page.getByRole("button", { name: "Copy" }).click();
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret);
      const row = page.locator("tr", { hasText: "self-service" });
      await row.waitFor();
      const listed = (await row.textContent()) ?? "";
      for (const shown of [secret.slice(0, 12), "inference, adapters:write", "UTC", "never"])
        expect(listed).toContain(shown);
      expect(listed).not.toContain(secret);
      await screenshot(page, "tenant-keys");
      await page.getByRole("button", { name: "Done" }).click();
      expect(await page.content()).not.toContain(secret);

      page.once("dialog", (dialog) => dialog.accept());
      await row.getByRole("button", { name: /^Revoke/ }).click();
      await expect.poll(() => row.textContent()).toContain("revoked");
      expect(await own.textContent()).toContain("active");
      await signOut(page);
      await signIn(page, "tenant", secret);
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("invalid_api_key");
    });

    it("works on a phone-sized screen and by keyboard", async () => {
      await page.setViewportSize({ width: 390, height: 800 });
      await page.goto(stack.url);
      await page.getByLabel("Tenant (API key)").focus();
      await page.keyboard.press("Tab");
      await page.keyboard.type(stack.acme.key);
      await page.keyboard.press("Enter");
      await page.locator(`tr[data-adapter='${adapterName}']`).waitFor();
      await screenshot(page, "adapters-phone");
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      expect(width).toBeLessThanOrEqual(390);
    });

    it("broke no rule of its Content-Security-Policy on any page", () => {
      expect(policyViolations).toEqual([]);
    });
  },
);
