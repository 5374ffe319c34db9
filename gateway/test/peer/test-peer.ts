// TEST PEER, not the real backend: a tiny Node HTTP server that speaks the
// OpenAI chat/completions shape the way gpu-backend does at its edge, so the
// Worker under test forwards over real HTTP. The real backend is exercised
// end to end in the repo's test/ suite.
//
// One server hosts many virtual backends, each under /b/<name>/..., so test
// files running at the same time never share one. Tests steer a virtual
// backend through /__control/<name> (its mode) and read what it received
// from /__control/<name>/requests.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { backendCredential } from "../../src/auth/backend-credential.ts";
import { testSecrets } from "./constants.ts";

/**
 * ok: answer normally. error: answer 503 before any body. reset: drop the
 * connection. cut: start a 200 stream, send two chunks, then drop it.
 * error_event: start a 200 stream, send two chunks, then an error event, the
 * usage chunk and `[DONE]`, ending cleanly (as gpu-backend does when a
 * generation fails mid-stream).
 * busy: answer 429 queue_full, as gpu-backend does when its queue is full.
 * slow: stream with `delayMs` between tokens, or answer after `delayMs`.
 * `firstByteMs` (any mode): wait that long before answering at all (a long queue or prefill).
 * Like a real backend, each virtual backend accepts one secret: the one the gateway
 * derives for its name (= its backend id) at `secretVersion` (default 1).
 */
export type PeerMode = {
  mode: "ok" | "error" | "busy" | "reset" | "cut" | "error_event" | "slow";
  delayMs?: number;
  firstByteMs?: number;
  load?: number;
  secretVersion?: number;
};

type Received = {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  /** Set when the gateway closed the connection before the stream finished. */
  aborted?: boolean;
};

type OpenAiBody = {
  model?: string;
  messages?: { content?: string }[];
  prompt?: string;
  max_tokens?: number;
  stream?: boolean;
  stream_options?: { include_usage?: boolean; continuous_usage_stats?: boolean };
  lorafleet?: { cache_salt?: string; base_model?: string; adapter?: { id: string } | null };
};

/** The prompt's tokens: its words (a chat's message contents, in order). */
function promptWords(body: OpenAiBody): string[] {
  const text =
    typeof body.prompt === "string"
      ? body.prompt
      : (body.messages ?? []).map((m) => String(m.content ?? "")).join(" ");
  return text.split(/\s+/).filter((w) => w.length > 0);
}

/**
 * A prefix cache as gpu-backend keeps one, per virtual backend, by words instead of
 * 16-token blocks: a prompt finds the longest word prefix an earlier prompt of the same
 * cache salt and model sent to this virtual backend had, less its last word (which the
 * backend always computes).
 */
class PrefixCache {
  readonly #prompts = new Map<string, string[][]>();

  /** The prompt's cached words; remembers the prompt. */
  take(backend: string, gateway: OpenAiBody["lorafleet"], words: string[]): number {
    const key = `${backend}\u0000${gateway?.cache_salt}\u0000${gateway?.adapter?.id ?? gateway?.base_model}`;
    const earlier = this.#prompts.get(key) ?? [];
    let cached = 0;
    for (const prompt of earlier) {
      let common = 0;
      while (common < prompt.length && prompt[common] === words[common]) common += 1;
      cached = Math.max(cached, Math.min(common, words.length - 1));
    }
    this.#prompts.set(key, [...earlier, words]);
    return cached;
  }
}

