#!/usr/bin/env python3
"""Runs the quantized one-row product kernel (mlx-lm/kernels/quantized_gemv.cu.inc) on the CPU.

The kernel of mlx-lm/src/kernels/quantized_gemv.rs (y = x · Wᵀ with W = scales · q + biases
per group, q packed BITS to a uint32, low bits first, as MLX packs an affine-quantized
weight) is assembled as MLX 0.32.2's CUDA backend assembles a row-contiguous custom kernel
(the common CUDA header, each input a pointer with `w_shape` after `w`, template constants,
body), compiled with the host C++ compiler against shim_cuda.h under AddressSanitizer (as
emulate.py's compile_cpp), each input in a buffer of exactly its own extent, the output
pre-filled with NaN, and launched over the grid quantized_gemv.rs asks for (its ROWS,
MAX_WARPS and MAX_WORDS are read from the Rust file).

Checked against NumPy in float64 (the dequantized weight is exact): each value within one
rounding to the output dtype plus the float32 sums' error bound. Cases: 4 and 8 bits,
groups of 32, 64 and 128, rows of 256 to 16384 values (one warp with idle lanes, one to
eight warps, two words a lane), a row count that is not a multiple of ROWS, bfloat16,
float16 and float32, and w and x one element off their 16-byte alignment (the kernel's
value-by-value loads).

Usage: python3 emulate_quantized_gemv.py [--keep DIR]
Exit status 0 when every case matches.
"""

import argparse
import os
import re
import shutil
import sys
import tempfile

import numpy as np

from emulate import HERE, build_and_run, read, rnd

RS = open(os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels",
                       "quantized_gemv.rs")).read()


def rs_const(name):
    return int(re.search(rf"pub const {name}: i32 = (\d+);", RS).group(1))


ROWS, MAX_WARPS, MAX_WORDS = rs_const("ROWS"), rs_const("MAX_WARPS"), rs_const("MAX_WORDS")
TYPES = {"bfloat16": "__nv_bfloat16", "float16": "__half", "float32": "float"}
ULP = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -10, "float32": 2.0 ** -23}


def cast(x, dtype):
    """x rounded to dtype, as float32 values."""
    if dtype == "float16":
        return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)
    return rnd(x, dtype)


