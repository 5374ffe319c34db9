/**
 * The benchmark's backend: an OpenAI-shaped stub on loopback that answers a chat
 * completion at once, or streams `--tokens` chunks `--token-delay-ms` apart (each with the
 * usage so far, as the gateway asks), and answers `GET /health` with load 0. It runs in its
 * own process, so its CPU is not the gateway's or the load generator's. Prints
 * `{"port": N}` when listening.
 *
 *   node bench/gateway/stub-backend.ts --port 0 --tokens 16 --token-delay-ms 2
 */
import { createServer } from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    tokens: { type: "string", default: "16" },
    "token-delay-ms": { type: "string", default: "2" },
  },
});
const tokens = Number(values.tokens);
const tokenDelayMs = Number(values["token-delay-ms"]);

const usage = (completion: number) => ({
  prompt_tokens: 12,
  completion_tokens: completion,
  total_tokens: 12 + completion,
});

const server = createServer((req, res) => {
  if (req.method === "GET") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"load":0}');
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
      model: string;
      stream?: boolean;
    };
    const id = "chatcmpl-stub";
    if (body.stream !== true) {
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created: 0,
          model: body.model,
          choices: [
            {
              index: 0,
              message: { role: "assistant", content: "ok" },
              finish_reason: "stop",
            },
          ],
          usage: usage(1),
        }),
      );
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    let sent = 0;
    const next = () => {
      if (res.destroyed) return;
      sent += 1;
      const event = {
        id,
        object: "chat.completion.chunk",
        created: 0,
        model: body.model,
        choices: [
          { index: 0, delta: { content: "x" }, finish_reason: sent === tokens ? "stop" : null },
        ],
        usage: usage(sent),
      };
      res.write(`data: ${JSON.stringify(event)}\n\n`);
      if (sent < tokens) setTimeout(next, tokenDelayMs);
      else {
        const last = {
          id,
          object: "chat.completion.chunk",
          created: 0,
          model: body.model,
          choices: [],
          usage: usage(sent),
        };
        res.end(`data: ${JSON.stringify(last)}\n\ndata: [DONE]\n\n`);
      }
    };
    setTimeout(next, tokenDelayMs);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(values.port), "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
