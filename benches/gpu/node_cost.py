"""What one graph node costs MLX's host side, by kind of primitive.

Builds chains of N nodes of one kind on a [1, D] row (a decode step's shape), hands each
chain to MLX with `mx.async_eval` and then waits for it, and prints per node: the time
`async_eval` took (MLX's walk and, on CUDA, the encoding of every kernel: what our bench
calls "handing it to MLX") and the wall time until the results were ready.

    python3 benches/gpu/node_cost.py [--nodes 200] [--rounds 30] [--dim 2048]

Run it under different MLX_MAX_OPS_PER_BUFFER values to see what a commit costs.
"""

import argparse
import os
import time

import mlx.core as mx

COPY = """
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { out[i] = static_cast<T>(static_cast<float>(x[i]) * 0.5f + 1.0f); }
"""


def chains(d):
    """name -> (setup, one node) for a bf16 row of d values."""
    key = mx.random.key(0)
    w = (mx.random.normal((d, d), key=key) * 0.02).astype(mx.bfloat16)
    wq, sc, bi = mx.quantize(w, group_size=64, bits=4)
    nw = mx.ones((d,), dtype=mx.bfloat16)
    kernel = mx.fast.cuda_kernel("node_copy", ["x"], ["out"], COPY) if mx.cuda.is_available() else None

    def custom(y):
        return kernel(
            inputs=[y],
            template=[("T", mx.bfloat16), ("n", d)],
            grid=((d + 255) // 256 * 256, 1, 1),
            threadgroup=(256, 1, 1),
            output_shapes=[y.shape],
            output_dtypes=[y.dtype],
        )[0]

    glu = mx.compile(lambda y: y * mx.sigmoid(y) * 0.5)
    kinds = {
        "add": lambda y: y + 1,
        "rms_norm": lambda y: mx.fast.rms_norm(y, nw, 1e-6),
        "compiled (3 ops)": glu,
        "matmul [1,D]x[D,D]": lambda y: y @ w.T,
        "quantized_matmul 4-bit": lambda y: mx.quantized_matmul(y, wq, sc, bi, group_size=64, bits=4),
    }
    if kernel is not None:
        kinds["custom kernel"] = custom
    return kinds


def measure(step, d, nodes, rounds):
    x = mx.random.normal((1, d)).astype(mx.bfloat16)
    mx.eval(x)
    hand, wall = [], []
    for r in range(rounds + 3):
        y = x
        for _ in range(nodes):
            y = step(y)
        t0 = time.perf_counter()
        mx.async_eval(y)
        t1 = time.perf_counter()
        mx.eval(y)
        t2 = time.perf_counter()
        if r >= 3:
            hand.append(t1 - t0)
            wall.append(t2 - t0)
    hand.sort()
    wall.sort()
    mid = len(hand) // 2
    return hand[mid] / nodes * 1e6, wall[mid] / nodes * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--dim", type=int, default=2048)
    a = p.parse_args()
    dev = mx.default_device()
    info = mx.device_info() if hasattr(mx, "device_info") else {}
    name = info.get("device_name", "")
    print(f"MLX {mx.__version__}, {dev} {name}; MLX_MAX_OPS_PER_BUFFER={os.environ.get('MLX_MAX_OPS_PER_BUFFER', 'unset')}")
    print(f"{a.nodes} nodes per chain, [1, {a.dim}] bf16, median of {a.rounds} rounds; us per node")
    print(f"{'kind':<26}{'async_eval':>12}{'wall':>10}")
    for kind, step in chains(a.dim).items():
        h, w = measure(step, a.dim, a.nodes, a.rounds)
        print(f"{kind:<26}{h:>12.2f}{w:>10.2f}")


if __name__ == "__main__":
    main()
