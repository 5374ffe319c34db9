/**
 * A CPU profile of the gateway Worker under load (issue 25's decomposition): workerd
 * directly, as the benchmark's product figure runs it, with V8's sampling profiler
 * attached through the inspector to the gateway's isolate alone. Prints the functions
 * with the most samples, self and inclusive, and writes the .cpuprofile (open it in
 * Chrome DevTools or speedscope).
 *
 *   node bench/gateway/profile.ts [--tenant limited|unlimited] [--duration 6]
 *        [--clients 4 | --rate 500] [--top 30] [--out /tmp/gateway.cpuprofile]
 *
 * The profiler costs CPU of its own, and console.log's lines travel to it: compare
 * shares within one profile, not CPU ms with the benchmark's.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type CpuProfile, type Share, shares } from "./cpu-profile.ts";
import { startGateway, startStub } from "./gateway-targets.ts";
import { closedLoop, openLoop } from "./load.ts";

const { values } = parseArgs({
  options: {
    tenant: { type: "string", default: "limited" },
    duration: { type: "string", default: "6" },
    clients: { type: "string", default: "4" },
    rate: { type: "string" },
    top: { type: "string", default: "30" },
    out: { type: "string", default: join(tmpdir(), "gateway.cpuprofile") },
    "inspector-port": { type: "string", default: "9339" },
  },
});
const log = (line: string) => process.stderr.write(`[bench:gateway-profile] ${line}\n`);

/** One Chrome DevTools Protocol session over the inspector's WebSocket. */
async function inspect(url: string) {
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.addEventListener("open", resolve);
    socket.addEventListener("error", reject);
  });
  let lastId = 0;
  const pending = new Map<number, (result: unknown) => void>();
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown };
    if (message.id !== undefined) pending.get(message.id)?.(message.result);
  });
  return {
    call<T>(method: string, params: object = {}): Promise<T> {
      lastId += 1;
      const id = lastId;
      return new Promise((resolve) => {
        pending.set(id, resolve as (result: unknown) => void);
        socket.send(JSON.stringify({ id, method, params }));
      });
    },
    close: () => socket.close(),
  };
}

async function main() {
  const port = Number(values["inspector-port"]);
  process.env.BENCH_INSPECTOR_PORT = String(port);
  const stub = await startStub(16, 2);
  const gateway = await startGateway("workerd", mkdtempSync(join(tmpdir(), "profile-")), stub.url);
  try {
    const key = values.tenant === "unlimited" ? gateway.keys.unlimited : gateway.keys.limited;
    const spec = {
      url: `${gateway.url}/v1/chat/completions`,
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: gateway.model,
        messages: [{ role: "user", content: "Say ok." }],
        max_tokens: 16,
      }),
    };
    await closedLoop(spec, 4, 2); // warm-up: caches filled, code optimized
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as {
      title: string;
      webSocketDebuggerUrl: string;
    }[];
    const target = targets.find((t) => t.title.endsWith(":lorafleet-gateway"));
    if (target === undefined)
      throw new Error(`no gateway isolate among ${targets.map((t) => t.title)}`);
    const session = await inspect(target.webSocketDebuggerUrl);
    await session.call("Profiler.enable");
    await session.call("Profiler.setSamplingInterval", { interval: 100 }); // µs
    await session.call("Profiler.start");
    const durationS = Number(values.duration);
    const load =
      values.rate === undefined
        ? await closedLoop(spec, Number(values.clients), durationS)
        : await openLoop(spec, Number(values.rate), durationS);
    const { profile } = await session.call<{ profile: CpuProfile }>("Profiler.stop");
    session.close();
    writeFileSync(values.out, JSON.stringify(profile));
    const summary = shares(profile);
    const top = (list: Share[]) =>
      list
        .slice(0, Number(values.top))
        .map((s) => `${(100 * s.share).toFixed(1).padStart(6)} %  ${s.name}`)
        .join("\n");
    log(
      `${load.samples.length} requests in ${load.elapsedS.toFixed(1)} s; ${summary.samples} samples; wrote ${values.out}`,
    );
    process.stdout.write(`self\n${top(summary.self)}\n\ninclusive\n${top(summary.inclusive)}\n`);
  } finally {
    await gateway.stop();
    await stub.stop();
  }
}

await main();
