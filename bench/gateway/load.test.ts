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

// As workerd does (KJ's pipelineTimeout): a connection idle 5 s is closed, with no Keep-Alive
// header announcing it (an explicit Connection header keeps Node's server from sending one).
describe("load: keep-alive connections the server is about to close", () => {
  let idleServer: Server;
  let url = "";
  let connections = 0;
  beforeAll(async () => {
    idleServer = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.setHeader("connection", "keep-alive").end("ok"));
    });
    idleServer.keepAliveTimeout = 5_000;
    idleServer.on("connection", () => {
      connections += 1;
    });
    await new Promise<void>((resolve) => idleServer.listen(0, "127.0.0.1", resolve));
    const address = idleServer.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    url = `http://127.0.0.1:${address.port}/`;
  });
  afterAll(() => new Promise((resolve) => idleServer.close(resolve)));

  it("reuses a connection idle a moment, and not one idle 4.5 s (the server closes it at 5 s)", async () => {
    const spec = { url, headers: {}, body: "{}" };
    expect(await send(spec, performance.now())).toMatchObject({ status: 200 });
    expect(await send(spec, performance.now())).toMatchObject({ status: 200 });
    expect(connections).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    expect(await send(spec, performance.now())).toMatchObject({ status: 200 });
    expect(connections).toBe(2);
  });
});
