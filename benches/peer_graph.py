"""Python peer of examples/bench_graph.rs: the cost of building and evaluating graphs of
many small element-wise ops with Python MLX.

Builds, for each chain length N and shape, the chain x -> x*a -> x+b -> x^2 -> sqrt(x)
-> x*a ... (N ops), times building the graph and evaluating it separately (warm-up runs
first, then the median of the timed runs) and prints one JSON object on stdout:

    {"mlx_version": "...", "device": "...", "results": [
        {"n": 10, "shape": [16], "build_us": 1.2, "eval_us": 3.4,
         "build_samples": [...], "eval_samples": [...]}, ...]}

(medians and every timed sample, in microseconds).

Run by the Rust program with the same arguments; can be run alone too:

    python3 benches/peer_graph.py --lengths 10,100,1000 --shapes 16,256x256 --reps 21
"""
import argparse
import json
import statistics
import time

import mlx.core as mx


def chain(x, n, a, b):
    for i in range(n):
        k = i % 4
        if k == 0:
            x = mx.multiply(x, a)
        elif k == 1:
            x = mx.add(x, b)
        elif k == 2:
            x = mx.square(x)
        else:
            x = mx.sqrt(x)
    return x


def measure(n, shape, reps, warmup):
    a = mx.array(0.999, dtype=mx.float32)
    b = mx.array(0.001, dtype=mx.float32)
    x0 = mx.full(shape, 0.5, dtype=mx.float32)
    mx.eval(x0, a, b)
    builds, evals = [], []
    for r in range(warmup + reps):
        t0 = time.perf_counter_ns()
        y = chain(x0, n, a, b)
        t1 = time.perf_counter_ns()
        mx.eval(y)
        t2 = time.perf_counter_ns()
        if r >= warmup:
            builds.append((t1 - t0) / 1e3)
            evals.append((t2 - t1) / 1e3)
        del y
    return builds, evals


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lengths", default="10,100,1000")
    p.add_argument("--shapes", default="16,256x256")
    p.add_argument("--reps", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", choices=["cpu", "gpu"], default=None)
    args = p.parse_args()
    if args.device:
        mx.set_default_device(mx.cpu if args.device == "cpu" else mx.gpu)
    results = []
    for shape_s in args.shapes.split(","):
        shape = [int(d) for d in shape_s.split("x")]
        for n in (int(v) for v in args.lengths.split(",")):
            builds, evals = measure(n, shape, args.reps, args.warmup)
            results.append({"n": n, "shape": shape,
                            "build_us": statistics.median(builds),
                            "eval_us": statistics.median(evals),
                            "build_samples": builds, "eval_samples": evals})
    print(json.dumps({"mlx_version": mx.__version__, "device": str(mx.default_device()),
                      "results": results}))


if __name__ == "__main__":
    main()
