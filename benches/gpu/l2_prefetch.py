"""Can a latency-bound kernel pull the next product's weights into L2 for it?

A decode step alternates MLX's GEMVs (memory-bound) with small kernels that leave the
memory idle (the DeltaNet decode, attention, norms: ~740 us of an H100's 2.36 ms step).
This measures, for one weight [N, K] (bf16), a chain of ROUNDS pairs

    x = pre(x, y, w)      # a custom kernel: block 0 copies x and waits SPIN us; with
                          # --mode lines/bulk, P other blocks issue L2 prefetches of w
    y = x @ w.T           # MLX's GEMV

and prints the time a pair takes with and without the prefetch, and without the GEMV
(the pre kernel alone): what the GEMV costs after each.

    python3 benches/gpu/l2_prefetch.py [--rounds 200] [--repeat 5]
"""

import argparse
import time

import mlx.core as mx

PRE = """
    const int tid = threadIdx.x;
    if (blockIdx.x == 0) {
      for (int i = tid; i < K; i += blockDim.x) out[i] = x[i];
      if (tid == 0 && SPIN_NS > 0) {
        unsigned long long t0, t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
        do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < SPIN_NS);
      }
      __syncthreads();
      if (tid == 0) out[0] = out[0] + y[0] * static_cast<T>(0.0f);
    } else if (MODE != 0) {
      const char* p = reinterpret_cast<const char*>(w);
      const unsigned long long bytes = (unsigned long long)LIMIT;
      const unsigned long long workers = (unsigned long long)(gridDim.x - 1) * blockDim.x;
      const unsigned long long me = (unsigned long long)(blockIdx.x - 1) * blockDim.x + tid;
      if (MODE == 1) {
        for (unsigned long long off = me * 128ull; off < bytes; off += workers * 128ull) {
          asm volatile("prefetch.global.L2 [%0];" :: "l"(p + off));
        }
      } else {
        for (unsigned long long off = me * 4096ull; off < bytes; off += workers * 4096ull) {
          unsigned int n = (unsigned int)min(4096ull, bytes - off);
          asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" :: "l"(p + off), "r"(n) : "memory");
        }
      }
    }
"""


def run(n, k, mode, spin_us, frac, rounds, repeat, blocks, gemv=True):
    key = mx.random.key(0)
    w = (mx.random.normal((n, k), key=key) * 0.02).astype(mx.bfloat16)
    x0 = mx.random.normal((1, k)).astype(mx.bfloat16)
    y0 = mx.zeros((1, n), dtype=mx.bfloat16)
    mx.eval(w, x0, y0)
    kern = mx.fast.cuda_kernel("l2_pre", ["x", "y", "w"], ["out"], PRE)
    limit = int(n * k * 2 * frac) // 16 * 16

    def pre(x, y):
        return kern(
            inputs=[x, y, w],
            template=[("T", mx.bfloat16), ("K", k), ("MODE", mode), ("SPIN_NS", int(spin_us * 1000)),
                      ("LIMIT", limit)],
            grid=(256 * (1 + (blocks if mode else 0)), 1, 1),
            threadgroup=(256, 1, 1),
            output_shapes=[x.shape],
            output_dtypes=[x.dtype],
        )[0]

    times = []
    for r in range(repeat + 1):
        x, y = x0, y0
        for _ in range(rounds):
            x = pre(x, y)
            y = x @ w.T if gemv else x[:, :1]
        t = time.perf_counter()
        mx.eval(x, y)
        mx.synchronize()
        if r:
            times.append((time.perf_counter() - t) / rounds * 1e6)
    return min(times), sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=132)
    a = ap.parse_args()
    shapes = [(2048, 2048, "8 MB (out_proj)"), (2048, 6144, "25 MB (down)"), (12288, 2048, "50 MB (gate_up)")]
    print(f"{mx.cuda.is_available() and 'cuda'}; us per pair (min / median of {a.repeat} chains of {a.rounds})")
    print(f"{'weight':18} {'spin us':>7} {'mode':>6} {'frac':>5} {'pre alone':>14} {'pre + gemv':>14} {'gemv share':>10}")
    for n, k, name in shapes:
        for spin in (0, 5, 15):
            for mode, frac in ((0, 1.0), (1, 1.0), (2, 1.0), (1, 0.5), (2, 0.5)):
                if n * k * 2 < 20e6 and frac < 1:
                    continue
                alone = run(n, k, mode, spin, frac, a.rounds, a.repeat, a.blocks, gemv=False)
                both = run(n, k, mode, spin, frac, a.rounds, a.repeat, a.blocks)
                print(f"{name:18} {spin:7} {['none', 'lines', 'bulk'][mode]:>6} {frac:5.2f} "
                      f"{alone[0]:6.2f} / {alone[1]:6.2f} {both[0]:6.2f} / {both[1]:6.2f} {both[0] - alone[0]:10.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
