#!/usr/bin/env python3
"""Runs the CUDA small-batch product kernel (mlx-lm/kernels/small_batch_gemm.cu.inc) on the CPU.

The kernel of mlx-lm/src/kernels/small_batch.rs (out = x · wt for 2 to 32 rows of x, on
tensor cores) is assembled as MLX 0.32.2's CUDA backend assembles a custom kernel (as in
emulate.py: signature from the inputs' dtypes with the shapes, strides and ndim the body
names, template constants, body), with shim_mma.h in place of small_batch_mma.cuh: the
tensor-core multiply over the emulated warp's register fragments, laid out as the PTX ISA
lays out mma.sync m16n8k16. Compiled with the host C++ compiler against shim_cuda.h (a
block runs all its threads at once, shared memory is shared by them, __syncthreads is a
barrier), under AddressSanitizer (unless GDN_EMUL_NO_ASAN is set), each input in a buffer
of exactly its own extent, the output pre-filled with NaN, launched over the grid
small_batch.rs asks for (its WARPS constant is read from there).

Checked, for bfloat16 and float16, rows 2 to 32 (1 to 4 tiles of 8, partly filled; the
kernel as compiled for 32 rows, as small_batch.rs launches it), K of
1 to 16 chunks of 32 (fewer and more than the warps), N of one and three blocks:
  * against NumPy (float64 products of the 16-bit inputs, rounded once);
  * the layouts the kernel meets: the weight as the transposed view of a stored [N, K]
    matrix (16-byte loads), as a row-major [K, N] matrix, with rows one value apart beyond
    K and at an odd offset (single loads); x row-major 2-D, [B, 1, K] 3-D, rows with padding between them, and the
    transposed view of a [K, rows] matrix, rows one value apart beyond K (misaligned: under
    UBSan's alignment check a 16-byte load there stops the run);
  * a row's result is bit for bit the same in a batch of 2 as in a batch of 32.

Usage: python3 emulate_small_batch.py [--keep DIR]
Exit status 0 when every case matches.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from emulate import HERE, bf16_round, compile_cpp, read

SMALL_BATCH_RS = os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels", "small_batch.rs")
_RS = open(SMALL_BATCH_RS).read()
WARPS = int(re.search(r"pub const WARPS: i32 = (\d+);", _RS).group(1))
# The kernel is compiled for the most rows it takes (MAX_ROWS / 8 tiles) and skips the
# tiles past each batch's rows.
NT = int(re.search(r"pub const MAX_ROWS: i32 = (\d+);", _RS).group(1)) // 8
TYPES = {"bfloat16": "__nv_bfloat16", "float16": "__half"}


def rnd(x, dtype):
    x = np.asarray(x, np.float32)
    return bf16_round(x) if dtype == "bfloat16" else x.astype(np.float16).astype(np.float32)


def source(dtype, nt):
    """The kernel as MLX writes it, and a main() that reads one launch's layout from the
    command line, loads the buffers, runs every block of the grid and saves the output."""
    body = read("small_batch_gemm.cu.inc")
    assert "wt_ndim" not in body
    t = TYPES[dtype]
    src = '#include "shim_mma.h"\n#include <cstdio>\n#include <cstdlib>\n#include <string>\n'
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    src += "__global__ void custom_kernel_small_batch_mma(\n"
    src += f"    const {t}* x,\n    const __grid_constant__ Shape x_shape,\n"
    src += "    const __grid_constant__ Strides x_strides,\n    const __grid_constant__ int x_ndim,\n"
    src += f"    const {t}* wt,\n    const __grid_constant__ Shape wt_shape,\n"
    src += f"    const __grid_constant__ Strides wt_strides,\n    {t}* out) {{\n"
    src += f"  using T = {t};\n  constexpr int NT = {nt};\n  constexpr int WARPS = {WARPS};\n\n"
    src += body + "\n}\n\n} // namespace mlx::core::cu\n\n"
    src += f"""using T = {t};
