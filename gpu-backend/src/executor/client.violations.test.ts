// ExecutorClient against executors that break the protocol (a Python peer speaking
// through lorafleet_executor.protocol, started in place of the server): each violation
// ends that executor and fails the call with ExecutorUnavailable naming it.

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ExecutorClient } from "./client.ts";
import { ExecutorUnavailable } from "./errors.ts";
import { RecordingLogger, rejection, TEST_PYTHON, tinyConfig } from "./test-fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "lorafleet-violations-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Answers the first request (init) the way MODE says.
const PEER = `
import os, socket, sys
from lorafleet_executor.protocol.codec import decode_message, encode_message
from lorafleet_executor.protocol.frame import read_frame
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[sys.argv.index("--socket") + 1])
request = decode_message(read_frame(sock.makefile("rb")))
mode = os.environ["MODE"]
if mode == "unknown_id":
    sock.sendall(encode_message(request.request_id + 100, "ok", None))
elif mode == "wrong_type":
    sock.sendall(encode_message(request.request_id, "ok", None))
elif mode == "garbage":
    sock.sendall(b"HTTP/1.1 200 OK\\r\\n\\r\\n")
elif mode == "bad_meta":
    frame = bytearray(encode_message(request.request_id, "stats_result", {k: 1 for k in (
        "host_cache_bytes", "host_cache_adapters", "pool_adapters", "live_seqs", "steps",
        "device_memory_bytes")}))
    sock.sendall(bytes(frame).replace(b'"steps":1', b'"steps":-'))
sock.recv(1)  # stay until the client hangs up
`;
const peerScript = join(dir, "peer.py");
writeFileSync(peerScript, PEER);
// The client runs `<python> -m lorafleet_executor --socket PATH`: this stands in.
const launcher = join(dir, "python");
writeFileSync(launcher, `#!/bin/sh\nexec "${TEST_PYTHON}" "${peerScript}" "$@"\n`);
chmodSync(launcher, 0o755);

describe("ExecutorClient facing protocol violations", () => {
  it.each([
    ["unknown_id", /a ok for unknown request 101/],
    ["wrong_type", /init answered with ok/],
    ["garbage", /protocol violation: bad magic/],
    ["bad_meta", /protocol violation: .*meta is not UTF-8 JSON/],
  ])("%s ends the executor and fails the call", async (mode, reason) => {
    const client = new ExecutorClient({
      pythonPath: launcher,
      env: { MODE: mode },
      logger: new RecordingLogger(),
    });
    try {
      const error = await rejection(client.init(tinyConfig()));
      expect(error).toBeInstanceOf(ExecutorUnavailable);
      expect(error.message).toMatch(reason);
      expect(client.pid).toBeUndefined();
    } finally {
      await client.shutdown();
    }
  });
});
