"""GPU time per decode step, by kernel, from an Nsight Compute CSV.

Reads what `ncu --csv --metrics gpu__time_duration.sum` printed for a generation (see
kernel_times.sh), cuts the kernels into steps at each sampling kernel (the greedy argmax:
`--step-end`), and prints for the last `--steps` whole steps: each kernel's launches per
step, µs per step, µs per launch and share of the step, largest first, and the step's
total against the bandwidth floor of its weights when `--weights-gb` and `--gbps` are given.

    python3 benches/gpu/kernel_times.py kernels.csv [--steps 8] [--step-end arg_reduce]
        [--weights-gb 3.764 --gbps 4800] [--json OUT]
"""

import argparse
import csv
import json
import re
import sys
from collections import defaultdict

UNITS = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}


def rows(path):
    """(kernel name, µs) per launch in launch order."""
    with open(path, newline="") as f:
        lines = [line for line in f if re.match(r'"(ID|\d+)",', line)]
    if not lines or not lines[0].startswith('"ID"'):
        sys.exit(f"{path}: no ncu CSV header (a line starting with \"ID\") found")
    out = []
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        unit = r.get("Metric Unit", "")
        if unit not in UNITS:
            sys.exit(f"{path}: unknown time unit {unit!r} (kernel {r.get('Kernel Name')})")
        value = float(r["Metric Value"].replace(",", ""))
        name = f"{short(r['Kernel Name'])} {r.get('Grid Size', '')}".strip()
        out.append((int(r["ID"]), name, value * UNITS[unit]))
    out.sort()
    return [(name, us) for _, name, us in out]


def short(name):
    """A kernel's name without its arguments, its `void`, and a custom kernel's hash (the
    grid size is added to it, so that one kernel at two shapes makes two rows)."""
    name = re.sub(r"^void\s+", "", name.split("(")[0])
    name = re.sub(r"_[0-9a-f]{16}$", "", name)
    base = name.split("<")[0]
    return base if len(name) > 90 else name


def steps(launches, end):
    """Launches cut after each one whose name matches `end`; the unfinished tail dropped."""
    pattern = re.compile(end)
    cut, current = [], []
    for name, us in launches:
        current.append((name, us))
        if pattern.search(name):
            cut.append(current)
            current = []
    return cut


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("csv")
    p.add_argument("--steps", type=int, default=8, help="whole steps to average (the last ones)")
    p.add_argument("--step-end", default="arg_reduce", help="regex of the kernel that ends a step")
    p.add_argument("--weights-gb", type=float, help="GB of weights a step reads")
    p.add_argument("--gbps", type=float, help="the card's memory bandwidth, GB/s")
    p.add_argument("--json")
    a = p.parse_args()
    launches = rows(a.csv)
    cut = steps(launches, a.step_end)
    # The first cut holds the load and the prefill; decode steps follow.
    decode = cut[1:]
    if len(decode) < 1:
        sys.exit(f"{a.csv}: {len(launches)} launches, {len(cut)} steps ending in /{a.step_end}/: no decode step")
    last = decode[-a.steps:]
    n = len(last)
    sizes = sorted({len(s) for s in last})
    per = defaultdict(lambda: [0, 0.0])
    for s in last:
        for name, us in s:
            per[name][0] += 1
            per[name][1] += us
    total = sum(v[1] for v in per.values()) / n
    table = sorted(per.items(), key=lambda kv: -kv[1][1])
    print(f"{len(launches)} launches, {len(decode)} decode steps; the last {n} averaged "
          f"({'/'.join(map(str, sizes))} kernels a step)")
    print(f"{'kernel and grid':<72}{'per step':>9}{'us/step':>10}{'us each':>9}{'share':>7}")
    rows_out = []
    for name, (count, us) in table:
        each = us / count
        print(f"{name[:71]:<72}{count / n:>9.1f}{us / n:>10.1f}{each:>9.2f}{100 * us / n / total:>6.1f}%")
        rows_out.append({"kernel": name, "per_step": count / n, "us_per_step": us / n, "us_each": each})
    print(f"{'step total':<72}{sum(v[0] for v in per.values()) / n:>9.1f}{total:>10.1f}")
    floor = None
    if a.weights_gb and a.gbps:
        floor = a.weights_gb / a.gbps * 1e6
        print(f"bandwidth floor: {a.weights_gb} GB at {a.gbps} GB/s = {floor:.1f} us "
              f"(the kernels take {total / floor:.2f}x; {1e6 / total:.0f} tok/s if nothing else ran)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"steps": n, "kernels": rows_out, "step_us": total, "floor_us": floor}, f, indent=1)


if __name__ == "__main__":
    main()
