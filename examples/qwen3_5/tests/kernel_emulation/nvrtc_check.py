#!/usr/bin/env python3
"""Compiles the CUDA kernels of mlx-lm with NVRTC the way MLX 0.32.2 does, without a GPU.

MLX's CUDA backend JIT-compiles a custom kernel's source with NVRTC, against device
headers it carries inside libmlx.so (mlx/backend/cuda/device/*.cuh). This script takes
those headers out of the CUDA libmlx.so, writes the kernel source exactly as MLX's
`build_kernel` does (default header, our header, `namespace mlx::core::cu`, the signature
from the input/output dtypes, the template constants, the body), and compiles it to PTX
for sm_90 (H100) with the same NVRTC options MLX passes. Any compile error shows here
instead of on the GPU machine.

Needs the `mlx-cuda-13` wheel unpacked (mlx-sys keeps it in
~/.cache/mlx-sys/mlx-cuda-13-0.32.2; or set MLX_CUDA_ROOT to a folder holding mlx/ and
nvidia/).

Usage: python3 nvrtc_check.py [--arch sm_90] [--print-source] [--step-source FILE]
"""

import argparse
import ctypes
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "kernels")
ROOT = os.environ.get(
    "MLX_CUDA_ROOT", os.path.expanduser("~/.cache/mlx-sys/mlx-cuda-13-0.32.2"))

# mlx/backend/cuda/custom_kernel.cpp (0.32.2)
DEFAULT_HEADER = """
#include "mlx/backend/cuda/device/utils.cuh"

#include <cooperative_groups.h>

#define inf cuda::std::numeric_limits<float>::infinity()

"""
CUDA_TYPES = {"float32": "float", "bfloat16": "__nv_bfloat16", "float16": "__half"}
_GDN_RS = open(os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels", "gated_delta",
                           "kernel.rs")).read()
DECODE_MIN_ROWS = int(re.search(r"pub const DECODE_MIN_ROWS: i32 = (\d+);", _GDN_RS).group(1))
DECODE_MAX_WARPS = int(re.search(r"pub const DECODE_MAX_WARPS: i32 = (\d+);", _GDN_RS).group(1))
STEP_WARPS = int(re.search(r"pub const STEP_WARPS: i32 = (\d+);", _GDN_RS).group(1))
INPUTS = ["q", "k", "v", "g", "beta", "state_in"]
OUTPUTS = ["y", "state_out"]


def read(name):
    with open(os.path.join(KERNELS, name)) as f:
        return f.read()


def embedded_headers(libmlx):
    """The device headers libmlx.so carries, by include name."""
    data = open(libmlx, "rb").read()
    names_blob = re.findall(rb"mlx/backend/cuda/device/[a-z0-9_]+\.(?:cuh|h)\x00", data)
    names = sorted({n[:-1].decode() for n in names_blob})
    # Every NUL-terminated string that looks like a header body.
    bodies = [m.group(0)[:-1] for m in re.finditer(rb"// Copyright[^\x00]{40,}?\x00", data)
              if b"#pragma once" in m.group(0)]
    found = {}
    markers = {
        "mlx/backend/cuda/device/config.h": b"#define MAX_NDIM",
        "mlx/backend/cuda/device/utils.cuh": b"using Shape = ",
        "mlx/backend/cuda/device/complex.cuh": b"#include <cuda/std/complex>",
    }
    for name, marker in markers.items():
        hits = [b for b in bodies if marker in b]
        if not hits:
            raise SystemExit(f"{name}: not found in {libmlx}")
        found[name] = min(hits, key=len).decode("utf-8", "replace")
    # Headers those include (recursively) among the embedded ones.
    todo = list(found)
    while todo:
        body = found[todo.pop()]
        for inc in re.findall(r'#include "(mlx/backend/cuda/device/[^"]+)"', body):
            if inc not in found:
                raise SystemExit(f"{inc} is included but not located; known names: {names}")
    return found


STEP = dict(
    name="gated_delta_step",
    body=["cuda_prologue.inc", "gated_delta_step.inc"],
    inputs=[("q", "act"), ("k", "act"), ("v", "act"), ("g", "f32"), ("beta", "act"),
            ("state_in", "f32")],
    outputs=[("y", "act"), ("state_out", "f32")],
)
DECODE = dict(
    name="gated_delta_decode",
    body=["cuda_decode_prologue.inc", "gated_delta_decode.inc"],
    inputs=[("proj", "act"), ("conv_in", "act"), ("conv_w", "act"), ("a_log", "f32"),
            ("dt_bias", "gate"), ("norm_w", "act"), ("state_in", "f32")],
    outputs=[("out", "act"), ("state_out", "f32"), ("conv_out", "act")],
)


