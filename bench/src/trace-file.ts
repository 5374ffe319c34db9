/**
 * Traces as JSONL: a header line `{"type":"trace", version, spec, adapters}`,
 * then one `{"type":"request", ...}` line per request, in arrival order. Replay
 * reads the file back, so a run can be repeated on exactly the same requests,
 * also by the Python baselines (bench/gpu/trace_file.py reads the same format).
 */
import { readFileSync, writeFileSync } from "node:fs";
import type { Trace, TraceAdapter, TraceRequest, WorkloadSpec } from "./workload.ts";

const TRACE_VERSION = 1;

export class TraceFileError extends Error {
  override name = "TraceFileError";
}

export function traceToJsonl(trace: Trace): string {
  const header = {
    type: "trace",
    version: TRACE_VERSION,
    spec: trace.spec,
    adapters: trace.adapters,
  };
  const lines = [JSON.stringify(header)];
  for (const request of trace.requests) lines.push(JSON.stringify({ type: "request", ...request }));
  return `${lines.join("\n")}\n`;
}

export function traceFromJsonl(text: string, source = "trace"): Trace {
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  const parse = (line: string, at: number): Record<string, unknown> => {
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        return value as Record<string, unknown>;
      }
    } catch {
      // reported below with the line number
    }
    throw new TraceFileError(`${source}:${at + 1}: not a JSON object`);
  };
  const first = lines[0];
  if (first === undefined) throw new TraceFileError(`${source}: empty file`);
  const header = parse(first, 0);
  if (header.type !== "trace" || header.version !== TRACE_VERSION) {
    throw new TraceFileError(`${source}:1: expected a trace header of version ${TRACE_VERSION}`);
  }
  const adapters = header.adapters as TraceAdapter[];
  const known = new Set(adapters.map((a) => a.name));
  const requests: TraceRequest[] = [];
  for (let at = 1; at < lines.length; at++) {
    const { type, ...request } = parse(lines[at] as string, at);
    if (type !== "request") throw new TraceFileError(`${source}:${at + 1}: expected a request`);
    const r = request as unknown as TraceRequest;
    if (!Array.isArray(r.prompt) || r.prompt.length !== r.inputLen) {
      throw new TraceFileError(`${source}:${at + 1}: prompt length differs from inputLen`);
    }
    if (r.adapter !== null && !known.has(r.adapter)) {
      throw new TraceFileError(`${source}:${at + 1}: adapter ${r.adapter} not in the header`);
    }
    requests.push(r);
  }
  return { spec: header.spec as WorkloadSpec, adapters, requests };
}

export function writeTrace(path: string, trace: Trace): void {
  writeFileSync(path, traceToJsonl(trace));
}

export function readTrace(path: string): Trace {
  return traceFromJsonl(readFileSync(path, "utf8"), path);
}
