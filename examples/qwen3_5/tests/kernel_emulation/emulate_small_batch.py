#!/usr/bin/env python3
"""Runs the CUDA small-batch product kernel (mlx-lm/kernels/small_batch_gemm.cu.inc,
launched by mlx-lm/src/kernels/small_batch.rs) on the CPU.

As emulate_attention.py: the source is assembled as MLX 0.32.2's CUDA backend assembles a
custom kernel (header order, signature from the input dtypes, `x_shape` / `w_shape` as the
body uses them, template constants), compiled with the host C++ compiler against
shim_cuda.h (a block runs all its threads at once, a warp is 32 of them, lane exchanges
are barrier-synchronised), launched over the grid small_batch.rs asks for (its
ROWS_PER_BLOCK, COLS_PER_WARP and WARPS are read from there), under AddressSanitizer
(unless GDN_EMUL_NO_ASAN is set), the output pre-filled with NaN (an element never
written shows up).

Checked, float32 and bfloat16, for batches of 1 to 17 rows (one row group, a partial one,
several), inner sizes that are and are not a multiple of one warp's stride, and output
columns that do not fill the last warp or block:
  * against a float64 NumPy product of the same (rounded) inputs, to float32's error
    bound for the sum (float32) or one rounding of bfloat16 (bfloat16);
  * bit for bit, each row of a batch against the same row in a batch of one, and in a
    batch of other rows: a row's result does not depend on the rest of the batch.

Usage: python3 emulate_small_batch.py [--keep DIR]
Exit status 0 when every case matches.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from emulate import CPP_IO, HERE, compile_cpp, bf16_round, read

RS = os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels", "small_batch.rs")
_RS_SRC = open(RS).read()


def rs_const(name):
    m = re.search(rf"pub const {name}: i32 = (\d+);", _RS_SRC)
    if not m:
        raise SystemExit(f"{name} not found in {RS}")
    return int(m.group(1))


R = rs_const("ROWS_PER_BLOCK")
C = rs_const("COLS_PER_WARP")
WARPS = rs_const("WARPS")
TYPES = {"float32": "float", "bfloat16": "__nv_bfloat16"}


def source(act):
    body = read("small_batch_gemm.cu.inc")
    t = TYPES[act]
    src = '#include "shim_cuda.h"\n#include <cstdio>\n#include <string>\n'
    src += read("cuda_header.cuh") + read("gdn_common.h")
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    src += "__global__ void small_batch_gemm(\n"
    for name in ("x", "w"):
        src += f"    const {t}* {name},\n"
        if name + "_shape" in body:
            src += f"    const __grid_constant__ Shape {name}_shape,\n"
    src += f"    {t}* out) {{\n"
    src += f"  using T = {t};\n  constexpr int R = {R};\n  constexpr int C = {C};\n"
    src += f"  constexpr int WARPS = {WARPS};\n\n"
    src += body + "\n}\n\n} // namespace mlx::core::cu\n\n"
    src += CPP_IO + """int main(int argc, char** argv) {
  const char* dir = argv[1];
  const int M = std::atoi(argv[2]), N = std::atoi(argv[3]), K = std::atoi(argv[4]);
"""
    src += f"""  auto x = load<{t}>(dir, "x", (size_t)M * K);
  auto w = load<{t}>(dir, "w", (size_t)N * K);
  std::vector<{t}> out((size_t)M * N, {t}(NAN));
  Shape x_shape{{}}, w_shape{{}};
  x_shape[0] = M; x_shape[1] = K; w_shape[0] = N; w_shape[1] = K;
  const unsigned gy = (M + {R} - 1) / {R}, gz = (N + {WARPS * C} - 1) / {WARPS * C};
  for (unsigned z = 0; z < gz; ++z)
    for (unsigned y = 0; y < gy; ++y)
      emul::run_block({32 * WARPS}, [&](int t) {{
        threadIdx = dim3{{(unsigned)t, 0, 0}};
        blockIdx = dim3{{0, y, z}};
        blockDim = dim3{{{32 * WARPS}, 1, 1}};
        mlx::core::cu::small_batch_gemm(x.data(), x_shape, w.data(), w_shape, out.data());
      }});
  save(dir, "out", out);
  return 0;
}}
"""
    return src


def build(act, workdir):
    """Compiles the kernel for `act`; the executable's path, or an error string."""
    cpp = os.path.join(workdir, f"small_batch_{act}.cpp")
    with open(cpp, "w") as f:
        f.write(source(act))
    exe = cpp[:-4]
    err = compile_cpp(cpp, exe)
    if err:
        return None, f"does not compile ({cpp}):\n{err[-4000:]}"
    return exe, None


