/**
 * Load on one URL over keep-alive HTTP/1.1: an open loop (requests sent on a fixed schedule
 * whatever earlier ones are doing; latency from the scheduled time, so a lagging client or
 * server counts against the server) and a closed loop (N clients, each sending its next
 * request when its previous one ended).
 */
import { Agent, request } from "node:http";
import { percentile } from "../src/stats.ts";

export type RequestSpec = { url: string; headers: Record<string, string>; body: string };

/**
 * One request: its latency (end of body) and time to first byte, from when it was due;
 * status 0 with why there was no whole answer (a socket error's code, "cut" mid-body).
 */
export type Sample = { latencyMs: number; firstByteMs: number; status: number; failure?: string };

export type LoadResult = {
  samples: Sample[];
  /** wall seconds from the first send to the last end */
  elapsedS: number;
  /** most a send started after it was due (a large value: the client could not keep up) */
  maxSendLagMs: number;
};

/**
 * workerd closes a keep-alive connection idle for 5 s (KJ's `pipelineTimeout`) and announces
 * no Keep-Alive timeout: a request written to one as it closes is reset (ECONNRESET, and a POST
 * is not retried). As undici does by default, the client lets its idle connections go after 4 s,
 * before the server would.
 */
const keepAliveIdleMs = 4_000;

const agent = new Agent({ keepAlive: true, maxSockets: 512, timeout: keepAliveIdleMs });

/** A request not ended this long after it was due is given up (status 0): a target that died. */
const requestTimeoutMs = 30_000;

/** One request of `spec`, its latency counted from `due` (performance.now() time). */
export function send(spec: RequestSpec, due: number): Promise<Sample> {
  return new Promise((resolve) => {
    let firstByteMs = Number.NaN;
    let settled = false;
    // status 0: no whole answer (refused, reset, cut mid-body, or timed out)
    const settle = (status: number, failure?: string) => {
      if (settled) return;
      settled = true;
      const sample: Sample = { latencyMs: performance.now() - due, firstByteMs, status };
      if (failure !== undefined) sample.failure = failure;
      resolve(sample);
    };
    const url = new URL(spec.url);
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "POST",
        agent,
        headers: { ...spec.headers, "content-length": Buffer.byteLength(spec.body) },
        timeout: requestTimeoutMs,
      },
      (res) => {
        firstByteMs = performance.now() - due;
        res.on("data", () => {});
        res.on("end", () => settle(res.statusCode ?? 0));
        res.on("close", () => (res.complete ? settle(res.statusCode ?? 0) : settle(0, "cut")));
      },
    );
    req.on("timeout", () =>
      req.destroy(Object.assign(new Error("timed out"), { code: "TIMEOUT" })),
    );
    req.on("error", (error: NodeJS.ErrnoException) => settle(0, error.code ?? error.message));
    req.end(spec.body);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `rate` requests/s for `durationS` seconds, on schedule. */
export async function openLoop(
  spec: RequestSpec,
  rate: number,
  durationS: number,
): Promise<LoadResult> {
  const count = Math.max(1, Math.round(rate * durationS));
  const interval = 1000 / rate;
  const start = performance.now();
  const sent: Promise<Sample>[] = [];
  let maxSendLagMs = 0;
  for (let i = 0; i < count; ) {
    const due = start + i * interval;
    const now = performance.now();
    if (now < due) {
      await sleep(Math.max(0, due - now - 0.5));
      continue;
    }
    maxSendLagMs = Math.max(maxSendLagMs, now - due);
    sent.push(send(spec, due));
    i += 1;
  }
  const samples = await Promise.all(sent);
  return { samples, elapsedS: (performance.now() - start) / 1000, maxSendLagMs };
}

/** `clients` clients, each sending one request after another, for `durationS` seconds. */
export async function closedLoop(
  spec: RequestSpec,
  clients: number,
  durationS: number,
): Promise<LoadResult> {
  const start = performance.now();
  const end = start + durationS * 1000;
  const samples: Sample[] = [];
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) samples.push(await send(spec, performance.now()));
    }),
  );
  return { samples, elapsedS: (performance.now() - start) / 1000, maxSendLagMs: 0 };
}

export type Latency = { p50: number; p90: number; p99: number; max: number };

export function latencyOf(values: number[]): Latency {
  const at = (p: number) => Math.round((percentile(values, p) ?? Number.NaN) * 1000) / 1000;
  return { p50: at(50), p90: at(90), p99: at(99), max: at(100) };
}
