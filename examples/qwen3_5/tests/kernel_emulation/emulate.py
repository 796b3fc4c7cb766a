#!/usr/bin/env python3
"""Runs the Gated DeltaNet kernels (mlx-lm/kernels/) on the CPU, without a GPU.

Both kernels — the gated delta step over T tokens ("step") and the whole single-token
DeltaNet update from the projections ("decode") — are assembled for each backend the way
MLX 0.32.2 assembles a custom kernel (CUDA: `build_kernel` in
mlx/backend/cuda/custom_kernel.cpp; Metal: `write_signature` in mlx/fast.cpp): the same
header order, signature, template constants and body. Each is compiled with the host C++
compiler against small shims (shim_*.h) in which every warp / SIMD group is 32 threads
and cross-lane sums are barrier-synchronised exchanges, launched over the grid that
mlx-lm/src/kernels/gated_delta/kernel.rs asks MLX for, and compared with a NumPy reference. Built with AddressSanitizer
(unless GDN_EMUL_NO_ASAN is set), so any read or write outside an input or output aborts
the case; outputs start as NaN, so an element never written shows up.

This checks the index math, bounds, the per-lane layout, the lane reductions and the
dtype handling of the exact source text; not GPU-only matters (memory model, speed, the
dialects of the real compilers — see nvrtc_check.py for CUDA).

Usage: python3 emulate.py [--backend cuda|metal|both] [--kernel step|decode|both] [--keep DIR]
       python3 emulate.py --step-source FILE   (a step kernel variant, CUDA only)
Exit status 0 when every case matches. The launch constants are read from mlx-lm/src/kernels/gated_delta/kernel.rs.
"""

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "kernels")
FUSED_RS = os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels", "gated_delta", "kernel.rs")


def fused_const(name):
    """A launch constant of gated_delta/kernel.rs (so the emulated grid is the one the model asks for)."""
    m = re.search(rf"pub const {name}: i32 = (\d+);", open(FUSED_RS).read())
    if not m:
        raise SystemExit(f"{name} not found in {FUSED_RS}")
    return int(m.group(1))


STEP_WARPS = fused_const("STEP_WARPS")
DECODE_MIN_ROWS = fused_const("DECODE_MIN_ROWS")
DECODE_MAX_WARPS = fused_const("DECODE_MAX_WARPS")
NORM_EPS = 1e-6  # the gated norm's eps in the decode cases


