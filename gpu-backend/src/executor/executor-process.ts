// One life of the Python executor: a listening Unix socket, the child process that
// connects to it, and the requests in flight on that connection. It ends once (exit,
// socket closed, protocol violation, hang, or kill) and then fails every pending
// request with ExecutorUnavailable; client.ts starts a new one.

import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { createInterface } from "node:readline";
import type { BadFrame } from "../protocol/errors.ts";
import { FrameReader } from "../protocol/frame.ts";
import { type Decoded, decodeMessage, encodeMessage, type Message } from "../protocol/protocol.ts";
import type { MessageName } from "../protocol/schema.ts";
import { ExecutorRequestError, ExecutorUnavailable } from "./errors.ts";

/** pino's logger fits; any object with these three methods does. */
export interface ExecutorLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface ProcessOptions {
  pythonPath: string;
  socketPath: string;
  /** the executor's flags after `--socket PATH` (runtime/options.py) */
  flags: readonly string[];
  /** the child's environment (the caller merges process.env in) */
  env: NodeJS.ProcessEnv;
  connectTimeoutMs: number;
  logger: ExecutorLogger;
}

/** The reply each request expects (besides `error`). */
const REPLY: Partial<Record<MessageName, MessageName>> = {
  init: "ready",
  stage_adapter: "adapter_staged",
  load_adapter: "ok",
  drop_adapter: "ok",
  step: "step_result",
  stats: "stats_result",
  shutdown: "ok",
  compile_grammar: "grammar_compiled",
  drop_grammar: "ok",
};

interface Pending {
  type: MessageName;
  resolve: (reply: Decoded) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

export class ExecutorProcess {
  /** resolves with why this life ended; never rejects */
  readonly ended: Promise<string>;
  readonly pid: number | undefined;
  private readonly pending = new Map<number, Pending>();
  private readonly reader = new FrameReader();
  private nextRequestId = 1;
  private endReason: string | undefined;
  /** the types of the requests this life's end found unanswered */
  private readonly pendingAtEnd = new Set<MessageName>();
  private markEnded: (reason: string) => void = () => {};
  private readonly child: ChildProcess;
  private readonly socket: Socket;
  private readonly logger: ExecutorLogger;

  private constructor(child: ChildProcess, socket: Socket, logger: ExecutorLogger) {
    this.child = child;
    this.socket = socket;
    this.logger = logger;
    this.pid = child.pid;
    this.ended = new Promise((resolve) => {
      this.markEnded = resolve;
    });
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", (error) => this.end(`socket error: ${error.message}`));
    socket.on("close", () => this.end("the executor closed its socket"));
    child.on("exit", (code, signal) =>
      this.end(`the executor exited (${signal ?? `code ${code}`})`),
    );
    child.on("error", (error) => this.end(`executor process error: ${error.message}`));
  }

