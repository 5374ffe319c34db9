import { SELF } from "cloudflare:test";
import { expect, it } from "vitest";

it("answers health with request id and gateway time", async () => {
  const res = await SELF.fetch("https://gw/healthz", { headers: { "x-request-id": "abc-1" } });
  expect(res.status).toBe(200);
  expect(res.headers.get("x-request-id")).toBe("abc-1");
  expect(Number(res.headers.get("x-lorafleet-gateway-ms"))).toBeGreaterThanOrEqual(0);
});