def launch(exe, x, w, workdir, tag):
    case_dir = os.path.join(workdir, tag)
    os.makedirs(case_dir, exist_ok=True)
    np.asarray(x, np.float32).tofile(os.path.join(case_dir, "x.bin"))
    np.asarray(w, np.float32).tofile(os.path.join(case_dir, "w.bin"))
    (m, k), n = x.shape, w.shape[0]
    r = subprocess.run([exe, case_dir, str(m), str(n), str(k)], capture_output=True, text=True)
    if r.returncode != 0:
        return f"run failed: {r.stderr[-3000:]}"
    return np.fromfile(os.path.join(case_dir, "out.bin"), np.float32).reshape(m, n)


def rounded(x, act):
    x = np.asarray(x, np.float32)
    return bf16_round(x) if act == "bfloat16" else x


def check(act, exe, m, n, k, workdir, seed):
    rng = np.random.default_rng(seed)
    x = rounded(rng.standard_normal((m, k)), act)
    w = rounded(rng.standard_normal((n, k)) / np.sqrt(k), act)
    tag = f"{act}-m{m}-n{n}-k{k}"
    got = launch(exe, x, w, workdir, tag)
    if isinstance(got, str):
        return f"{tag}: {got}"
    if np.isnan(got).any():
        i = np.argwhere(np.isnan(got))[0]
        return f"{tag}: element {tuple(i)} never written"
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    bound = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64).T
    if act == "float32":
        tol = 2.0 * k * np.finfo(np.float32).eps * bound
    else:
        # The float32 sum (as above), then one rounding to bfloat16.
        tol = 2.0 * k * np.finfo(np.float32).eps * bound + 2.0 ** -8 * np.abs(exact)
    err = np.abs(got - exact)
    if (err > tol).any():
        i = tuple(np.argwhere(err > tol)[0])
        return f"{tag}: element {i} is {got[i]}, expected {exact[i]} (tolerance {tol[i]})"
    # Each row alone, and the rows in reverse order (other partners, other row groups).
    for r in sorted({0, m - 1, m // 2}):
        alone = launch(exe, x[r:r + 1], w, workdir, f"{tag}-row{r}")
        if isinstance(alone, str):
            return f"{tag} row {r} alone: {alone}"
        if not np.array_equal(alone[0].view(np.uint32), got[r].view(np.uint32)):
            return f"{tag}: row {r} alone differs from the row in the batch"
    flipped = launch(exe, x[::-1].copy(), w, workdir, f"{tag}-flipped")
    if isinstance(flipped, str):
        return f"{tag} flipped: {flipped}"
    if not np.array_equal(flipped[::-1].view(np.uint32), got.view(np.uint32)):
        return f"{tag}: the rows in reverse order give other values"
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keep", help="keep the generated sources and data in this folder")
    args = p.parse_args()
    workdir = args.keep or tempfile.mkdtemp(prefix="small_batch_emul_")
    os.makedirs(workdir, exist_ok=True)
    failures, cases = [], 0
    # (rows, output columns, inner size): K = 520 is not a multiple of a warp's stride
    # (32 lanes × 8 bfloat16 values), N = 13 fills neither the last warp nor the block.
    shapes = [(2, 16, 256), (3, 13, 520), (8, 24, 64), (9, 13, 264), (16, 8, 128),
              (17, 19, 136)]
    for act in ("float32", "bfloat16"):
        exe, err = build(act, workdir)
        if err:
            failures.append(f"{act}: {err}")
            cases += len(shapes)
            continue
        for i, (m, n, k) in enumerate(shapes):
            cases += 1
            e = check(act, exe, m, n, k, workdir, seed=100 + i)
            if e:
                failures.append(e)
    for f in failures:
        print("FAIL", f)
    print(f"{cases - len(failures)} of {cases} cases match (R={R}, C={C}, WARPS={WARPS})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
