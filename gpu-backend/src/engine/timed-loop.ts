// A test helper: the serving loop and the executor's concurrency in simulated time, so that
// engine decisions can be timed without a GPU. Stages run on a pool of threads (FIFO, as
// the executor's StagePool), loads one at a time on the adapter thread, steps one at a time
// in order, drops at once; the loop schedules after every outcome while the engine allows,
// and prefetches while it does not (serving-loop.ts); a client keeps at most `maxConcurrency` requests in flight (the
// bench's `--max-concurrency`). The SimulatedExecutor checks PROTOCOL.md's contract.
import type { StepPlan } from "../protocol/messages.ts";
import type { AdapterOp } from "./adapters.ts";
import type { Engine } from "./engine.ts";
import type { RequestOutput } from "./output.ts";
import type { EngineRequest } from "./request.ts";
import { ContractViolation, type SimulatedExecutor } from "./testing.ts";

export interface TimedLoopOptions {
  /** stages the executor runs at once (--stage-threads) */
  stageThreads: number;
  /** ms one stage of the adapter takes on a free thread */
  stageMs: (name: string) => number;
  /** ms one load of the adapter takes on the adapter thread */
  loadMs: (name: string) => number;
  /** ms the executor takes for one step */
  stepMs: (plan: StepPlan) => number;
  /** requests the client keeps in flight at most; null: open loop */
  maxConcurrency: number | null;
}

/** One request's times, ms of simulated time. */
export interface RequestTimes {
  id: string;
  adapter: string | null;
  /** when the trace sends it */
  arrivalMs: number;
  /** when the client sent it (later than arrivalMs when all its slots were taken) */
  sentMs: number;
  /** its adapter was not resident when it was sent */
  cold: boolean;
  firstTokenMs: number | null;
  endMs: number | null;
  finishReason: string | null;
}

/** One adapter op's times (stage: sent, started on a thread, done; load likewise). */
export interface AdapterOpTimes {
  kind: "stage" | "load";
  name: string;
  sentMs: number;
  startMs: number;
  doneMs: number;
}

export interface TimedRun {
  requests: RequestTimes[];
  adapterOps: AdapterOpTimes[];
  steps: number;
  endMs: number;
}

/** The loop re-schedules this often when nothing happens (serving-loop.ts IDLE_TICK_MS). */
const IDLE_TICK_MS = 50;
/** idle ticks in a row with work left and nothing in flight: the engine is stuck */
const STUCK_TICKS = 200;

interface Event {
  at: number;
  order: number;
  run: () => void;
}

/**
 * Runs `arrivals` (request, ms it arrives) through the engine in simulated time; returns
 * every request's and adapter op's times. Throws ContractViolation when the engine stops
 * making progress with work left.
 */