  /** Spawns the executor and waits for it to connect; rejects with ExecutorUnavailable. */
  static async start(options: ProcessOptions): Promise<ExecutorProcess> {
    rmSync(options.socketPath, { force: true });
    const listener = createServer();
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(options.socketPath, resolve);
    }).catch((error: Error) => {
      throw new ExecutorUnavailable(`cannot listen on ${options.socketPath}: ${error.message}`);
    });
    const child = spawn(
      options.pythonPath,
      ["-m", "lorafleet_executor", "--socket", options.socketPath, ...options.flags],
      { env: options.env, stdio: ["ignore", "pipe", "pipe"] },
    );
    pipeLines(child, options.logger);
    try {
      const socket = await acceptOne(listener, child, options.connectTimeoutMs);
      return new ExecutorProcess(child, socket, options.logger);
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    } finally {
      // One connection per life; the path is free again for the next one.
      listener.close();
      rmSync(options.socketPath, { force: true });
    }
  }

  get alive(): boolean {
    return this.endReason === undefined;
  }

  /** Whether this life ended with a request of `type` unanswered. */
  endedDuring(type: MessageName): boolean {
    return this.pendingAtEnd.has(type);
  }

  /**
   * Sends one request; resolves with its reply, rejects with ExecutorRequestError (the
   * executor refused it), ExecutorUnavailable (this life ended first, or no reply came
   * in `timeoutMs`: then the executor counts as hung and is killed), or BadMessage from
   * the encoder (nothing was sent). `timeoutMs` null: the caller keeps the time (steps).
   */
  request(message: Message, timeoutMs: number | null): Promise<Decoded> {
    if (this.endReason !== undefined) {
      return Promise.reject(new ExecutorUnavailable(`executor unavailable: ${this.endReason}`));
    }
    const requestId = this.nextRequestId;
    let frame: Uint8Array;
    try {
      frame = encodeMessage(requestId, message);
    } catch (error) {
      return Promise.reject(error);
    }
    // 0 stays free: the executor uses it for errors about frames it could not read.
    this.nextRequestId = requestId === 0xffffffff ? 1 : requestId + 1;
    return new Promise<Decoded>((resolve, reject) => {
      const timer =
        timeoutMs === null
          ? undefined
          : setTimeout(() => {
              this.kill(
                `hung: no reply to ${message.type} (request ${requestId}) in ${timeoutMs} ms`,
              );
            }, timeoutMs);
      this.pending.set(requestId, { type: message.type, resolve, reject, timer });
      this.socket.write(frame);
    });
  }

  /** Ends this life now (SIGKILL): pending requests fail with ExecutorUnavailable. */
  kill(reason: string): void {
    this.end(reason);
  }

  private receive(chunk: Buffer): void {
    let frames: Uint8Array[];
    try {
      frames = this.reader.push(chunk);
    } catch (error) {
      this.kill(`protocol violation: ${(error as BadFrame).message}`);
      return;
    }
    for (const frame of frames) {
      let reply: Decoded;
      try {
        reply = decodeMessage(frame);
      } catch (error) {
        this.kill(`protocol violation: ${(error as Error).message}`);
        return;
      }
      const pending = this.pending.get(reply.requestId);
      if (reply.type === "error" && reply.requestId === 0) {
        this.logger.error(
          { code: reply.body.code },
          `executor refused a frame: ${reply.body.message}`,
        );
        continue; // a bad_frame: the executor closes the connection next, which ends this life
      }
      if (pending === undefined) {
        this.kill(`protocol violation: a ${reply.type} for unknown request ${reply.requestId}`);
        return;
      }
      if (reply.type !== "error" && reply.type !== REPLY[pending.type]) {
        this.kill(`protocol violation: ${pending.type} answered with ${reply.type}`);
        return;
      }
      this.pending.delete(reply.requestId);
      clearTimeout(pending.timer);
      if (reply.type === "error") {
        pending.reject(new ExecutorRequestError(reply.body.code, reply.body.message));
      } else {
        pending.resolve(reply);
      }
    }
  }

  private end(reason: string): void {
    if (this.endReason !== undefined) return;
    this.endReason = reason;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    this.socket.destroy();
    const error = new ExecutorUnavailable(`executor unavailable: ${reason}`);
    for (const pending of this.pending.values()) {
      this.pendingAtEnd.add(pending.type);
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
    this.logger.warn({ pid: this.pid }, `executor process ended: ${reason}`);
    this.markEnded(reason);
  }
}

function acceptOne(listener: Server, child: ChildProcess, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const fail = (message: string) => {
      clearTimeout(timer);
      reject(new ExecutorUnavailable(message));
    };
    const timer = setTimeout(
      () => fail(`the executor did not connect within ${timeoutMs} ms`),
      timeoutMs,
    );
    child.once("error", (error) => fail(`cannot start the executor: ${error.message}`));
    child.once("exit", (code, signal) =>
      fail(`the executor exited before connecting (${signal ?? `code ${code}`})`),
    );
    listener.once("connection", (socket) => {
      clearTimeout(timer);
      resolve(socket);
    });
  });
}

/** The child's stdout and stderr, line by line, into the logger. */
function pipeLines(child: ChildProcess, logger: ExecutorLogger): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (stream === null) continue;
    createInterface({ input: stream }).on("line", (line) => {
      logger.info({ pid: child.pid }, line);
    });
  }
}
