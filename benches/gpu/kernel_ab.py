"""GPU time per launch of the kernels an A/B changed, from Nsight Compute CSVs.

Reads what `ncu --csv --metrics gpu__time_duration.sum` printed for each build (see
kernel_ab.sh: one CSV per binary, named after it) and prints one row per kernel and grid
with each build's launches, mean and fastest µs per launch side by side, so that two
builds of a kernel compare on the GPU's own clock, without the host's noise.

    python3 benches/gpu/kernel_ab.py OUT/qwen3_5_main.csv OUT/qwen3_5.csv [--json OUT.json]
        [--steps N | --step-kernel REGEX]

With `--steps N` (the profiled launches cover N whole decode steps: the count passed to
ncu is N times the matching launches of a step) each cell is per step instead: launches,
µs a step, and its share of the matched kernels' step, with a total row; the kernels
are sorted by the first build's time a step, so the table says where a step's GPU time
goes. `--step-kernel REGEX` counts each build's steps as its launches of the kernels
whose names match (one a step: the greedy argmax), for a profile of a whole decode
(kernel_ab.sh --decode).
"""

import argparse
import csv
import json
import os
import re
import sys
from collections import defaultdict

# ncu prints the unit it chose for the value: "ns" in 2025 releases, "nsecond" in older.
UNITS = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}


def short(name):
    """A kernel's name without its arguments, its `void`, its template arguments where
    long; a custom kernel's (MLX's `custom_kernel_NAME_TEMPLATEARGS_HASH`) as its NAME, so
    that two builds' rows meet where a change added a template argument."""
    name = re.sub(r"^void\s+", "", name.split("(")[0])
    m = re.match(r"(custom_kernel_[a-z0-9_]+?)_(bfloat16|float16|float32|half|float|int|uint|bool)", name)
    if m:
        return m.group(1)
    return name.split("<")[0] if len(name) > 90 else name


def launches(path):
    """{(kernel, grid): [µs, ...]} of one ncu CSV (lines before its header skipped)."""
    with open(path, newline="") as f:
        lines = [line for line in f if re.match(r'"(ID|\d+)",', line)]
    if not lines or not lines[0].startswith('"ID"'):
        sys.exit(f"{path}: no ncu CSV header (a line starting with \"ID\") found")
    out = defaultdict(list)
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        unit = r.get("Metric Unit", "")
        if unit not in UNITS:
            sys.exit(f"{path}: unknown time unit {unit!r} (kernel {r.get('Kernel Name')})")
        us = float(r["Metric Value"].replace(",", "")) * UNITS[unit]
        out[(short(r["Kernel Name"]), r.get("Grid Size", ""))].append(us)
    if not out:
        sys.exit(f"{path}: no gpu__time_duration.sum rows (did the kernel filter match?)")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("csv", nargs="+", help="one ncu CSV per build, named after it")
    p.add_argument("--json")
    p.add_argument("--steps", type=int, help="whole decode steps the launches cover")
    p.add_argument("--step-kernel", help="regex of a kernel launched once a step")
    a = p.parse_args()
    builds = [(os.path.basename(path).rsplit(".", 1)[0], launches(path)) for path in a.csv]
    keys = sorted({k for _, b in builds for k in b})
    if a.step_kernel:
        pattern = re.compile(a.step_kernel)
        steps = {name: sum(len(v) for (k, _), v in b.items() if pattern.search(k))
                 for name, b in builds}
        for name, n in steps.items():
            if n == 0:
                sys.exit(f"{name}: no launch matches /{a.step_kernel}/: pass --steps N")
        print("steps: " + ", ".join(f"{name} {n}" for name, n in steps.items()))
        per_step(builds, keys, steps, a.json)
        return
    if a.steps:
        per_step(builds, keys, {name: a.steps for name, _ in builds}, a.json)
        return

    def cell(name, v):
        mean, low = sum(v) / len(v), min(v)
        return (f"{len(v):>6} · {mean:7.2f} / {low:7.2f}",
                {"launches": len(v), "mean_us": mean, "min_us": low})

    table = print_table(builds, keys, "n · mean / min us", cell, 28)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(table, f, indent=1)


def print_table(builds, keys, subtitle, cell, width):
    """One row per kernel and grid, a column per build: `cell(build, µs of its launches)`
    gives the text and the JSON of a build's cell. Returns the rows as JSON."""
    print(f"{'kernel and grid':<64}" + "".join(f"{name[:width - 2]:>{width}}" for name, _ in builds))
    print(f"{'':<64}" + "".join(f"{subtitle:>{width}}" for _ in builds))
    table = []
    for kernel, grid in keys:
        cells, row = [], {"kernel": kernel, "grid": grid}
        for name, b in builds:
            v = b.get((kernel, grid), [])
            text, data = cell(name, v) if v else ("-", None)
            if data is not None:
                row[name] = data
            cells.append(text)
        print(f"{(kernel[:50] + ' ' + grid):<64}" + "".join(f"{c:>{width}}" for c in cells))
        table.append(row)
    return table


def per_step(builds, keys, steps, json_path):
    """The table per decode step (`steps`: each build's count): launches, µs and share of
    each kernel, and the total."""
    totals = {name: sum(sum(v) for v in b.values()) / steps[name] for name, b in builds}
    first = builds[0][1]
    keys = sorted(keys, key=lambda k: -sum(first.get(k, [0.0])))

    def cell(name, v):
        n = steps[name]
        us = sum(v) / n
        share = 100 * us / totals[name] if totals[name] else 0.0
        return (f"{len(v) / n:6.1f} · {us:8.1f} · {share:5.1f}%",
                {"per_step": len(v) / n, "us_per_step": us})

    table = print_table(builds, keys, "per step · us · share", cell, 32)
    print(f"{'total of the matched kernels':<64}"
          + "".join(f"{'':>8}{totals[name]:8.1f} us a step{'':>6}" for name, _ in builds))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"steps": steps, "totals_us": totals, "kernels": table}, f, indent=1)


if __name__ == "__main__":
    main()
