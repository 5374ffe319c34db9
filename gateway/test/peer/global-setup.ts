// Starts the test peer for the gateway's Workers tests (in Node, outside workerd)
// and hands its URL to the Worker's bindings through vitest's provide/inject.
import { createServer } from "node:net";
import type { TestProject } from "vitest/node";
import { startTestPeer } from "./test-peer.ts";

/** A port where nothing listens: bind one, then let it go. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

export default async function setup(project: TestProject) {
  const peer = await startTestPeer();
  project.provide("peerUrls", [peer.url, `http://127.0.0.1:${await closedPort()}`]);
  return () => peer.close();
}
