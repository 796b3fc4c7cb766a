#!/usr/bin/env python3
"""Writes variants of the CUDA gated delta step kernel for `lm --ignored step_kernel_variants`.

The prefill of a prompt of up to `kernel_prefill_max` tokens runs each DeltaNet layer's
gated delta rule as one launch of the step kernel (mlx-lm/kernels/gated_delta_step.inc):
blocks of W warps (W value rows of one head, one row per warp) stage C tokens at a time
in shared memory. This script writes, into OUT_DIR, whole kernel sources (prologue +
body; first line `// WARPS_PER_BLOCK=W`, the block the test launches) that the GPU test times side by side on one 2B layer's shapes and compares with
the first file (the shipped kernel) in sort order:

  a_shipped.cu        the kernel as the model launches it
  w{W}_c{C}.cu        the same body with W warps per block and C tokens per round
  align16.cu          the shared arrays 16-byte aligned (vector loads in the walk)
  pair_sums*.cu       the walk's two lane sums in one butterfly (6 shuffles, not 10)
  z_diag_*.cu         diagnostics, wrong on purpose (their error column is not zero): no
                      lane sums in the walk, no global loads after the first round; what
                      each saves says where the time goes

Usage: python3 benches/gpu/step_variants.py OUT_DIR [--nvrtc]
(--nvrtc: also compile each source for sm_90 with NVRTC as MLX does, through
examples/qwen3_5/tests/kernel_emulation/nvrtc_check.py --step-source, and print registers
and spills)
Then on the GPU machine: STEP_VARIANTS=OUT_DIR lm-<hash> --ignored --nocapture step_kernel_variants
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join(HERE, "..", "..", "mlx-lm", "kernels")
KERNEL_RS = os.path.join(HERE, "..", "..", "mlx-lm", "src", "kernels", "gated_delta", "kernel.rs")


def read(name):
    with open(os.path.join(KERNELS, name)) as f:
        return f.read()


def replaced(text, old, new):
    out = text.replace(old, new)
    if out == text:
        raise SystemExit(f"the shipped kernel changed: {old!r} not found")
    return out


def nvrtc(out, names):
    """Compiles each source as MLX compiles the shipped step kernel (nvrtc_check.py)."""
    import subprocess
    check = os.path.join(HERE, "..", "..", "examples", "qwen3_5", "tests", "kernel_emulation",
                         "nvrtc_check.py")
    ok = True
    for name in names:
        run = subprocess.run([sys.executable, check, "--step-source", os.path.join(out, name)],
                             capture_output=True, text=True)
        print(f"{name}:\n{run.stdout.strip()}{run.stderr.strip()}")
        ok &= run.returncode == 0
    return ok


def main():
    args = [a for a in sys.argv[1:] if a != "--nvrtc"]
    if len(args) != 1:
        raise SystemExit(__doc__)
    out = args[0]
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"{out}: {e.strerror}")
    warps = int(re.search(r"pub const STEP_WARPS: i32 = (\d+);", read(KERNEL_RS)).group(1))
    body = read("cuda_prologue.inc") + read("gated_delta_step.inc")
    chunk_line = "constexpr int C = 2048 / Dk;"

    def source(w, chunk=None, text=body):
        if chunk is not None:
            text = replaced(text, chunk_line, f"constexpr int C = {chunk};")
        return f"// WARPS_PER_BLOCK={w}\n" + text

    files = {"a_shipped.cu": source(warps)}
    for w, chunk in ((4, 16), (4, 32), (8, 8), (8, 32), (16, 16)):
        files[f"w{w}_c{chunk}.cu"] = source(w, chunk)
    # Shared arrays 16-byte aligned: the walk's key, query and (g, beta, k . q) reads become
    # three 16-byte loads instead of eleven 4-byte ones (NVRTC's PTX, sm_90).
    files["align16.cu"] = source(warps, text=body.replace(
        "GDN_SHARED float", "__shared__ __align__(16) float"))
    # The walk's two lane sums in one butterfly: a first exchange over 16 lanes swaps
    # halves so that lanes 0-15 carry S k and lanes 16-31 S q, four more steps finish
    # both, and one broadcast hands S k to every lane: 6 shuffles a token instead of 10.
    pair = replaced(body, """    kv_mem = gdn_lane_sum(kv_mem);
    sq = gdn_lane_sum(sq);
""", """    {
      const bool hi = (lane & 16) != 0;
      float x = hi ? sq : kv_mem;
      x += __shfl_xor_sync(0xffffffffu, hi ? kv_mem : sq, 16);
      for (int off = 8; off > 0; off >>= 1) {
        x += __shfl_xor_sync(0xffffffffu, x, off);
      }
      kv_mem = __shfl_sync(0xffffffffu, x, 0);
      sq = x;  // S q on lanes 16-31
    }
""")
    pair = replaced(pair, "    if (lane == 0) {\n      y_s[c][w]", "    if (lane == 16) {\n      y_s[c][w]")
    files["pair_sums.cu"] = source(warps, text=pair)
    files["pair_sums_align16.cu"] = source(warps, text=pair.replace(
        "GDN_SHARED float", "__shared__ __align__(16) float"))
    no_sums = body
    for name in ("kv_mem", "sq"):
        no_sums = replaced(no_sums, f"{name} = gdn_lane_sum({name});", "")
    files["z_diag_no_lane_sums.cu"] = source(warps, text=no_sums)
    files["z_diag_no_loads.cu"] = source(
        warps, text=replaced(body, "if (c < C && t < T) {", "if (c < C && t < T && t0 < 0) {"))
    for name, text in files.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    print(f"{len(files)} kernel sources in {out}")
    if "--nvrtc" in sys.argv and not nvrtc(out, sorted(files)):
        raise SystemExit("a variant does not compile")


if __name__ == "__main__":
    main()
