"""Table of results/batch.log: per configuration, the fill p50/p90/p99 (ms) of each repeat."""

import collections
import json
import pathlib

rows = collections.defaultdict(list)
for line in pathlib.Path("results/batch.log").read_text().splitlines():
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    key = (d["engine"], d["threads"], d["mode"], d["cold"])
    rows[key].append(d)
print(
    "| engine | mode | threads | rows start | fill p50 ms (3 reps) | fill p90 ms | fill p99 ms"
    " | mean ms | accept 64 rows p50 ms | loadavg |"
)
print("|---|---|---|---|---|---|---|---|---|---|")


def fills(ds, q):
    return " / ".join(f"{d['fill_us'][q] / 1e3:.2f}" for d in ds)


for k, ds in rows.items():
    start = "cold (fresh compile)" if k[3] else "warm (shared compile)"
    print(
        f"| {k[0]} | {k[2]} | {k[1]} | {start} | {fills(ds, 'p50')} | {fills(ds, 'p90')} "
        f"| {fills(ds, 'p99')} | {fills(ds, 'mean')} | "
        + " / ".join(f"{d['accept_all_rows_us']['p50'] / 1e3:.2f}" for d in ds)
        + " | "
        + " / ".join(f"{d['loadavg']:.1f}" for d in ds)
        + " |"
    )