export function runTimed(
  engine: Engine,
  sim: SimulatedExecutor,
  arrivals: readonly { req: EngineRequest; arrivalMs: number }[],
  options: TimedLoopOptions,
): TimedRun {
  const events: Event[] = [];
  let order = 0;
  let now = 0;
  const at = (time: number, run: () => void): void => {
    const event = { at: time, order: order++, run };
    let i = events.length;
    while (i > 0 && (events[i - 1] as Event).at > time) i--;
    events.splice(i, 0, event);
  };

  const times = new Map<string, RequestTimes>();
  const backlog: EngineRequest[] = [];
  let inFlight = 0;
  const send = (req: EngineRequest): void => {
    inFlight++;
    const misses = engine.stats().adapters.misses;
    engine.addRequest({ ...req, arrivalMs: now });
    const entry = times.get(req.id) as RequestTimes;
    entry.sentMs = now;
    entry.cold = engine.stats().adapters.misses > misses;
  };
  const record = (outputs: readonly RequestOutput[]): void => {
    for (const out of outputs) {
      const entry = times.get(out.id);
      if (entry === undefined) throw new ContractViolation(`output for unknown ${out.id}`);
      if (out.newTokenIds.length > 0 && entry.firstTokenMs === null) entry.firstTokenMs = now;
      if (out.finishReason === null) continue;
      entry.endMs = now;
      entry.finishReason = out.finishReason;
      inFlight--;
      const next = backlog.shift();
      if (next !== undefined) send(next);
    }
  };

  const opTimes: AdapterOpTimes[] = [];
  const stageQueue: (() => void)[] = [];
  let freeStageThreads = options.stageThreads;
  const loadQueue: (() => void)[] = [];
  let loadBusy = false;
  const stepQueue: StepPlan[] = [];
  let stepBusy = false;
  let steps = 0;

  const startStage = (): void => {
    while (freeStageThreads > 0 && stageQueue.length > 0) {
      freeStageThreads--;
      (stageQueue.shift() as () => void)();
    }
  };
  const startLoad = (): void => {
    if (loadBusy || loadQueue.length === 0) return;
    loadBusy = true;
    (loadQueue.shift() as () => void)();
  };
  const startStep = (): void => {
    const plan = stepQueue.shift();
    if (stepBusy || plan === undefined) {
      if (plan !== undefined) stepQueue.unshift(plan);
      return;
    }
    stepBusy = true;
    at(now + options.stepMs(plan), () => {
      stepBusy = false;
      steps++;
      record(engine.update(sim.runNext(), now));
      startStep();
    });
  };
  const names = new Map<number, string>();
  const sendOp = (op: AdapterOp): void => {
    const sentMs = now;
    if (op.kind === "drop") {
      sim.drop(op);
    } else if (op.kind === "stage") {
      const name = op.name;
      names.set(op.adapterId, name);
      stageQueue.push(() => {
        const startMs = now;
        at(now + options.stageMs(name), () => {
          opTimes.push({ kind: "stage", name, sentMs, startMs, doneMs: now });
          freeStageThreads++;
          record(engine.adapterStaged(sim.stage(op)));
          startStage();
        });
      });
      startStage();
    } else {
      // Its pages are checked against the steps in flight when the engine hands them out.
      sim.load(op);
      const name = names.get(op.adapterId) as string;
      loadQueue.push(() => {
        const startMs = now;
        at(now + options.loadMs(name), () => {
          opTimes.push({ kind: "load", name, sentMs, startMs, doneMs: now });
          loadBusy = false;
          engine.adapterLoaded(op.adapterId);
          startLoad();
        });
      });
      startLoad();
    }
  };
  const pump = (): void => {
    if (!engine.canSchedule()) for (const op of engine.prefetch()) sendOp(op);
    while (engine.canSchedule()) {
      const step = engine.schedule(now);
      for (const op of step.adapterOps) sendOp(op);
      record(step.finished);
      if (step.plan === null) break;
      sim.submit(step.plan);
      stepQueue.push(step.plan);
      startStep();
    }
  };

  for (const { req, arrivalMs } of arrivals) {
    times.set(req.id, {
      id: req.id,
      adapter: req.adapter?.name ?? null,
      arrivalMs,
      sentMs: Number.NaN,
      cold: false,
      firstTokenMs: null,
      endMs: null,
      finishReason: null,
    });
    at(arrivalMs, () => {
      if (options.maxConcurrency !== null && inFlight >= options.maxConcurrency) backlog.push(req);
      else send(req);
    });
  }
  let idleTicks = 0;
  for (;;) {
    const event = events.shift();
    if (event === undefined) {
      if (!engine.hasUnfinishedRequests() && backlog.length === 0) break;
      if (++idleTicks > STUCK_TICKS) {
        throw new ContractViolation(`engine stuck at ${now} ms: ${JSON.stringify(engine.stats())}`);
      }
      now += IDLE_TICK_MS;
      pump();
      continue;
    }
    idleTicks = 0;
    now = event.at;
    event.run();
    pump();
  }
  return { requests: [...times.values()], adapterOps: opTimes, steps, endMs: now };
}