def launch(k, bits):
    """quantized_gemv.rs's launch(): (warps, words a lane)."""
    words = k // (128 // bits)
    warps = min(max(-(-words // 32), 1), MAX_WARPS)
    per_lane = -(-words // (32 * warps))
    assert per_lane <= MAX_WORDS, (k, bits)
    return warps, per_lane


def pack(q, bits):
    """MLX's packing: BITS-bit values into uint32 words, the first value in the low bits."""
    n, k = q.shape
    per = 32 // bits
    q = q.reshape(n, k // per, per).astype(np.uint64)
    shifts = (np.arange(per, dtype=np.uint64) * bits)
    return (q << shifts).sum(axis=2).astype(np.uint32)


def source(dtype, bits, group, k, n, warps, words, offs):
    t = TYPES[dtype]
    blocks = -(-n // ROWS)
    src = '#include "shim_cuda.h"\n#include <cstdio>\n#include <cstdlib>\n#include <string>\n'
    src += read("cuda_header.cuh") + read("gdn_common.h")
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    src += (f"__global__ void quantized_gemv(const {t}* x, const uint32_t* w, "
            f"const __grid_constant__ Shape w_shape, const {t}* scales, const {t}* biases, "
            f"{t}* out) {{\n")
    src += f"  using T = {t};\n"
    for name, v in (("BITS", bits), ("GROUP", group), ("K", k), ("WARPS", warps),
                    ("U", words), ("R", ROWS)):
        src += f"  constexpr int {name} = {v};\n"
    src += "\n" + read("quantized_gemv.cu.inc") + "\n}\n\n} // namespace mlx::core::cu\n\n"
    src += f"""using T = {t};
// An allocation of exactly the extent (ASan sees reads past it), `off` elements past a
// 16-byte boundary.
template <class E> static E* place(const std::vector<E>& v, size_t off) {{
  static std::vector<std::vector<E>> held;
  held.emplace_back(v.size() + off);
  E* p = held.back().data() + off;
  std::copy(v.begin(), v.end(), p);
  return p;
}}
template <class E, class F> static std::vector<E> load(const std::string& path, size_t n) {{
  std::vector<F> f(n);
  FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp || std::fread(f.data(), sizeof(F), n, fp) != n) {{ std::perror(path.c_str()); std::exit(2); }}
  std::fclose(fp);
  std::vector<E> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<E>(f[i]);
  return v;
}}
int main(int, char** argv) {{
  std::string dir = argv[1];
  const T* x = place(load<T, float>(dir + "/x.bin", {k}), {offs['x']});
  const uint32_t* w = place(load<uint32_t, uint32_t>(dir + "/w.bin", {n * k * bits // 32}), {offs['w']});
  const T* scales = place(load<T, float>(dir + "/scales.bin", {n * k // group}), 0);
  const T* biases = place(load<T, float>(dir + "/biases.bin", {n * k // group}), 0);
  Shape w_shape{{}};
  w_shape[0] = {n};
  w_shape[1] = {k * bits // 32};
  std::vector<T> out({n}, static_cast<T>(NAN));
  for (unsigned bx = 0; bx < {blocks}; ++bx)
    emul::run_block({32 * warps}, [&](int t) {{
      threadIdx = dim3{{(unsigned)t, 0, 0}};
      blockIdx = dim3{{bx, 0, 0}};
      blockDim = dim3{{{32 * warps}, 1, 1}};
      gridDim = dim3{{{blocks}, 1, 1}};
      mlx::core::cu::quantized_gemv(x, w, w_shape, scales, biases, out.data());
    }});
  std::vector<float> f(out.begin(), out.end());
  FILE* fp = std::fopen((dir + "/out.bin").c_str(), "wb");
  std::fwrite(f.data(), 4, f.size(), fp);
  std::fclose(fp);
  return 0;
}}
"""
    return src


def run_case(rng, dtype, bits, group, k, n, offs, workdir, tag):
    """The kernel's output and the float64 reference with its tolerance, or an error text."""
    warps, words = launch(k, bits)
    x = cast(rng.standard_normal(k), dtype)
    q = rng.integers(0, 2 ** bits, size=(n, k), dtype=np.int64)
    scales = cast(rng.uniform(0.002, 0.05, size=(n, k // group)), dtype)
    biases = cast(-scales * (2 ** bits - 1) / 2 * rng.uniform(0.5, 1.5, size=scales.shape), dtype)
    s_full = np.repeat(scales.astype(np.float64), group, axis=1)
    b_full = np.repeat(biases.astype(np.float64), group, axis=1)
    wdq = s_full * q + b_full
    ref = wdq @ x.astype(np.float64)
    # Every float32 sum's terms are bounded by |x| (|s| (q + 128) + |b|) (the 4-bit sums
    # carry 128 + q); a chain of at most VW · U + 5 + WARPS additions.
    big = (np.abs(s_full) * (q + 128) + np.abs(b_full)) @ np.abs(x.astype(np.float64))
    chain = (128 // bits) * words + 5 + warps + 2
    tol = 1.01 * ULP[dtype] * np.abs(ref) + chain * 2.0 ** -24 * big

    case = os.path.join(workdir, tag)
    os.makedirs(case, exist_ok=True)
    x.astype(np.float32).tofile(os.path.join(case, "x.bin"))
    pack(q, bits).tofile(os.path.join(case, "w.bin"))
    scales.astype(np.float32).tofile(os.path.join(case, "scales.bin"))
    biases.astype(np.float32).tofile(os.path.join(case, "biases.bin"))
    err = build_and_run(case, source(dtype, bits, group, k, n, warps, words, offs))
    if err:
        return err
    got = np.fromfile(os.path.join(case, "out.bin"), np.float32)
    bad = ~(np.abs(got - ref) <= tol)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        return f"{bad.sum()} of {n} values off; [{i}] got {got[i]} want {ref[i]} (tol {tol[i]:.3g})"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="folder for the generated sources and binaries")
    args = ap.parse_args()
    workdir = args.keep or tempfile.mkdtemp(prefix="quantized-gemv-emul-")
    rng = np.random.default_rng(5)
    aligned = {"x": 0, "w": 0}
    # (dtype, bits, group, K, N, offsets)
    cases = [("bfloat16", 4, 64, 256, 9, aligned),
             ("bfloat16", 4, 64, 2048, 13, aligned),
             ("bfloat16", 4, 64, 6144, 8, aligned),
             ("bfloat16", 4, 32, 1024, 11, aligned),
             ("bfloat16", 4, 128, 16384, 5, aligned),
             ("bfloat16", 8, 64, 2048, 10, aligned),
             ("bfloat16", 8, 32, 512, 7, aligned),
             ("float16", 4, 64, 1024, 6, aligned),
             ("float32", 4, 64, 768, 9, aligned),
             ("float32", 8, 128, 2048, 5, aligned),
             ("bfloat16", 4, 64, 2048, 7, {"x": 1, "w": 1}),
             ("float32", 8, 64, 1024, 6, {"x": 1, "w": 3})]
    ok = True
    for dtype, bits, group, k, n, offs in cases:
        tag = f"{dtype}-b{bits}-g{group}-k{k}-n{n}-x{offs['x']}-w{offs['w']}"
        err = run_case(rng, dtype, bits, group, k, n, offs, workdir, tag)
        if err:
            print(f"FAIL {tag}: {err}")
            ok = False
        else:
            print(f"ok   {tag}", flush=True)
    print(f"{len(cases)} cases: " + ("all cases match" if ok else "MISMATCH"))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
