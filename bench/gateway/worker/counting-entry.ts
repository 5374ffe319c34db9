// The gateway Worker as the benchmark runs it: the real entry (gateway/src/index.ts), its
// bindings wrapped to count each D1 query, KV read and write, Durable Object call, R2
// operation and Queue message a request makes, split into those it started before its
// response was returned (`onPath`: awaited, or started for waitUntil on the way; counted
// through that request's own env, so another request's background work running meanwhile is
// not its) and all of them (`total`, waitUntil work that ran after the response included);
// the usage Queue consumer's own calls are counted apart (`consumer`). GET /__bench/counts answers the counts; POST
// /__bench/counts resets them. Nothing else differs from the product.

import type { Env } from "../../../gateway/src/env.ts";
import gateway, { BatchRunner, TenantLimiter } from "../../../gateway/src/index.ts";

export { BatchRunner, TenantLimiter };

type Counts = Record<string, number>;
const total: Counts = {};
const onPath: Counts = {};
const consumer: Counts = {};
let requests = 0;

/** Calls of the named methods on `target` (and on what `nested` methods return) are counted into each of `into` as `name`. */
function counted<T extends object>(
  into: Counts[],
  target: T,
  methods: Record<string, string>,
  nested: Record<string, (value: object) => object> = {},
): T {
  const count = (name: string) => {
    for (const counts of into) counts[name] = (counts[name] ?? 0) + 1;
  };
  return new Proxy(target, {
    get(t, prop) {
      const value = Reflect.get(t, prop) as unknown;
      if (typeof value !== "function") return value;
      const name = methods[String(prop)];
      const wrap = nested[String(prop)];
      return (...args: unknown[]) => {
        if (name !== undefined) count(name);
        const result = Reflect.apply(value, t, args) as unknown;
        return wrap !== undefined && typeof result === "object" && result !== null
          ? wrap(result)
          : result;
      };
    },
  });
}

/** `env` with each binding's calls counted into each of `into`. */
function wrapEnv(env: Env, into: Counts[]): Env {
  const statement = (s: object): object =>
    counted(
      into,
      s,
      { first: "d1_queries", all: "d1_queries", run: "d1_queries", raw: "d1_queries" },
      { bind: statement },
    );
  return {
    ...env,
    DB: counted(into, env.DB, { batch: "d1_batches", exec: "d1_queries" }, { prepare: statement }),
    CACHE: counted(into, env.CACHE, {
      get: "kv_reads",
      getWithMetadata: "kv_reads",
      put: "kv_writes",
      delete: "kv_writes",
    }),
    FILES: counted(into, env.FILES, {
      get: "r2_ops",
      head: "r2_ops",
      put: "r2_ops",
      delete: "r2_ops",
      list: "r2_ops",
      createMultipartUpload: "r2_ops",
      resumeMultipartUpload: "r2_ops",
    }),
    LIMITER: counted(into, env.LIMITER, {}, { get: (stub) => countedStub(into, stub) }),
    USAGE: counted(into, env.USAGE, { send: "queue_messages", sendBatch: "queue_batches" }),
  };
}

/** A Durable Object stub whose every method call (an RPC call) is counted. */
function countedStub(into: Counts[], stub: object): object {
  return new Proxy(stub, {
    get(s, method) {
      const value = Reflect.get(s, method) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        for (const counts of into) counts.do_calls = (counts.do_calls ?? 0) + 1;
        return Reflect.apply(value, s, args) as unknown;
      };
    },
  });
}

export default {
  async fetch(request, env, ctx) {
    const path = new URL(request.url).pathname;
    if (path === "/__bench/counts") {
      if (request.method === "POST") {
        for (const counts of [total, onPath, consumer]) {
          for (const k of Object.keys(counts)) delete counts[k];
        }
        requests = 0;
      }
      return Response.json({ requests, onPath, total, consumer });
    }
    requests += 1;
    const made: Counts = {};
    const response = await gateway.fetch(request, wrapEnv(env, [total, made]), ctx);
    // What this request made so far; what its env makes later counts in `total` only.
    for (const [name, n] of Object.entries(made)) onPath[name] = (onPath[name] ?? 0) + n;
    return response;
  },
  scheduled: gateway.scheduled,
  queue(batch, env) {
    return gateway.queue(batch, wrapEnv(env, [consumer]));
  },
} satisfies ExportedHandler<Env>;