QK_PREP = dict(
    name="attn_qk_prep",
    body=["attn_qk_prep.cu.inc"],
    inputs=[("q_full", "act"), ("k", "act"), ("q_w", "act"), ("k_w", "act"),
            ("inv_freq", "f32"), ("meta", "i32"), ("eps", "f32")],
    outputs=[("q_out", "act"), ("k_out", "act")],
)
ATTN = dict(
    name="attn_decode_split",
    body=["attn_decode.cu.inc"],
    inputs=[("q", "act"), ("keys", "act"), ("values", "act"), ("meta", "i32"),
            ("scale", "f32")],
    outputs=[("part_o", "f32"), ("part_ml", "f32")],
)
ATTN_MERGE = dict(
    name="attn_decode_merge",
    body=["attn_decode_merge.cu.inc"],
    inputs=[("part_o", "f32"), ("part_ml", "f32"), ("q_full", "act"), ("meta", "i32")],
    outputs=[("out", "act"), ("meta_next", "i32")],
)
ADD_NORM = dict(
    name="add_rms_norm",
    body=["add_rms_norm.cu.inc"],
    inputs=[("x", "act"), ("r", "act"), ("w", "act")],
    outputs=[("h", "act"), ("n", "act")],
)
QGEMV = dict(
    name="quantized_gemv",
    body=["quantized_gemv.cu.inc"],
    inputs=[("x", "act"), ("w", "u32"), ("scales", "act"), ("biases", "act")],
    outputs=[("out", "act")],
)
SWIGLU = dict(
    name="swiglu_joined",
    body=["swiglu_joined.cu.inc"],
    inputs=[("gu", "act")],
    outputs=[("out", "act")],
)
_ATTN_RS = open(os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels",
                             "attention.rs")).read()
ATTN_WARPS = int(re.search(r"const WARPS: i32 = (\d+);", _ATTN_RS).group(1))
ATTN_SPLIT = int(re.search(r"pub const SPLIT: i32 = (\d+);", _ATTN_RS).group(1))


_SB_RS = open(os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels",
                           "small_batch.rs")).read()
SB_WARPS = int(re.search(r"pub const WARPS: i32 = (\d+);", _SB_RS).group(1))
SB_TILES = int(re.search(r"pub const MAX_ROWS: i32 = (\d+);", _SB_RS).group(1)) // 8
SMALL_BATCH = dict(name="small_batch_mma")
_QG_RS = open(os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels",
                           "quantized_gemv.rs")).read()
QG_ROWS = int(re.search(r"pub const ROWS: i32 = (\d+);", _QG_RS).group(1))


def small_batch_source(act, nt):
    """The source MLX's build_kernel writes for the small-batch product
    (mlx-lm/src/kernels/small_batch.rs: its own header, inputs read with their strides)."""
    t = CUDA_TYPES[act]
    src = DEFAULT_HEADER + read("small_batch_mma.cuh")
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    name = f"custom_kernel_small_batch_mma_{t}_{nt}_{SB_WARPS}".replace("__", "_")
    src += f"__global__ void {name}(\n"
    src += f"    const {t}* x,\n    const __grid_constant__ Shape x_shape,\n"
    src += "    const __grid_constant__ Strides x_strides,\n    const __grid_constant__ int x_ndim,\n"
    src += f"    const {t}* wt,\n    const __grid_constant__ Shape wt_shape,\n"
    src += f"    const __grid_constant__ Strides wt_strides,\n    {t}* out) {{\n"
    src += f"  using T = {t};\n  constexpr int NT = {nt};\n  constexpr int WARPS = {SB_WARPS};\n\n"
    src += read("small_batch_gemm.cu.inc") + "\n}\n\n} // namespace mlx::core::cu\n"
    return src, "mlx::core::cu::" + name


def attn_source(kernel, act, consts):
    """The source MLX's build_kernel writes for an attention kernel (mlx-lm/src/kernels/attention.rs)."""
    types = {"act": CUDA_TYPES[act], "f32": "float", "i32": "int32_t", "u32": "uint32_t"}
    body = "\n".join(read(f) for f in kernel["body"])
    src = DEFAULT_HEADER + read("cuda_header.cuh") + read("gdn_common.h")
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    name = f"custom_kernel_{kernel['name']}_{types['act']}".replace("__", "_")
    src += f"__global__ void {name}(\n"
    for n, r in kernel["inputs"]:
        src += f"    const {types[r]}* {n},\n"
        if n + "_shape" in body:
            src += f"    const __grid_constant__ Shape {n}_shape,\n"
    src += ",\n".join(f"    {types[r]}* {n}" for n, r in kernel["outputs"]) + ") {\n"
    src += f"  using T = {types['act']};\n  using WT = {types['act']};\n"
    src += f"  using KWT = {types['act']};\n"
    src += "".join(f"  constexpr int {k} = {v};\n" for k, v in consts.items())
    src += "\n" + body + "\n}\n\n} // namespace mlx::core::cu\n"
    return src, "mlx::core::cu::" + name


