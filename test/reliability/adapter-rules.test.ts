// One adapter validator (issue #20, item 7): the adapters the issue found the gateway
// marking ready and the executor refusing on every call (`"r": 8.0`, lora_alpha 1e308,
// NaN and inf weights, rsLoRA with lora_alpha 1e30), and the ones the backend's
// /v1/load_lora_adapter took and refused only at the first completion (modules_to_save,
// rank_pattern), against the real backend and the real executor: each is either served
// (`r` 8.0) or refused when it is registered, at a completion, and by the executor's
// staging, with the same reason. Every fixture adapter (each rank, rsLoRA, all seven
// projections) is still served. The gateway's side: gateway/test/adapter-rules.test.ts.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecutorClient } from "../../gpu-backend/src/executor/client.ts";
import { ExecutorRequestError } from "../../gpu-backend/src/executor/errors.ts";
import {
  RecordingLogger,
  TEST_PYTHON,
  tinyConfig,
} from "../../gpu-backend/src/executor/test-fixtures.ts";
import {
  type Backend,
  fixturesDir,
  haveFixtures,
  startBackend,
} from "../backend/backend-process.ts";
import { expectOpenAIError, expectServes, post } from "./backend-probe.ts";

const fixtures = join(fixturesDir, "adapters");
const CONFIG = "adapter_config.json";
const WEIGHTS = "adapter_model.safetensors";
const SCALE =
  "the scale lora_alpha / r (lora_alpha / sqrt(r) with use_rslora) must be above 0 and at most 1024";

/** tiny-r8 with its config's text changed, or its first down_proj A value set. */
interface Change {
  config?: (text: string) => string;
  firstValue?: number;
}

/** The issue's adapters and what the rules say of each: null = served. */
const ISSUE: Record<string, { change: Change; refusal: string | null }> = {
  "r-8.0": {
    change: { config: (t) => t.replace(/"r": 8,/, '"r": 8.0,') },
    refusal: null,
  },
  "alpha-1e308": {
    change: { config: (t) => t.replace(/"lora_alpha": 16,/, '"lora_alpha": 1e308,') },
    refusal: `${CONFIG}: ${SCALE}`,
  },
  "rslora-alpha-1e30": {
    change: {
      config: (t) =>
        t
          .replace(/"lora_alpha": 16,/, '"lora_alpha": 1e30,')
          .replace(/"use_rslora": false,/, '"use_rslora": true,'),
    },
    refusal: `${CONFIG}: ${SCALE}`,
  },
  "nan-weights": {
    change: { firstValue: Number.NaN },
    refusal: `${WEIGHTS}: layer 0 down_proj lora_A holds values that are not finite`,
  },
  "inf-weights": {
    change: { firstValue: Number.POSITIVE_INFINITY },
    refusal: `${WEIGHTS}: layer 0 down_proj lora_A holds values that are not finite`,
  },
  "modules-to-save": {
    change: {
      config: (t) => t.replace(/"modules_to_save": null,/, '"modules_to_save": ["lm_head"],'),
    },
    refusal: `${CONFIG}: modules_to_save is set; it is not supported`,
  },
  "rank-pattern": {
    change: {
      config: (t) => t.replace(/"rank_pattern": \{\},/, '"rank_pattern": {"q_proj": 4},'),
    },
    refusal: `${CONFIG}: rank_pattern is set; it is not supported`,
  },
};

const FIRST_A = "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight";

function write(dir: string, change: Change): void {
  cpSync(join(fixtures, "tiny-r8"), dir, { recursive: true });
  if (change.config) {
    const text = readFileSync(join(dir, CONFIG), "utf8");
    const changed = change.config(text);
    expect(changed).not.toBe(text);
    writeFileSync(join(dir, CONFIG), changed);
  }
  if (change.firstValue !== undefined) {
    const bytes = readFileSync(join(dir, WEIGHTS));
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
    bytes.writeFloatLE(change.firstValue, 8 + headerLength + header[FIRST_A].data_offsets[0]);
    writeFileSync(join(dir, WEIGHTS), bytes);
  }
}

describe.skipIf(!haveFixtures)(
  "the issue's adapters: one verdict at registration, completion and staging",
  () => {
    const dir = mkdtempSync(join(tmpdir(), "lorafleet-adapter-rules-"));
    let backend: Backend;
    let executor: ExecutorClient;

    beforeAll(async () => {
      for (const [name, { change }] of Object.entries(ISSUE)) write(join(dir, name), change);
      for (const name of readdirSync(fixtures).filter((n) => n.startsWith("tiny-"))) {
        cpSync(join(fixtures, name), join(dir, name), { recursive: true });
      }
      backend = await startBackend(["--adapter-dir", dir, "--max-lora-rank", "64"]);
      executor = new ExecutorClient({ pythonPath: TEST_PYTHON, logger: new RecordingLogger() });
      await executor.init({ ...tinyConfig(), maxLoraRank: 64 });
    });
    afterAll(async () => {
      await backend?.stop();
      await executor?.shutdown();
      rmSync(dir, { recursive: true, force: true });
    });

    it.each(Object.keys(ISSUE))("%s", async (name) => {
      const refusal = ISSUE[name]?.refusal ?? null;
      const path = join(dir, name);
      const registered = await post(`${backend.url}/v1/load_lora_adapter`, {
        lora_name: `${name}-by-path`,
        lora_path: path,
      });
      const staged = executor.stageAdapter(1, path).then(
        () => null,
        (error: unknown) => error,
      );
      if (refusal === null) {
        expect(registered.status, await registered.text()).toBe(200);
        await expectServes(backend.url, `${name}-by-path`);
        await expectServes(backend.url, name); // found by the store on first use
        expect(await staged).toBeNull();
        await executor.dropAdapter(1, "host");
        return;
      }
      const atRegistration = await expectOpenAIError(registered, 400, {
        code: "adapter_invalid",
        param: "lora_path",
      });
      expect(atRegistration.message).toBe(`adapter ${name}-by-path: ${refusal}`);
      const completion = await post(`${backend.url}/v1/chat/completions`, {
        model: name,
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 2,
      });
      const atCompletion = await expectOpenAIError(completion, 400, {
        code: "adapter_invalid",
        param: "model",
      });
      expect(atCompletion.message).toBe(`adapter ${name}: ${refusal}`);
      const atStaging = (await staged) as ExecutorRequestError;
      expect(atStaging).toBeInstanceOf(ExecutorRequestError);
      expect([atStaging.code, atStaging.reason]).toEqual(["adapter_invalid", refusal]);
    });

    it("still serves every fixture adapter: each rank, rsLoRA, every projection", async () => {
      const names = readdirSync(fixtures).filter((n) => n.startsWith("tiny-"));
      expect(names.length).toBeGreaterThanOrEqual(20);
      for (const name of names) {
        const registered = await post(`${backend.url}/v1/load_lora_adapter`, {
          lora_name: `${name}-again`,
          lora_path: join(dir, name),
        });
        expect(registered.status, `${name}: ${await registered.text()}`).toBe(200);
        await expectServes(backend.url, `${name}-again`);
      }
    });
  },
);
