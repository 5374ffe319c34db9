import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { send } from "./load.ts";

// /ok answers, /reset destroys the socket before answering, /cut sends half a body and dies
let server: Server;
let base = "";
beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/reset") return req.socket.destroy();
      if (req.url === "/cut") {
        res.writeHead(200, { "content-length": "100" });
        res.write("half");
        return setTimeout(() => res.destroy(), 5);
      }
      res.end("ok");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  base = `http://127.0.0.1:${address.port}`;
});
afterAll(() => new Promise((resolve) => server.close(resolve)));

const one = (path: string) =>
  send({ url: `${base}${path}`, headers: {}, body: "{}" }, performance.now());

describe("load: why a request had no whole answer", () => {
  it("answers 200 with no failure, and names a reset socket and a body cut short", async () => {
    expect(await one("/ok")).toMatchObject({ status: 200 });
    expect((await one("/ok")).failure).toBeUndefined();
    expect(await one("/reset")).toMatchObject({ status: 0, failure: "ECONNRESET" });
    expect(await one("/cut")).toMatchObject({ status: 0, failure: "cut" });
  });
});
