import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, describeConfig, parseServerConfig } from "./config.ts";

describe("parseServerConfig", () => {
  it("takes flags over env over defaults", () => {
    const config = parseServerConfig(["--model", "/m/tiny", "--port", "9001"], {
      LORAFLEET_PORT: "9002",
      LORAFLEET_MAX_LORA_RANK: "16",
    });
    expect(config.port).toBe(9001);
    expect(config.maxLoraRank).toBe(16);
    expect(config.maxNumSeqs).toBe(128);
    expect(config.servedModelName).toBe("tiny");
  });

  it("names every bad value with its flag and env variable", () => {
    expect(() => parseServerConfig(["--model", "m", "--port=-1"], {})).toThrow(
      /--port \(LORAFLEET_PORT\)/,
    );
    expect(() => parseServerConfig(["--port", "80"], {})).toThrow(/--model \(LORAFLEET_MODEL\)/);
    expect(() => parseServerConfig(["--gpu-memory-utilization", "2", "--model", "m"], {})).toThrow(
      ConfigError,
    );
  });

  it("sends up to 3 steps ahead of their results unless told, at most the engine's cap", () => {
    expect(parseServerConfig(["--model", "m"], {}).maxInFlightSteps).toBe(3);
    expect(
      parseServerConfig(["--model", "m", "--max-in-flight-steps", "1"], {}).maxInFlightSteps,
    ).toBe(1);
    expect(() => parseServerConfig(["--model", "m", "--max-in-flight-steps", "5"], {})).toThrow(
      /--max-in-flight-steps/,
    );
  });

  it("serves the checkpoint as it is unless told to quantize it to fp8", () => {
    expect(parseServerConfig(["--model", "m"], {}).quantization).toBe("auto");
    expect(parseServerConfig(["--model", "m", "--quantization", "fp8"], {}).quantization).toBe(
      "fp8",
    );
    expect(
      parseServerConfig(["--model", "m"], { LORAFLEET_QUANTIZATION: "fp8" }).quantization,
    ).toBe("fp8");
    expect(() => parseServerConfig(["--model", "m", "--quantization", "int4"], {})).toThrow(
      /--quantization \(LORAFLEET_QUANTIZATION\)/,
    );
  });

  it("caches URL downloads under the adapter dir unless told where", () => {
    const base = ["--model", "m", "--adapter-dir", "ad"];
    expect(parseServerConfig(base, {}).adapterCacheDir).toBeUndefined();
    const config = parseServerConfig([...base, "--adapter-cache-dir", "dl"], {});
    expect(config.adapterCacheDir).toBe(resolve("dl"));
  });

  it("takes the no-unify-mem ablation's pool split", () => {
    const unified = parseServerConfig(["--model", "m"], {});
    expect([unified.unifiedPaging, unified.adapterPoolFraction]).toEqual([true, 0.5]);
    const split = parseServerConfig(
      ["--model", "m", "--unified-paging", "false", "--adapter-pool-fraction", "0.3"],
      {},
    );
    expect([split.unifiedPaging, split.adapterPoolFraction]).toEqual([false, 0.3]);
    expect(() => parseServerConfig(["--model", "m", "--adapter-pool-fraction", "1"], {})).toThrow(
      /--adapter-pool-fraction/,
    );
  });

  it("turns prefix caching on by default, off with --enable-prefix-caching false (A/B)", () => {
    const on = parseServerConfig(["--model", "m"], {});
    expect([on.enablePrefixCaching, on.prefixBlockSize]).toEqual([true, 16]);
    const off = parseServerConfig(["--model", "m", "--enable-prefix-caching", "false"], {
      LORAFLEET_PREFIX_BLOCK_SIZE: "32",
    });
    expect([off.enablePrefixCaching, off.prefixBlockSize]).toEqual([false, 32]);
    expect(() => parseServerConfig(["--model", "m", "--prefix-block-size", "0"], {})).toThrow(
      /--prefix-block-size/,
    );
  });

  it("refuses unknown flags and short secrets", () => {
    expect(() => parseServerConfig(["--model", "m", "--bogus", "1"], {})).toThrow(ConfigError);
    expect(() =>
      parseServerConfig(["--model", "m"], { LORAFLEET_BACKEND_SECRET: "short" }),
    ).toThrow(/backend-secret/);
  });

  it("parses --adapter-url-allow into origins; default none; names a bad entry", () => {
    expect(parseServerConfig(["--model", "m"], {}).adapterUrlAllow.origins).toEqual([]);
    const config = parseServerConfig(["--model", "m"], {
      LORAFLEET_ADAPTER_URL_ALLOW: "http://127.0.0.1:8787,https://gw.example.com",
    });
    expect(config.adapterUrlAllow.origins).toEqual([
      "http://127.0.0.1:8787",
      "https://gw.example.com",
    ]);
    expect(describeConfig(config).adapterUrlAllow).toEqual(config.adapterUrlAllow.origins);
    expect(() =>
      parseServerConfig(["--model", "m", "--adapter-url-allow", "https://gw.example.com/x"], {}),
    ).toThrow(/--adapter-url-allow \(LORAFLEET_ADAPTER_URL_ALLOW\): .*not an origin/);
  });

  it("never prints the secret", () => {
    const secret = "s".repeat(32);
    const config = parseServerConfig(["--model", "m", "--backend-secret", secret], {});
    expect(config.backendSecret).toBe(secret);
    expect(JSON.stringify(describeConfig(config))).not.toContain(secret);
  });
});
