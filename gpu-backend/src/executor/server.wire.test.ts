// The Python protocol server seen from TS: the shared bad fixtures sent over a real
// socket are answered with the named error codes the TS codec decodes, a bad_message
// keeps the connection, a bad_frame closes it (exit 3), shutdown exits 0.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FrameReader } from "../protocol/frame.ts";
import { type Decoded, decodeMessage, encodeMessage } from "../protocol/protocol.ts";
import { TEST_PYTHON } from "./test-fixtures.ts";

const BAD = join(import.meta.dirname, "../../executor/tests/frames/bad");
const badFixtures = (prefix: string) =>
  readdirSync(BAD)
    .filter((f) => f.startsWith(prefix))
    .sort()
    .map((f) => [f, readFileSync(join(BAD, f))] as const);

class RawLink {
  readonly replies: Decoded[] = [];
  private readonly reader = new FrameReader();
  private waiters: (() => void)[] = [];
  closed = false;
  readonly socket: Socket;
  readonly child: ChildProcess;
  constructor(socket: Socket, child: ChildProcess) {
    this.socket = socket;
    this.child = child;
    socket.on("data", (chunk) => {
      for (const frame of this.reader.push(chunk)) this.replies.push(decodeMessage(frame));
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  async next(): Promise<Decoded> {
    while (this.replies.length === 0) {
      if (this.closed) throw new Error("closed before a reply");
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.replies.shift() as Decoded;
  }
  exitCode(): Promise<number | null> {
    if (this.child.exitCode !== null) return Promise.resolve(this.child.exitCode);
    return new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }
}

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function connect(): Promise<RawLink> {
  const dir = mkdtempSync(join(tmpdir(), "lorafleet-wire-"));
  dirs.push(dir);
  const path = join(dir, "s.sock");
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const child = spawn(TEST_PYTHON, ["-m", "lorafleet_executor", "--socket", path], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  children.push(child);
  const socket = await new Promise<Socket>((resolve) => server.once("connection", resolve));
  server.close();
  return new RawLink(socket, child);
}

describe("the Python server's answers to bad frames", () => {
  it("answers every bad_message fixture by name and stays connected", async () => {
    const link = await connect();
    const fixtures = badFixtures("bad_message--");
    expect(fixtures.length).toBeGreaterThan(15);
    for (const [name, bytes] of fixtures) {
      link.socket.write(bytes);
      const reply = await link.next();
      expect(reply.type, name).toBe("error");
      if (reply.type !== "error") continue;
      expect(reply.body.code, name).toBe("bad_message");
      expect(reply.requestId, name).toBe(5);
    }
    link.socket.write(encodeMessage(6, { type: "shutdown", body: {} }));
    expect((await link.next()).type).toBe("ok");
    expect(await link.exitCode()).toBe(0);
  });

  it.each(badFixtures("bad_frame--").filter(([n]) => /magic|version|length_over_limit/.test(n)))(
    "answers %s with bad_frame, then closes and exits 3",
    async (_, bytes) => {
      const link = await connect();
      link.socket.write(bytes);
      const reply = await link.next();
      expect(reply.type === "error" && reply.body.code).toBe("bad_frame");
      expect(await link.exitCode()).toBe(3);
      await expect(link.next()).rejects.toThrow("closed before a reply");
    },
  );
});
