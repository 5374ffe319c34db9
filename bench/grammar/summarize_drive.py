"""Summarize results/drive_*.json: outcomes, validity, and the kinds of invalid outputs."""

import collections
import glob
import json
import pathlib
import re

for f in sorted(glob.glob("results/drive_*.json")):
    d = json.loads(pathlib.Path(f).read_text())
    c = collections.Counter()
    for b in d["bad"]:
        e = " | ".join(b.get("errors") or [b.get("why")])
        if re.search(r":60", e) and ("time" in e or "any of" in e or "date-time" in e):
            k = "leap second :60 in time/date-time"
        elif "02-29" in e or "02-30" in e or "02-31" in e or re.search(r"-(04|06|09|11)-31", e):
            k = "impossible calendar day (Feb 29/30/31 or 31st of a 30-day month)"
        elif "0000-" in e:
            k = "year 0000"
        elif (
            "ipv4" in e or re.search(r"'(\d{1,3}\.){3}\d{1,3}'", e) and re.search(r"(^|[.'])0\d", e)
        ):
            k = "ipv4 with leading zeros"
        elif "UnicodeDecodeError" in e:
            k = "invalid UTF-8 (surrogate code point bytes)"
        elif "control character" in e:
            k = "raw control character in string (invalid JSON)"
        else:
            k = e[:90]
        c[k] += 1
    fu, out = d["fill_us"], d["outcomes"]
    print(
        f"{d['engine']:10s} {d['tokenizer']:9s} stop={out['stop']} cut={out['length']} "
        f"refused={out['accept-refused']} empty={out['empty-mask']} valid={d['valid']} "
        f"invalid={d['invalid']} ({100 * d['valid_fraction']:.2f}%) fill_us p50={fu['p50']:.1f} "
        f"p99={fu['p99']:.1f} max={fu['max']:.0f} accept_us p50={d['accept_us']['p50']:.1f}"
    )
    for k, v in c.most_common():
        print(f"      {v:3d}  {k}")
