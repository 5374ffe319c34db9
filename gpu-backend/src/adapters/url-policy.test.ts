import { describe, expect, it } from "vitest";
import { AdapterUrlRefused } from "./errors.ts";
import { AdapterUrlPolicy } from "./url-policy.ts";

describe("AdapterUrlPolicy.parse", () => {
  it("takes comma-separated origins and normalizes them", () => {
    const policy = AdapterUrlPolicy.parse(" https://GW.example.com:443 , http://127.0.0.1:8787/,");
    expect(policy.origins).toEqual(["https://gw.example.com", "http://127.0.0.1:8787"]);
    expect(AdapterUrlPolicy.parse("").origins).toEqual([]);
  });

  it("names entries that are not bare http(s) origins", () => {
    expect(() => AdapterUrlPolicy.parse("gw.example.com")).toThrow(/"gw.example.com" is not a URL/);
    expect(() => AdapterUrlPolicy.parse("file:///srv")).toThrow(/only http and https/);
    expect(() => AdapterUrlPolicy.parse("https://gw.example.com/internal")).toThrow(
      /not an origin/,
    );
    expect(() => AdapterUrlPolicy.parse("https://u:p@gw.example.com")).toThrow(/not an origin/);
    expect(() => AdapterUrlPolicy.parse("https://gw.example.com?x=1")).toThrow(/not an origin/);
  });
});

describe("AdapterUrlPolicy.check", () => {
  const policy = AdapterUrlPolicy.parse("https://gw.example.com");
  it("allows URLs on an allowed origin, default port spelled or not", () => {
    policy.check("https://gw.example.com/internal/adapters/ad_1/adapter_config.json?sig=x");
    policy.check("https://GW.example.com:443/internal/adapters/ad_1/adapter_model.safetensors");
  });
  it("refuses everything else with AdapterUrlRefused, never echoing the query", () => {
    for (const url of [
      "http://gw.example.com/x",
      "https://gw.example.com:8443/x",
      "https://gw.example.com.evil.example/x",
      "https://evil.example/x?sig=topsecret",
      "https://a:b@gw.example.com/x",
      "file:///etc/passwd",
      "gopher://gw.example.com/x",
      "",
    ]) {
      expect(() => policy.check(url), url).toThrow(AdapterUrlRefused);
    }
    expect(() => policy.check("https://evil.example/x?sig=topsecret")).toThrow(
      /^(?!.*topsecret).*evil\.example/,
    );
  });
});