function usageOf(body: OpenAiBody, cachedTokens = 0) {
  const completion = Math.min(body.max_tokens ?? 4, 1000);
  const prompt = promptWords(body).length;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

/** A non-streaming answer: `max_tokens` (default 4) times "tok", and which virtual backend answered. */
function completionJson(
  body: OpenAiBody,
  chat: boolean,
  backend: string,
  id: string,
  usage = usageOf(body),
) {
  const content = "tok ".repeat(usage.completion_tokens).trim();
  const choice = chat
    ? { index: 0, message: { role: "assistant", content }, finish_reason: "length" }
    : { index: 0, text: content, finish_reason: "length" };
  return {
    id,
    created: 1_700_000_000,
    model: body.model,
    object: chat ? "chat.completion" : "text_completion",
    choices: [choice],
    usage,
    backend,
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startTestPeer(): Promise<{ url: string; close: () => Promise<void> }> {
  const modes = new Map<string, PeerMode>();
  const received = new Map<string, Received[]>();
  const prefixCache = new PrefixCache();

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://peer");
    const control = url.pathname.match(/^\/__control\/([^/]+)(\/requests)?$/);
    if (control?.[1]) {
      if (control[2]) return json(res, 200, received.get(control[1]) ?? []);
      modes.set(control[1], JSON.parse(await readBody(req)) as PeerMode);
      return json(res, 200, { ok: true });
    }
    const route = url.pathname.match(/^\/b\/([^/]+)(\/.*)$/);
    if (!route?.[1] || !route[2])
      return json(res, 404, { error: { message: "no such virtual backend" } });
    const [name, path] = [route[1], route[2]];
    const mode = modes.get(name) ?? { mode: "ok" };
    if (mode.mode === "reset") return req.socket.destroy();
    if (path === "/health" && req.method === "GET") {
      return mode.mode === "error"
        ? json(res, 503, { ok: false })
        : json(res, 200, { ok: true, load: mode.load ?? 0 });
    }
    const secret = await backendCredential(
      testSecrets.backendSecret,
      name,
      mode.secretVersion ?? 1,
    );
    if (req.headers.authorization !== `Bearer ${secret}`) {
      return json(res, 401, {
        error: { message: "bad backend secret", type: "authentication_error" },
      });
    }
    const text = await readBody(req);
    const body = JSON.parse(text) as OpenAiBody;
    const list = received.get(name) ?? [];
    const entry: Received = { path, headers: req.headers, body };
    list.push(entry);
    received.set(name, list);
    if (mode.firstByteMs !== undefined) {
      // a gateway that gives up meanwhile closes the connection: noticed at once
      await new Promise<void>((done) => {
        const timer = setTimeout(done, mode.firstByteMs);
        res.once("close", () => {
          clearTimeout(timer);
          done();
        });
      });
      if (res.destroyed || res.socket?.destroyed || req.socket.destroyed) {
        entry.aborted = true;
        return;
      }
    }
    if (mode.mode === "error") {
      return json(res, 503, { error: { message: "peer told to fail", type: "server_error" } });
    }
    if (mode.mode === "busy") {
      res.setHeader("retry-after", "1");
      return json(res, 429, {
        error: { message: "queue full", type: "rate_limit_error", code: "queue_full" },
      });
    }
    if (path === "/internal/batch") {
      // The backend's batch call: NDJSON back, one line per request, not in request order.
      if (mode.mode === "slow") await sleep(mode.delayMs ?? 50);
      const { requests } = body as unknown as {
        requests: {
          id: string;
          endpoint: string;
          cache_salt?: string;
          adapter: { id: string } | null;
          body: OpenAiBody;
        }[];
      };
      const answers = requests.map((item) => {
        const gateway = { ...item, base_model: item.body.model };
        const cached = prefixCache.take(name, gateway, promptWords(item.body));
        const chat = item.endpoint === "/v1/chat/completions";
        const answer = completionJson(item.body, chat, name, item.id, usageOf(item.body, cached));
        return `${JSON.stringify({ id: item.id, status: 200, body: answer })}\n`;
      });
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      for (const line of answers.reverse()) res.write(line);
      return res.end();
    }
    const chat = path === "/v1/chat/completions";
    if (!chat && path !== "/v1/completions") {
      return json(res, 404, { error: { message: `no route ${path}` } });
    }
    const completion = usageOf(body).completion_tokens;
    let usage = usageOf(body, prefixCache.take(name, body.lorafleet, promptWords(body)));
    const base = { id: `cmpl-${name}-${list.length}`, created: 1_700_000_000, model: body.model };
    if (!body.stream) {
      if (mode.mode === "slow") await sleep(mode.delayMs ?? 50);
      if (res.destroyed || res.socket?.destroyed || req.socket.destroyed) {
        entry.aborted = true;
        return;
      }
      return json(res, 200, completionJson(body, chat, name, base.id, usage));
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const object = chat ? "chat.completion.chunk" : "text_completion";
    for (let i = 0; i < completion; i += 1) {
      if (mode.mode === "cut" && i === 2) {
        await sleep(100); // let the two chunks reach the gateway before the connection dies
        return req.socket.destroy();
      }
      if (mode.mode === "error_event" && i === 2) {
        const error = { message: "generation failed", type: "server_error", code: "engine_error" };
        res.write(`data: ${JSON.stringify({ error })}\n\n`);
        usage = { ...usage, completion_tokens: i, total_tokens: usage.prompt_tokens + i };
        break;
      }
      const choice = chat ? { index: 0, delta: { content: "tok " } } : { index: 0, text: "tok " };
      // As gpu-backend (and OpenAI) do once usage is asked for: `usage: null` until the end,
      // or with continuous_usage_stats (vLLM's) the usage so far.
      const soFar = {
        ...usage,
        completion_tokens: i + 1,
        total_tokens: usage.prompt_tokens + i + 1,
      };
      const pendingUsage = body.stream_options?.continuous_usage_stats
        ? { usage: soFar }
        : body.stream_options?.include_usage
          ? { usage: null }
          : {};
      res.write(
        `data: ${JSON.stringify({ ...base, object, choices: [choice], ...pendingUsage })}\n\n`,
      );
      if (mode.mode === "slow") await sleep(mode.delayMs ?? 50);
      if (res.destroyed || res.socket?.destroyed) {
        entry.aborted = true;
        return;
      }
    }
    if (body.stream_options?.include_usage) {
      res.write(`data: ${JSON.stringify({ ...base, object, choices: [], usage })}\n\n`);
    }
    res.end("data: [DONE]\n\n");
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("test peer has no port");
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