def kernel_source(kernel, act, gate, dims):
    """The source MLX's build_kernel writes for one of our kernels."""
    B, T, Hk, Dk, Hv, Dv, K = dims
    types = {"act": CUDA_TYPES[act], "gate": CUDA_TYPES[gate], "f32": "float"}
    body = kernel.get("source") or "\n".join(read(f) for f in kernel["body"])
    src = DEFAULT_HEADER + read("cuda_header.cuh") + read("gdn_common.h")
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    name = f"custom_kernel_{kernel['name']}_{types['act']}_{Dk}_{Dv}_{Hk}_{Hv}".replace("__", "_")
    src += f"__global__ void {name}(\n"
    for n, role in kernel["inputs"]:
        src += f"    const {types[role]}* {n},\n"
        if n + "_shape" in body:
            src += f"    const __grid_constant__ Shape {n}_shape,\n"
        if n + "_strides" in body:
            src += f"    const __grid_constant__ Strides {n}_strides,\n"
        if n + "_ndim" in body:
            src += f"    const __grid_constant__ int {n}_ndim,\n"
    src += ",\n".join(f"    {types[r]}* {n}" for n, r in kernel["outputs"]) + ") {\n"
    src += f"  using InT = {types['act']};\n"
    if kernel is STEP:
        roles = dict(kernel["inputs"])
        for alias, arg in (("KT", "k"), ("VT", "v"), ("GT", "g"), ("BetaT", "beta")):
            src += f"  using {alias} = {types[roles[arg]]};\n"
    if kernel is DECODE:
        src += f"  using GateT = {types['gate']};\n"
    src += f"  constexpr int Dk = {Dk};\n  constexpr int Dv = {Dv};\n"
    src += f"  constexpr int Hk = {Hk};\n  constexpr int Hv = {Hv};\n"
    if kernel is DECODE:
        # gated_delta/kernel.rs's decode_rows; the model's eps (1e-6).
        rows = max(DECODE_MIN_ROWS, -(-Dv // DECODE_MAX_WARPS))
        src += f"  constexpr int K = {K};\n  constexpr int ROWS = {rows};\n"
        src += f"  constexpr int W = {-(-Dv // rows)};\n  constexpr int EPS_BITS = 897988541;\n"
    if kernel is STEP:
        # The warps of a block: a variant's `// WARPS_PER_BLOCK=W` line, else the model's.
        m = re.search(r"^// WARPS_PER_BLOCK=(\d+)$", body, re.M)
        src += f"  constexpr int W = {m.group(1) if m else STEP_WARPS};\n"
    src += "\n" + body + "\n}\n\n} // namespace mlx::core::cu\n"
    return src, "mlx::core::cu::" + name


def ptxas_usage(log):
    """Registers, stack and spills of the kernel from ptxas's verbose lines."""
    regs = re.search(r"Used (\d+) registers", log)
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if not regs or not frame:
        return "no ptxas report"
    return (f"{regs.group(1)} registers, stack {frame.group(1)} bytes, "
            f"spills {frame.group(2)} / {frame.group(3)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--print-source", action="store_true")
    ap.add_argument("--step-source", metavar="FILE",
                    help="compile only the step kernel, its whole source (prologue and "
                         "body) read from FILE, e.g. a variant of benches/gpu/step_variants.py")
    args = ap.parse_args()
    if args.step_source:
        try:
            with open(args.step_source) as f:
                STEP["source"] = f.read()
        except OSError as e:
            raise SystemExit(f"{args.step_source}: {e.strerror}")

    libmlx = os.path.join(ROOT, "mlx", "lib", "libmlx.so")
    nvrtc_path = glob.glob(os.path.join(ROOT, "nvidia", "cu*", "lib", "libnvrtc.so*"))
    if not os.path.exists(libmlx) or not nvrtc_path:
        print(f"skipped: no CUDA MLX wheel under {ROOT}")
        return 0
    headers = embedded_headers(libmlx)
    include_paths = [os.path.join(ROOT, "nvidia", "cu13", "include"),
                     os.path.join(ROOT, "nvidia", "cu13", "include", "cccl"),
                     os.path.join(ROOT, "mlx", "include", "cccl")]
    include_paths = [p for p in include_paths if os.path.isdir(p)]

    nvrtc = ctypes.CDLL(sorted(nvrtc_path)[0])
    nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p

    def check(rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: {nvrtc.nvrtcGetErrorString(rc).decode()}")

    ok = True
    # (kernel, activation dtype, dtype of a + dt_bias, (B, T, Hk, Dk, Hv, Dv, K))
    cases = [(STEP, "float32", "float32", (1, 1, 16, 128, 16, 128, 4)),
             (STEP, "bfloat16", "bfloat16", (1, 1, 16, 128, 16, 128, 4)),
             (STEP, "float16", "float16", (2, 1, 2, 64, 4, 36, 4)),
             (DECODE, "bfloat16", "bfloat16", (1, 1, 16, 128, 16, 128, 4)),
             (DECODE, "float32", "float32", (1, 1, 16, 128, 32, 128, 4)),
             (DECODE, "float16", "float32", (2, 1, 2, 64, 4, 36, 4))]
    # Attention kernels: (kernel, activation dtype, None, template constants)
    cases += [(QK_PREP, "bfloat16", None, dict(D=256, H=8, KV=2, RD=64)),
              (QK_PREP, "float32", None, dict(D=32, H=2, KV=1, RD=8)),
              (ATTN, "bfloat16", None,
               dict(D=256, H=8, KV=2, GB=4, WARPS=ATTN_WARPS, L=ATTN_SPLIT)),
              (ATTN, "float16", None, dict(D=64, H=4, KV=4, GB=1, WARPS=ATTN_WARPS, L=ATTN_SPLIT)),
              (ATTN_MERGE, "bfloat16", None, dict(D=256, H=8, L=ATTN_SPLIT, R=4)),
              (ATTN_MERGE, "float16", None, dict(D=64, H=4, L=ATTN_SPLIT, R=8))]
    # The add + RMSNorm kernel (add_norm.rs: 8 values a thread, the model's eps 1e-6).
    cases += [(ADD_NORM, "bfloat16", None, dict(D=2048, THREADS=256, EPS_BITS=897988541)),
              (ADD_NORM, "float32", None, dict(D=1000, THREADS=128, EPS_BITS=897988541))]
    cases += [(SWIGLU, "bfloat16", None, dict(I=6144)), (SWIGLU, "float32", None, dict(I=333))]
    # The quantized one-row product (quantized_gemv.rs's launch for K = 2048 and 6144 at
    # 4 bits, 2048 at 8, 4096 in float32).
    cases += [(QGEMV, "bfloat16", None, dict(BITS=4, GROUP=64, K=2048, WARPS=2, U=1, R=QG_ROWS)),
              (QGEMV, "bfloat16", None, dict(BITS=4, GROUP=64, K=6144, WARPS=6, U=1, R=QG_ROWS)),
              (QGEMV, "float16", None, dict(BITS=8, GROUP=32, K=2048, WARPS=4, U=1, R=QG_ROWS)),
              (QGEMV, "float32", None, dict(BITS=4, GROUP=128, K=16384, WARPS=8, U=2, R=QG_ROWS))]
    # The small-batch product: (kernel, activation dtype, None, row tiles)
    cases += [(SMALL_BATCH, "bfloat16", None, SB_TILES), (SMALL_BATCH, "float16", None, SB_TILES)]
    if args.step_source:
        cases = [c for c in cases if c[0] is STEP]
    for kernel, act, gate, dims in cases:
        dtype_name = f"{kernel['name']} {act}/{gate}"
        if kernel is SMALL_BATCH:
            src, name = small_batch_source(act, dims)
        elif kernel in (QK_PREP, ATTN, ATTN_MERGE, ADD_NORM, SWIGLU, QGEMV):
            src, name = attn_source(kernel, act, dims)
        else:
            src, name = kernel_source(kernel, act, gate, dims)
        if args.print_source:
            print(src)
        prog = ctypes.c_void_p()
        hnames = list(headers)
        hsrc = (ctypes.c_char_p * len(hnames))(*[headers[n].encode() for n in hnames])
        hinc = (ctypes.c_char_p * len(hnames))(*[n.encode() for n in hnames])
        check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"kernel.cu",
                                       len(hnames), hsrc, hinc), "create")
        check(nvrtc.nvrtcAddNameExpression(prog, name.encode()), "name expression")
        arch = args.arch
        opts = [b"--device-as-default-execution-space", f"--gpu-architecture={arch}".encode()]
        opts += [f"--include-path={p}".encode() for p in include_paths]
        # Not one of MLX's options: ptxas reports registers and spills (the code is the same).
        opts += [b"--ptxas-options=--verbose"]
        copts = (ctypes.c_char_p * len(opts))(*opts)
        rc = nvrtc.nvrtcCompileProgram(prog, len(opts), copts)
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        text = log.value.decode(errors="replace").strip()
        usage = ptxas_usage(text)
        text = "\n".join(l for l in text.splitlines() if not l.startswith("ptxas")).strip()
        status = "ok  " if rc == 0 else "FAIL"
        print(f"{status} {dtype_name} {dims} ({arch})" + (f"\n{text}" if text else ""))
        if rc == 0:
            code = ctypes.c_size_t()
            nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(code))
            print(f"     cubin {code.value} bytes, {usage}")
        ok &= rc == 0
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    print("compiles" if ok else "COMPILE ERRORS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
