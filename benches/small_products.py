"""The products of one decode step of Qwen 3.5 2B at M rows, timed in Python MLX.

Each "step" multiplies an [M, K] bf16 input by every weight of the 2B's 24 layers and its
head (97 products, 3.81 GB at scale 1), then evaluates; the table gives ms per step,
evaluated step by step (sync) and pipelined (the next step handed over before the last is
read). Ways (comma-separated): mm (x @ W.T: MLX's GEMV for one row, cuBLASLt for more on
CUDA), gmm (MLX's gather_mm with a constant index), bgemv (a batch of one-row GEMVs),
rows (one GEMV per row), gmm_fresh (gather_mm with a new host-made index per product,
as session 18's model path made it for its uncompiled products), q4 (4-bit
quantized_matmul), f32. A small scale (0.125) leaves mostly the host's cost per product. Used on the GPU machine in session 19:

    python3 benches/small_products.py SCALE WAYS [ROWS]    # e.g. 1 mm,gmm,q4 1,2,4,16
"""
import sys, time, mlx.core as mx
if mx.is_available(mx.gpu): mx.set_default_device(mx.gpu)
H, I, V = 2048, 6144, 248320
shapes = []
for l in range(24):
    if l % 4 == 3: shapes += [(5120, H), (H, 4096)]
    else: shapes += [(8224, H), (H, H)]
    shapes += [(2 * I, H), (H, I)]
shapes.append((V, H))
scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
shapes = [(max(64, int(n * scale)) // 64 * 64, max(64, int(k * scale)) // 64 * 64) for n, k in shapes]
W = [mx.random.normal((n, k)).astype(mx.bfloat16) * 0.02 for n, k in shapes]
mx.eval(W)
Q = None
I0 = mx.array([0], mx.uint32)
def step(M, how):
    xs = {}
    outs = []
    for w in (Q if how == "q4" else W):
        k = w[0].shape[1] * 8 if how == "q4" else w.shape[1]
        if k not in xs: xs[k] = mx.ones((M, k), mx.bfloat16)
        x = xs[k]
        if how == "mm": y = x @ w.T
        elif how == "rows": y = mx.concatenate([x[i:i+1] @ w.T for i in range(M)], 0)
        elif how == "q4": y = mx.quantized_matmul(x, *w, transpose=True, group_size=64, bits=4)
        elif how == "gmm": y = mx.gather_mm(x[None], w.T[None], lhs_indices=I0, rhs_indices=I0)
        elif how == "gmm_fresh":
            i = mx.array([0], mx.uint32)
            y = mx.gather_mm(x[None], w.T[None], lhs_indices=i, rhs_indices=i)
        elif how == "bgemv": y = mx.stack([x, x], 1)[:, :1, :] @ w.T
        elif how == "f32": y = (x.astype(mx.float32) @ w.T.astype(mx.float32))
        outs.append(y.sum())
    return mx.stack(outs).sum()
def bench(M, how, steps=40):
    for _ in range(3): mx.eval(step(M, how))
    t = time.perf_counter()
    for _ in range(steps): mx.eval(step(M, how))
    sync = (time.perf_counter() - t) * 1e3 / steps
    prev = None
    t = time.perf_counter()
    for _ in range(steps):
        y = step(M, how); mx.async_eval(y)
        if prev is not None: prev.item()
        prev = y
    prev.item()
    pipe = (time.perf_counter() - t) * 1e3 / steps
    return sync, pipe
hows = sys.argv[2].split(",") if len(sys.argv) > 2 else ["mm"]
if "q4" in hows:
    Q = [mx.quantize(w, group_size=64, bits=4) for w in W]; mx.eval(Q)
print(f"scale {scale}: {len(W)} products, {sum(n*k for n,k in shapes)*2/1e9:.2f} GB bf16")
print("| M | " + " | ".join(f"{h} sync / pipe ms" for h in hows) + " |")
for M in [int(m) for m in (sys.argv[3] if len(sys.argv) > 3 else "1,2,4,8,16,32").split(",")]:
    row = []
    for h in hows:
        if h == "rows" and M > 8: row.append("-"); continue
        s, p = bench(M, h); row.append(f"{s:.2f} / {p:.2f}")
    print(f"| {M} | " + " | ".join(row) + " |", flush=True)