def decode_rows(Dv):
    """(rows per warp, warps per block) of the decode kernel, as gated_delta/kernel.rs's
    decode_launch chooses them."""
    rows = max(DECODE_MIN_ROWS, -(-Dv // DECODE_MAX_WARPS))
    return rows, -(-Dv // rows)

CUDA_TYPES = {"float32": "float", "bfloat16": "__nv_bfloat16"}
METAL_TYPES = {"float32": "float", "bfloat16": "bfloat16_t"}


def read(name):
    with open(os.path.join(KERNELS, name)) as f:
        return f.read()


def bf16_round(x):
    """float -> nearest bfloat16 (ties to even) -> float32."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def rnd(x, dtype_name):
    x = np.asarray(x, np.float32)
    return bf16_round(x) if dtype_name == "bfloat16" else x


# ---------------------------------------------------------------------------------------
# Kernels: inputs, outputs (name, dtype role), template constants, grid
# ---------------------------------------------------------------------------------------

class Kernel:
    def __init__(self, name, body_files, inputs, outputs, warps_per_block=None):
        self.name = name
        self.body_files = body_files  # {backend: [prologue, body]}
        self.inputs = inputs  # [(name, role)]: role "act" (InT), "gate" (GateT) or "f32"
        self.outputs = outputs
        self.warps_per_block = warps_per_block

    def body(self, backend):
        return "\n".join(read(f) for f in self.body_files[backend])


STEP = Kernel(
    "step",
    {"cuda": ["cuda_prologue.inc", "gated_delta_step.inc"],
     "metal": ["metal_prologue.inc", "gated_delta_step.inc"]},
    [("q", "act"), ("k", "act"), ("v", "act"), ("g", "f32"), ("beta", "act"), ("state_in", "f32")],
    [("y", "act"), ("state_out", "f32")],
    warps_per_block=STEP_WARPS,
)


class SourceKernel(Kernel):
    """The step kernel's inputs and outputs with a whole CUDA source read from a file."""

    def __init__(self, path):
        try:
            with open(path) as f:
                self.text = f.read()
        except OSError as e:
            raise SystemExit(f"{path}: {e.strerror}")
        # An optional first line `// WARPS_PER_BLOCK=W` (else the model's block).
        m = re.match(r"// WARPS_PER_BLOCK=(\d+)\n", self.text)
        super().__init__("step", {}, STEP.inputs, STEP.outputs,
                         warps_per_block=int(m.group(1)) if m else STEP_WARPS)

    def body(self, backend):
        return self.text


DECODE = Kernel(
    "decode",
    {"cuda": ["cuda_decode_prologue.inc", "gated_delta_decode.inc"],
     "metal": ["metal_decode_prologue.inc", "gated_delta_decode.inc"]},
    [("proj", "act"), ("conv_in", "act"), ("conv_w", "act"), ("a_log", "f32"),
     ("dt_bias", "gate"), ("norm_w", "act"), ("state_in", "f32")],
    [("out", "act"), ("state_out", "f32"), ("conv_out", "act")],
)


def templates(kernel, act, gate, dims, types):
    B, T, Hk, Dk, Hv, Dv, K = dims
    t = [("InT", types[act])]
    if kernel.name == "step":
        # gated_delta/kernel.rs names every input dtype (MLX caches kernels by name).
        roles = dict(kernel.inputs)
        t += [(n, ctype(roles[r], act, gate, types)) for n, r in
              (("KT", "k"), ("VT", "v"), ("GT", "g"), ("BetaT", "beta"))]
    if kernel is DECODE:
        t.append(("GateT", types[gate]))
    t += [("Dk", Dk), ("Dv", Dv), ("Hk", Hk), ("Hv", Hv)]
    if kernel.name == "step":
        t.append(("W", kernel.warps_per_block))
    if kernel is DECODE:
        rows, warps = decode_rows(Dv)
        eps_bits = int(np.array(NORM_EPS, np.float32).view(np.int32))
        t += [("K", K), ("ROWS", rows), ("W", warps), ("EPS_BITS", eps_bits)]
    return t


def ctype(role, act, gate, types):
    return {"act": types[act], "gate": types[gate], "f32": "float"}[role]


def cuda_source(kernel, act, gate, dims):
    types = CUDA_TYPES
    body = kernel.body("cuda")
    src = '#include "shim_cuda.h"\n' + read("cuda_header.cuh") + read("gdn_common.h")
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    src += "__global__ void gdn_kernel(\n"
    call = []
    for name, role in kernel.inputs:
        src += f"    const {ctype(role, act, gate, types)}* {name},\n"
        call.append(f"{name}.data()")
        if name + "_shape" in body:
            src += f"    const __grid_constant__ Shape {name}_shape,\n"
            call.append(f"{name}_shape")
        assert name + "_strides" not in body and name + "_ndim" not in body
    src += ",\n".join(f"    {ctype(r, act, gate, types)}* {n}" for n, r in kernel.outputs) + ") {\n"
    call += [f"{n}.data()" for n, _ in kernel.outputs]
    for name, value in templates(kernel, act, gate, dims, types):
        src += (f"  constexpr int {name} = {value};\n" if isinstance(value, int)
                else f"  using {name} = {value};\n")
    src += "\n" + body + "\n}\n\n} // namespace mlx::core::cu\n"
    B, T, Hk, Dk, Hv, Dv, K = dims
    if kernel is DECODE:
        # One block per value head, its warps the head's row groups.
        w = gy = decode_rows(Dv)[1]
    else:
        gy, w = Dv, kernel.warps_per_block
    # A whole block at a time (its warps meet at __syncthreads and share __shared__).
    launch = f"""
  for (int bz = 0; bz < {B * Hv}; ++bz)
    for (int by = 0; by < {-(-gy // w)}; ++by)
      emul::run_block({32 * w}, [&](int tid) {{
        threadIdx = dim3{{(unsigned)(tid % 32), (unsigned)(tid / 32), 0}};
        blockIdx = dim3{{0, (unsigned)by, (unsigned)bz}};
        blockDim = dim3{{32, {w}, 1}};
        mlx::core::cu::gdn_kernel({", ".join(call)});
      }});
"""
    return src, launch


def metal_attrs(warps):
    """The Metal position attributes MLX adds when the source names them: (type, value
    from the emulated `lane`, `gy`, `z`) for thread groups of `warps` SIMD groups."""
    return {
        "thread_position_in_grid": ("uint3", "uint3{(unsigned)lane, (unsigned)gy, (unsigned)z}"),
        "thread_position_in_threadgroup":
            ("uint3", f"uint3{{(unsigned)lane, (unsigned)(gy % {warps}), 0}}"),
        "thread_index_in_simdgroup": ("uint", "(unsigned)lane"),
    }
# Attributes MLX would add if named in the source, which the emulator does not model.
UNMODELLED = ["threadgroup_position_in_grid", "threads_per_threadgroup", "simdgroup_index_in_threadgroup",
              "threads_per_grid", "grid_size", "thread_index_in_threadgroup", "threads_per_simdgroup"]


def metal_source(kernel, act, gate, dims):
    types = METAL_TYPES
    body = kernel.body("metal")
    targs = templates(kernel, act, gate, dims, types)
    src = '#include "shim_metal.h"\n' + read("metal_header.h") + read("gdn_common.h")
    src += "template <" + ", ".join(
        ("int " if isinstance(v, int) else "typename ") + n for n, v in targs) + ">\n"
    src += "[[kernel]] void gdn_kernel(\n"
    params, call, index = [], [], 0
    for name, role in kernel.inputs:
        # Small arrays go to the constant address space, others to device; both vanish
        # in the shim.
        params.append(f"  const device {ctype(role, act, gate, types)}* {name} [[buffer({index})]]")
        call.append(f"{name}.data()")
        index += 1
        if name + "_shape" in body:
            params.append(f"  const constant int* {name}_shape [[buffer({index})]]")
            call.append(f"{name}_shape.data()")
            index += 1
    for name, role in kernel.outputs:
        params.append(f"  device {ctype(role, act, gate, types)}* {name} [[buffer({index})]]")
        call.append(f"{name}.data()")
        index += 1
    for a in UNMODELLED:
        if a in body:
            raise SystemExit(f"the emulator does not model {a}")
    # MLX lists attributes in this order (fast.cpp metal_attributes).
    B, T, Hk, Dk, Hv, Dv, K = dims
    w = decode_rows(Dv)[1] if kernel is DECODE else kernel.warps_per_block
    attrs = metal_attrs(w)
    for a in ["thread_index_in_simdgroup", "thread_position_in_grid", "thread_position_in_threadgroup"]:
        if a in body:
            params.append(f"  {attrs[a][0]} {a} [[{a}]]")
            call.append(attrs[a][1])
    src += ",\n".join(params) + ") {\n" + body + "\n}\n"
    tdef = "<" + ", ".join(str(v) for _, v in targs) + ">"
    src += (f'template [[host_name("gdn_kernel")]] [[kernel]] decltype(gdn_kernel{tdef}) '
            f"gdn_kernel{tdef};\n")
    # Whole thread groups at a time (the grid gated_delta/kernel.rs asks for is whole
    # groups; a group meets at threadgroup_barrier and shares threadgroup memory).
    groups = 1 if kernel is DECODE else -(-Dv // w)
    launch = f"""
  for (int z = 0; z < {B * Hv}; ++z)
    for (int by = 0; by < {groups}; ++by)
      emul::run_block({32 * w}, [&](int tid) {{
        const int lane = tid % 32;
        const int gy = by * {w} + tid / 32;
        gdn_kernel{tdef}({", ".join(call)});
      }});
"""
    return src, launch


def compile_cpp(cpp, exe):
    """Builds an emulated launch with the host compiler ($CXX, else g++) under
    AddressSanitizer and UBSan's alignment check (a wide load from an address the GPU
    would fault on stops the run; unless GDN_EMUL_NO_ASAN is set), warnings as errors. The compiler's
    error output, or None."""
    sanitize = [] if os.environ.get("GDN_EMUL_NO_ASAN") else [
        "-fsanitize=address,alignment", "-fno-sanitize-recover=alignment"]
    cmd = [os.environ.get("CXX", "g++"), "-std=c++20", "-O1", "-pthread", *sanitize, "-Wall",
           "-Wno-attributes", "-Wno-unused-variable", "-Wno-unused-local-typedefs",
           "-Wno-unknown-pragmas", "-Werror", "-I", HERE, cpp, "-o", exe]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.stderr if r.returncode != 0 else None


def build_and_run(case_dir, src):
    """Writes an emulated launch's source to case_dir/kernel.cpp, builds it (compile_cpp)
    and runs it with case_dir as its argument (where it reads its inputs and writes its
    outputs). An error text (the compiler's or the run's), or None."""
    cpp = os.path.join(case_dir, "kernel.cpp")
    with open(cpp, "w") as f:
        f.write(src)
    exe = os.path.join(case_dir, "kernel")
    err = compile_cpp(cpp, exe)
    if err:
        return f"does not compile ({cpp}):\n{err[-6000:]}"
    r = subprocess.run([exe, case_dir], capture_output=True, text=True)
    if r.returncode != 0:
        return f"run failed: {r.stderr[-3000:]}"
    return None


# What each emulated launch's main() uses: float32 files in and out, in the case's folder.
CPP_IO = """template <class T> std::vector<T> load(const char* dir, const char* name, size_t n) {
  std::vector<float> f(n);
  std::string path = std::string(dir) + "/" + name + ".bin";
  FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp || std::fread(f.data(), 4, n, fp) != n) { std::perror(path.c_str()); std::exit(2); }
  std::fclose(fp);
  return std::vector<T>(f.begin(), f.end());
}
template <class T> void save(const char* dir, const char* name, const std::vector<T>& x) {
  std::vector<float> f(x.begin(), x.end());
  std::string path = std::string(dir) + "/" + name + ".bin";
  FILE* fp = std::fopen(path.c_str(), "wb");
  std::fwrite(f.data(), 4, f.size(), fp);
  std::fclose(fp);
}
"""


def driver(kernel, act, gate, backend, arrays, out_shapes, shapes_used):
    types = CUDA_TYPES if backend == "cuda" else METAL_TYPES
    lines = ["#include <cstdio>", "#include <cstdlib>", "#include <string>",
             *CPP_IO.splitlines(),
             "int main(int, char** argv) {",
             "  const char* dir = argv[1];"]
    for name, role in kernel.inputs:
        t = ctype(role, act, gate, types)
        lines.append(f'  auto {name} = load<{t}>(dir, "{name}", {arrays[name].size});')
        if name in shapes_used:
            shape = ", ".join(str(d) for d in arrays[name].shape)
            stype = "Shape" if backend == "cuda" else "std::array<int, 8>"
            lines.append(f"  {stype} {name}_shape = {{{shape}}};")
    for name, role in kernel.outputs:
        t = ctype(role, act, gate, types)
        lines.append(f"  std::vector<{t}> {name}({int(np.prod(out_shapes[name]))}, {t}(NAN));")
    return lines


def run_case(backend, kernel, act, gate, dims, workdir, seed):
    B, T, Hk, Dk, Hv, Dv, K = dims
    rng = np.random.default_rng(seed)
    tag = f"{backend}_{kernel.name}_{act}_{gate}_{'x'.join(map(str, dims))}"
    if kernel is STEP:
        arrays, expected, tols = step_case(rng, act, dims)
    else:
        arrays, expected, tols = decode_case(rng, act, gate, dims)
    out_shapes = {n: expected[n].shape for n, _ in kernel.outputs}
    case_dir = os.path.join(workdir, tag)
    os.makedirs(case_dir, exist_ok=True)
    for name, a in arrays.items():
        a.astype(np.float32).tofile(os.path.join(case_dir, name + ".bin"))

    make = cuda_source if backend == "cuda" else metal_source
    src, launch = make(kernel, act, gate, dims)
    body = kernel.body(backend)
    shapes_used = [n for n, _ in kernel.inputs if n + "_shape" in body]
    lines = driver(kernel, act, gate, backend, arrays, out_shapes, shapes_used)
    lines.append(launch)
    lines += [f'  save(dir, "{n}", {n});' for n, _ in kernel.outputs]
    lines += ["  return 0;", "}"]
    src += "\n".join(lines) + "\n"
    err = build_and_run(case_dir, src)
    if err:
        return False, f"{tag}: {err}"
    ok, msgs = True, []
    for name, _ in kernel.outputs:
        got = np.fromfile(os.path.join(case_dir, name + ".bin"), np.float32).reshape(out_shapes[name])
        want = expected[name]
        if not np.all(np.isfinite(got)):
            ok = False
            msgs.append(f"{name}: {np.sum(~np.isfinite(got))} values not written")
            continue
        err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30)
        msgs.append(f"{name} err/scale {err:.1e}")
        ok &= err <= tols[name]
    return ok, f"{tag}: " + ", ".join(msgs)


# ---------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------

def recurrence(q, k, v, g, beta, state):
    """The sequential gated delta rule in float64. q, k [B,T,Hk,Dk], v [B,T,Hv,Dv]."""
    B, T, Hk, Dk = q.shape
    Hv, Dv = v.shape[2:]
    r = Hv // Hk
    s = state.astype(np.float64).copy()
    y = np.zeros((B, T, Hv, Dv))
    for t in range(T):
        for b in range(B):
            for h in range(Hv):
                kk = k[b, t, h // r].astype(np.float64)
                qq = q[b, t, h // r].astype(np.float64)
                s[b, h] *= g[b, t, h]
                delta = (v[b, t, h] - s[b, h] @ kk) * beta[b, t, h]
                s[b, h] += np.outer(delta, kk)
                y[b, t, h] = s[b, h] @ qq
    return y, s


def unit(rng, shape, scale):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True) * scale


def step_case(rng, act, dims):
    B, T, Hk, Dk, Hv, Dv, K = dims
    q = rnd(unit(rng, (B, T, Hk, Dk), Dk ** -0.5), act)
    k = rnd(unit(rng, (B, T, Hk, Dk), 1.0), act)
    v = rnd(rng.standard_normal((B, T, Hv, Dv)), act)
    g = rng.uniform(0.5, 0.99, (B, T, Hv)).astype(np.float32)
    beta = rnd(rng.uniform(0.05, 0.95, (B, T, Hv)), act)
    state = (0.5 * rng.standard_normal((B, Hv, Dv, Dk))).astype(np.float32)
    y, s = recurrence(q, k, v, g, beta, state)
    arrays = dict(q=q, k=k, v=v, g=g, beta=beta, state_in=state)
    tol_y = 1e-5 if act == "float32" else 1 / 128
    return arrays, dict(y=rnd(y, act), state_out=s), dict(y=tol_y, state_out=1e-5)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def decode_case(rng, act, gate, dims):
    B, T, Hk, Dk, Hv, Dv, K = dims
    assert T == 1
    key_dim = Hk * Dk
    C = 2 * key_dim + Hv * Dv
    qkv = rnd(rng.standard_normal((B, C)), act)
    conv_in = rnd(rng.standard_normal((B, K - 1, C)), act)
    conv_w = rnd(0.5 * rng.standard_normal((C, K)), act)
    a = rnd(rng.standard_normal((B, Hv)), act)
    b = rnd(rng.standard_normal((B, Hv)), act)
    a_log = np.log(rng.uniform(1, 16, Hv)).astype(np.float32)
    dt_bias = rnd(rng.uniform(0.5, 1.5, Hv), gate)
    state = (0.5 * rng.standard_normal((B, Hv, Dv, Dk))).astype(np.float32)

    full = np.concatenate([conv_in, qkv[:, None, :]], axis=1).astype(np.float32)  # [B, K, C]
    conv = np.zeros((B, C), np.float32)
    for j in range(K):
        conv = (conv + full[:, j, :] * conv_w[:, j]).astype(np.float32)
    conv = rnd(conv, act)
    act_out = rnd(conv * rnd(sigmoid(conv), act), act)
    q = act_out[:, :key_dim].reshape(B, Hk, Dk)
    k = act_out[:, key_dim:2 * key_dim].reshape(B, Hk, Dk)
    v = act_out[:, 2 * key_dim:].reshape(B, Hv, Dv)
    inv = np.float32(Dk ** -0.5)
    eps = np.float32(1e-6) * inv * inv

    def norm(x, mul):
        r = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
        return rnd(rnd(x * r, act) * rnd(mul, act), act)

    q, k = norm(q, inv * inv), norm(k, inv)
    beta = rnd(sigmoid(b), act)
    a_dt = rnd(a + dt_bias, gate)
    softplus = rnd(np.maximum(a_dt, 0) + np.log1p(np.exp(-np.abs(a_dt))), gate)
    g = np.exp(-np.exp(a_log) * softplus).astype(np.float32)
    y, s = recurrence(q[:, None], k[:, None], v[:, None], g[:, None], beta[:, None], state)
    # The gated norm per value head: rmsnorm(y) * w (each rounded as MLX's rms_norm), then
    # silu(z) in fp32.
    z = rnd(rng.standard_normal((B, Hv * Dv)), act)
    norm_w = rnd(rng.uniform(0.5, 1.5, Dv), act)
    y = rnd(y[:, 0], act).astype(np.float64)
    inv_rms = 1.0 / np.sqrt((y * y).mean(-1, keepdims=True) + NORM_EPS)
    normed = rnd(norm_w * rnd(y * inv_rms, act), act)
    zz = z.reshape(B, Hv, Dv)
    out = rnd(zz * sigmoid(zz) * normed, act).reshape(B, Hv * Dv)
    proj = np.concatenate([qkv, z, b, a], axis=1)
    arrays = dict(proj=proj, conv_in=conv_in, conv_w=conv_w, a_log=a_log, dt_bias=dt_bias,
                  norm_w=norm_w, state_in=state)
    expected = dict(out=out, state_out=s, conv_out=full[:, 1:, :])
    # bf16: q, k, v may land one bf16 ulp apart where an exp or rsqrt differs in its last
    # float bit, which the state carries at that scale.
    tol = 1e-5 if act == "float32" else 1 / 64
    return arrays, expected, dict(out=tol, state_out=tol, conv_out=0.0)


# (B, T, Hk, Dk, Hv, Dv, K)
STEP_CASES = [
    (1, 1, 2, 128, 2, 8, 4),  # the real Dk, decode
    (2, 1, 1, 32, 3, 6, 4),  # Hv > Hk, Dv not a multiple of the rows per group, B = 2
    (1, 3, 2, 64, 4, 5, 4),  # several tokens in one launch
    (1, 8, 1, 32, 2, 3, 4),  # eight tokens
    (2, 19, 2, 64, 4, 5, 4),  # a longer run of tokens, B = 2
    (1, 70, 1, 64, 2, 9, 4),  # three rounds of the shared-memory staging (32 tokens at Dk 64)
]
DECODE_CASES = [
    (1, 1, 2, 128, 2, 8, 4),  # the real Dk and conv
    (2, 1, 1, 32, 3, 6, 4),  # Hv > Hk, Dv not a multiple of ROWS, B = 2
    (1, 1, 2, 64, 4, 9, 3),  # Hv > Hk, 3 taps, a partial row group
    (1, 1, 1, 128, 2, 128, 4),  # the real Dv: a whole block of warps per head
    (1, 1, 2, 32, 4, 256, 4),  # 16 rows a warp: two chunks of 8 (four heads: the decay matters)
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="both", choices=["cuda", "metal", "both"])
    ap.add_argument("--kernel", default="both", choices=["step", "decode", "both"])
    ap.add_argument("--keep", help="folder for the generated sources and binaries")
    ap.add_argument("--step-source", metavar="FILE",
                    help="a whole CUDA step kernel (prologue and body, first line "
                         "'// WARPS_PER_BLOCK=W') instead of the shipped one, e.g. a variant "
                         "written by benches/gpu/step_variants.py; implies --backend cuda "
                         "--kernel step")
    args = ap.parse_args()
    if args.step_source:
        global STEP
        STEP = SourceKernel(args.step_source)
        args.backend, args.kernel = "cuda", "step"
    backends = ["cuda", "metal"] if args.backend == "both" else [args.backend]
    kernels = {"step": [STEP], "decode": [DECODE], "both": [STEP, DECODE]}[args.kernel]
    workdir = args.keep or tempfile.mkdtemp(prefix="gdn-emul-")
    all_ok = True
    for backend in backends:
        for kernel in kernels:
            cases = STEP_CASES if kernel is STEP else DECODE_CASES
            combos = [("float32", "float32"), ("bfloat16", "bfloat16")]
            if kernel is DECODE:
                combos.append(("bfloat16", "float32"))  # an fp32 dt_bias
            for act, gate in combos:
                for i, dims in enumerate(cases):
                    ok, msg = run_case(backend, kernel, act, gate, dims, workdir, seed=i)
                    print(("ok   " if ok else "FAIL ") + msg, flush=True)
                    all_ok &= bool(ok)
    print("all cases match" if all_ok else "MISMATCH")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)  # sources and binaries; --keep keeps them
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
