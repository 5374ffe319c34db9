"""Reads the JSONL traces bench/src/trace-file.ts writes: a header line, then one request a line."""

import json
from dataclasses import dataclass
from pathlib import Path

TRACE_VERSION = 1


class TraceFileError(Exception):
    pass


@dataclass(frozen=True)
class TraceRequest:
    id: int
    arrival_s: float
    adapter: str | None
    input_len: int
    output_len: int
    prompt: list[int]


@dataclass(frozen=True)
class Trace:
    spec: dict
    adapters: list[tuple[str, int]]  # (name, rank)
    requests: list[TraceRequest]


def read_trace(path: Path) -> Trace:
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        raise TraceFileError(f"{path}: empty file")
    header = json.loads(lines[0])
    if header.get("type") != "trace" or header.get("version") != TRACE_VERSION:
        raise TraceFileError(f"{path}:1: expected a trace header of version {TRACE_VERSION}")
    adapters = [(a["name"], int(a["rank"])) for a in header["adapters"]]
    known = {name for name, _ in adapters}
    requests = []
    for number, line in enumerate(lines[1:], start=2):
        row = json.loads(line)
        if row.get("type") != "request":
            raise TraceFileError(f"{path}:{number}: expected a request")
        if row["adapter"] is not None and row["adapter"] not in known:
            raise TraceFileError(f"{path}:{number}: adapter {row['adapter']} not in the header")
        if len(row["prompt"]) != row["inputLen"]:
            raise TraceFileError(f"{path}:{number}: prompt length differs from inputLen")
        requests.append(
            TraceRequest(
                row["id"],
                row["arrivalS"],
                row["adapter"],
                row["inputLen"],
                row["outputLen"],
                row["prompt"],
            )
        )
    return Trace(header["spec"], adapters, requests)