static std::vector<T> load(const std::string& path, size_t n) {{
  std::vector<float> f(n);
  FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp || std::fread(f.data(), 4, n, fp) != n) {{ std::perror(path.c_str()); std::exit(2); }}
  std::fclose(fp);
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<T>(f[i]);
  return v;
}}
// argv: dir, x_len, x_off, x_ndim, x_shape..., x_strides..., wt_len, wt_off, K, N, wt_strides (2), rows
int main(int, char** argv) {{
  std::string dir = argv[1];
  int a = 2;
  auto next = [&]() {{ return std::atoll(argv[a++]); }};
  size_t x_len = next(), x_off = next();
  int x_ndim = (int)next();
  Shape x_shape{{}};
  Strides x_strides{{}};
  for (int d = 0; d < x_ndim; ++d) x_shape[d] = (int32_t)next();
  for (int d = 0; d < x_ndim; ++d) x_strides[d] = next();
  size_t wt_len = next(), wt_off = next();
  Shape wt_shape{{}};
  Strides wt_strides{{}};
  wt_shape[0] = (int32_t)next();
  wt_shape[1] = (int32_t)next();
  wt_strides[0] = next();
  wt_strides[1] = next();
  long long rows = next();
  auto xbuf = load(dir + "/x.bin", x_len);
  auto wbuf = load(dir + "/wt.bin", wt_len);
  // Each input in an allocation of exactly its extent from its offset on (ASan sees any
  // read past it); the offset moves the start off 16-byte alignment.
  std::vector<T> xs(xbuf.begin() + x_off, xbuf.end());
  std::vector<T> ws(wbuf.begin() + wt_off, wbuf.end());
  std::vector<T> xa(xs.size() + x_off % 8), wa(ws.size() + wt_off % 8);
  T* xp = xa.data() + (x_off % 8);
  T* wp = wa.data() + (wt_off % 8);
  std::copy(xs.begin(), xs.end(), xp);
  std::copy(ws.begin(), ws.end(), wp);
  std::vector<T> o(rows * wt_shape[1], static_cast<T>(NAN));
  const unsigned blocks = wt_shape[1] / 16;
  for (unsigned bx = 0; bx < blocks; ++bx)
    emul::run_block({32 * WARPS}, [&](int t) {{
      threadIdx = dim3{{(unsigned)t, 0, 0}};
      blockIdx = dim3{{bx, 0, 0}};
      blockDim = dim3{{{32 * WARPS}, 1, 1}};
      mlx::core::cu::custom_kernel_small_batch_mma(xp, x_shape, x_strides, x_ndim, wp, wt_shape,
                                                   wt_strides, o.data());
    }});
  std::vector<float> f(o.size());
  for (size_t i = 0; i < o.size(); ++i) f[i] = static_cast<float>(o[i]);
  FILE* fp = std::fopen((dir + "/out.bin").c_str(), "wb");
  std::fwrite(f.data(), 4, f.size(), fp);
  std::fclose(fp);
  return 0;
}}
"""
    return src


def x_layout(kind, x):
    """(buffer, offset, shape, strides) holding the rows of x ([rows, K]) in layout `kind`."""
    rows, k = x.shape
    if kind == "rows":
        return x.ravel(), 0, [rows, k], [k, 1]
    if kind == "b1k":
        return x.ravel(), 0, [rows, 1, k], [k, k, 1]
    if kind == "padded":  # a slice of wider rows: row stride K + 8, still 16-byte runs
        buf = np.full((rows, k + 8), np.nan, np.float32)
        buf[:, :k] = x
        return buf.ravel(), 0, [rows, k], [k + 8, 1]
    if kind == "odd":  # rows one value apart beyond K: 16-byte runs misaligned, single loads
        buf = np.full((rows, k + 1), np.nan, np.float32)
        buf[:, :k] = x
        return buf.ravel(), 0, [rows, k], [k + 1, 1]
    if kind == "transposed":  # the transposed view of a [K, rows] matrix
        return np.ascontiguousarray(x.T).ravel(), 0, [rows, k], [1, rows]
    raise ValueError(kind)


def w_layout(kind, w):
    """(buffer, offset, strides of wt [K, N]) holding w ([N, K]) in layout `kind`."""
    n, k = w.shape
    if kind == "view":  # the transposed view of the stored [N, K] weight
        return w.ravel(), 0, [1, k]
    if kind == "rowmajor":  # a row-major [K, N] matrix
        return np.ascontiguousarray(w.T).ravel(), 0, [n, 1]
    if kind == "odd":  # the view of [N, K] rows one value apart beyond K (misaligned runs)
        buf = np.full((n, k + 1), np.nan, np.float32)
        buf[:, :k] = w
        return buf.ravel(), 0, [1, k + 1]
    if kind == "offset":  # the view, one element into its buffer
        return np.concatenate([[np.nan], w.ravel()]).astype(np.float32), 1, [1, k]
    raise ValueError(kind)


def run_case(exe, workdir, tag, x, w, xk, wk):
    rows, k = x.shape
    n = w.shape[0]
    xbuf, xoff, xshape, xstrides = x_layout(xk, x)
    wbuf, woff, wstrides = w_layout(wk, w)
    case = os.path.join(workdir, tag)
    os.makedirs(case, exist_ok=True)
    np.asarray(xbuf, np.float32).tofile(os.path.join(case, "x.bin"))
    np.asarray(wbuf, np.float32).tofile(os.path.join(case, "wt.bin"))
    args = [exe, case, len(xbuf), xoff, len(xshape), *xshape, *xstrides,
            len(wbuf), woff, k, n, *wstrides, rows]
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"exit {r.returncode}: {r.stderr[-2000:]}"
    return np.fromfile(os.path.join(case, "out.bin"), np.float32).reshape(rows, n), None


X_KINDS = ["rows", "b1k", "padded", "odd", "transposed"]
W_KINDS = ["view", "rowmajor", "odd", "offset"]
ROWS = [2, 5, 8, 9, 16, 23, 32]
SHAPES = [(32, 16), (96, 48), (256, 16), (512, 48)]  # (K, N)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="folder for the generated sources and binaries")
    args = ap.parse_args()
    workdir = args.keep or tempfile.mkdtemp(prefix="small-batch-emul-")
    os.makedirs(workdir, exist_ok=True)
    exes = {}
    for dtype in TYPES:
        cpp = os.path.join(workdir, f"sb_{dtype}.cpp")
        with open(cpp, "w") as f:
            f.write(source(dtype, NT))
        exe = cpp[:-4]
        err = compile_cpp(cpp, exe)
        if err:
            print(f"FAIL compile {dtype}:\n{err[-3000:]}")
            return 1
        exes[dtype] = exe
    all_ok = True
    count = 0
    rng = np.random.default_rng(7)
    for dtype in TYPES:
        ulp = 2.0 ** -8 if dtype == "bfloat16" else 2.0 ** -11
        for si, (k, n) in enumerate(SHAPES):
            x_all = rnd(rng.standard_normal((max(ROWS), k)), dtype)
            w = rnd(rng.standard_normal((n, k)), dtype)
            ref_all = x_all.astype(np.float64) @ w.astype(np.float64).T
            first = {}
            for ri, rows in enumerate(ROWS):
                # Every layout pair on the first shape, one pair per case elsewhere.
                if si == 0 and ri == 0:
                    pairs = [(a, b) for a in X_KINDS for b in W_KINDS]
                else:
                    j = si * len(ROWS) + ri
                    pairs = [(X_KINDS[j % len(X_KINDS)], W_KINDS[j % len(W_KINDS)])]
                for xk, wk in pairs:
                    count += 1
                    tag = f"{dtype}-k{k}-n{n}-r{rows}-{xk}-{wk}"
                    got, err = run_case(exes[dtype], workdir, tag, x_all[:rows], w, xk, wk)
                    if err:
                        print(f"FAIL {tag}: {err}")
                        all_ok = False
                        continue
                    ref = ref_all[:rows]
                    # One rounding of the float32 sum to the 16-bit type, plus the float32
                    # sum's own error over K terms.
                    tol = 1.01 * ulp * np.abs(ref) + 1e-6 * k * np.abs(x_all[:rows]).max() * np.abs(w).max()
                    bad = ~(np.abs(got - ref) <= tol)
                    if bad.any():
                        r, c = np.argwhere(bad)[0]
                        print(f"FAIL {tag}: {bad.sum()} of {bad.size} values off; "
                              f"[{r}, {c}] got {got[r, c]} want {ref[r, c]}")
                        all_ok = False
                        continue
                    # A row's value does not depend on the batch: equal to the first case's.
                    for r in range(rows):
                        if r in first and not np.array_equal(first[r], got[r]):
                            print(f"FAIL {tag}: row {r} differs from the same row in a batch of "
                                  f"{ROWS[0]}")
                            all_ok = False
                            break
                        first.setdefault(r, got[r])
                    else:
                        print(f"ok   {tag}", flush=True)
    print(f"{count} cases: " + ("all match" if all_ok else "MISMATCH"))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)  # sources and binaries; --keep keeps them
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
