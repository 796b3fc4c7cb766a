#!/usr/bin/env python3
"""Runs the gated delta step kernels (src/model/kernels/) on the CPU, without a GPU.

The kernel source is assembled the way MLX 0.32.2 assembles a custom kernel (CUDA:
`build_kernel` in mlx/backend/cuda/custom_kernel.cpp; Metal: `write_signature` in
mlx/fast.cpp): same header order, signature, template constants. It is compiled with the
host C++ compiler against small shims (shim_*.h) in which each warp / SIMD group is 32
threads and cross-lane sums are barrier-synchronised exchanges, then launched over the
same grid MLX would launch, and its outputs are compared with a NumPy reference of the
recurrence. Built with AddressSanitizer (unless GDN_EMUL_NO_ASAN is set), so a read or
write outside an input or output aborts the case. This checks the index math, bounds, the per-lane state layout, the lane
reductions and the dtype handling of the exact source text; it does not check GPU-only
matters (memory model, performance, the real compilers' dialects).

Usage: python3 emulate.py [--backend cuda|metal|both] [--keep DIR]
Exit status 0 when every case matches.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join(HERE, "..", "..", "src", "model", "kernels")
ROWS_PER_GROUP = 4  # fused.rs ROWS_PER_GROUP
INPUTS = ["q", "k", "v", "g", "beta", "state_in"]
OUTPUTS = ["y", "state_out"]


def read(name):
    with open(os.path.join(KERNELS, name)) as f:
        return f.read()


def bf16_round(x):
    """float32 -> nearest bfloat16 (ties to even) -> float32."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def reference(q, k, v, g, beta, state):
    """The sequential gated delta rule in float64 (shapes as the kernel's)."""
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


CUDA_TYPES = {"float32": "float", "bfloat16": "__nv_bfloat16"}
METAL_TYPES = {"float32": "float", "bfloat16": "bfloat16_t"}


def template_args(dtype_name, dims, types):
    B, T, Hk, Dk, Hv, Dv = dims
    return [("InT", types[dtype_name]), ("Dk", Dk), ("Dv", Dv), ("Hk", Hk), ("Hv", Hv)]


def cuda_source(dtype_name, dims):
    """The kernel as MLX's CUDA build_kernel writes it (its default header replaced by
    the shim)."""
    body = read("cuda_prologue.inc") + "\n" + read("gated_delta_step.inc")
    t = CUDA_TYPES[dtype_name]
    in_types = {"q": t, "k": t, "v": t, "g": "float", "beta": t, "state_in": "float"}
    out_types = {"y": t, "state_out": "float"}
    src = '#include "shim_cuda.h"\n'
    src += read("cuda_header.cuh")
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    src += "__global__ void gdn_kernel(\n"
    for name in INPUTS:
        src += f"    const {in_types[name]}* {name},\n"
        if name + "_shape" in body:
            src += f"    const __grid_constant__ Shape {name}_shape,\n"
        assert name + "_strides" not in body and name + "_ndim" not in body
    src += ",\n".join(f"    {out_types[n]}* {n}" for n in OUTPUTS) + ") {\n"
    for name, value in template_args(dtype_name, dims, CUDA_TYPES):
        if isinstance(value, int):
            src += f"  constexpr int {name} = {value};\n"
        else:
            src += f"  using {name} = {value};\n"
    src += "\n" + body + "\n}\n\n} // namespace mlx::core::cu\n"
    launch = f"""
  const int Dv_ = {dims[5]}, BHv = {dims[0] * dims[4]};
  const int rows = {ROWS_PER_GROUP};
  for (int bz = 0; bz < BHv; ++bz)
    for (int by = 0; by < (Dv_ + rows - 1) / rows; ++by)
      for (int ty = 0; ty < rows; ++ty)
        emul::run_warp([&](int lane) {{
          threadIdx = dim3{{(unsigned)lane, (unsigned)ty, 0}};
          blockIdx = dim3{{0, (unsigned)by, (unsigned)bz}};
          blockDim = dim3{{32, (unsigned)rows, 1}};
          mlx::core::cu::gdn_kernel(q.data(), q_shape, k.data(), v.data(), g.data(),
                                    beta.data(), state_in.data(), y.data(), state_out.data());
        }});
"""
    return src, launch, in_types, out_types


def metal_source(dtype_name, dims):
    """The kernel as MLX's Metal write_signature writes it (metal::utils() replaced by the
    shim)."""
    body = read("metal_prologue.inc") + "\n" + read("gated_delta_step.inc")
    t = METAL_TYPES[dtype_name]
    in_types = {"q": t, "k": t, "v": t, "g": "float", "beta": t, "state_in": "float"}
    out_types = {"y": t, "state_out": "float"}
    targs = template_args(dtype_name, dims, METAL_TYPES)
    src = '#include "shim_metal.h"\n'
    src += read("metal_header.h")
    src += "template <" + ", ".join(
        ("int " if isinstance(v, int) else "typename ") + n for n, v in targs) + ">\n"
    src += "[[kernel]] void gdn_kernel(\n"
    params, index = [], 0
    for name in INPUTS:
        # Small arrays go to the constant address space, others to device; both vanish
        # in the shim.
        params.append(f"  const device {in_types[name]}* {name} [[buffer({index})]]")
        index += 1
        if name + "_shape" in body:
            params.append(f"  const constant int* {name}_shape [[buffer({index})]]")
            index += 1
    for name in OUTPUTS:
        params.append(f"  device {out_types[name]}* {name} [[buffer({index})]]")
        index += 1
    attrs = ["thread_index_in_simdgroup", "thread_position_in_grid",
             "thread_position_in_threadgroup", "threadgroup_position_in_grid",
             "threads_per_threadgroup", "simdgroup_index_in_threadgroup"]
    used = [a for a in attrs if a in body]
    for a in used:
        kind = "uint3" if a in ("thread_position_in_grid", "thread_position_in_threadgroup",
                               "threadgroup_position_in_grid", "threads_per_threadgroup") else "uint"
        params.append(f"  {kind} {a} [[{a}]]")
    src += ",\n".join(params) + ") {\n" + body + "\n}\n"
    tdef = "<" + ", ".join(str(v) for _, v in targs) + ">"
    src += f'template [[host_name("gdn_kernel")]] [[kernel]] decltype(gdn_kernel{tdef}) gdn_kernel{tdef};\n'
    B, T, Hk, Dk, Hv, Dv = dims
    args = ["q.data()", "q_shape.data()", "k.data()", "v.data()", "g.data()", "beta.data()",
            "state_in.data()", "y.data()", "state_out.data()"]
    attr_values = {
        "thread_position_in_grid": "uint3{(unsigned)lane, (unsigned)row, (unsigned)z}",
        "thread_position_in_threadgroup": f"uint3{{(unsigned)lane, (unsigned)(row % {ROWS_PER_GROUP}), 0}}",
        "thread_index_in_simdgroup": "(unsigned)lane",
    }
    for a in used:
        if a not in attr_values:
            raise SystemExit(f"the emulator does not model {a}")
        args.append(attr_values[a])
    launch = f"""
  for (int z = 0; z < {B * Hv}; ++z)
    for (int row = 0; row < {Dv}; ++row)
      emul::run_warp([&](int lane) {{
        gdn_kernel{tdef}({", ".join(args)});
      }});
"""
    return src, launch, in_types, out_types


DRIVER = r"""
#include <cstdio>
#include <cstdlib>
template <class T>
std::vector<T> load(const char* dir, const char* name, size_t n) {
  std::vector<float> f(n);
  std::string path = std::string(dir) + "/" + name + ".bin";
  FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp || std::fread(f.data(), 4, n, fp) != n) { std::perror(path.c_str()); std::exit(2); }
  std::fclose(fp);
  return std::vector<T>(f.begin(), f.end());
}
template <class T>
void save(const char* dir, const char* name, const std::vector<T>& x) {
  std::vector<float> f(x.begin(), x.end());
  std::string path = std::string(dir) + "/" + name + ".bin";
  FILE* fp = std::fopen(path.c_str(), "wb");
  std::fwrite(f.data(), 4, f.size(), fp);
  std::fclose(fp);
}
int main(int, char** argv) {
  const char* dir = argv[1];
  const int B = %(B)d, T = %(T)d, Hk = %(Hk)d, Dk = %(Dk)d, Hv = %(Hv)d, Dv = %(Dv)d;
  auto q = load<%(q)s>(dir, "q", (size_t)B * T * Hk * Dk);
  auto k = load<%(k)s>(dir, "k", (size_t)B * T * Hk * Dk);
  auto v = load<%(v)s>(dir, "v", (size_t)B * T * Hv * Dv);
  auto g = load<%(g)s>(dir, "g", (size_t)B * T * Hv);
  auto beta = load<%(beta)s>(dir, "beta", (size_t)B * T * Hv);
  auto state_in = load<%(state_in)s>(dir, "state_in", (size_t)B * Hv * Dv * Dk);
  // Outputs start as NaN: anything the kernel fails to write shows up.
  std::vector<%(y)s> y((size_t)B * T * Hv * Dv, %(y)s(NAN));
  std::vector<%(state_out)s> state_out((size_t)B * Hv * Dv * Dk, NAN);
  %(shape_decl)s
  %(launch)s
  save(dir, "y", y);
  save(dir, "state_out", state_out);
  return 0;
}
"""


def run_case(backend, dtype_name, dims, workdir, seed):
    B, T, Hk, Dk, Hv, Dv = dims
    rng = np.random.default_rng(seed)

    def unit(shape, scale):
        x = rng.standard_normal(shape).astype(np.float32)
        return x / np.linalg.norm(x, axis=-1, keepdims=True) * scale

    q = unit((B, T, Hk, Dk), Dk ** -0.5)
    k = unit((B, T, Hk, Dk), 1.0)
    v = rng.standard_normal((B, T, Hv, Dv)).astype(np.float32)
    g = rng.uniform(0.5, 0.99, (B, T, Hv)).astype(np.float32)
    beta = rng.uniform(0.05, 0.95, (B, T, Hv)).astype(np.float32)
    state = (0.5 * rng.standard_normal((B, Hv, Dv, Dk))).astype(np.float32)
    if dtype_name == "bfloat16":
        q, k, v, beta = (bf16_round(a) for a in (q, k, v, beta))
    case_dir = os.path.join(workdir, f"{backend}_{dtype_name}_{'x'.join(map(str, dims))}")
    os.makedirs(case_dir, exist_ok=True)
    for name, a in zip(INPUTS, (q, k, v, g, beta, state)):
        a.astype(np.float32).tofile(os.path.join(case_dir, name + ".bin"))

    make = cuda_source if backend == "cuda" else metal_source
    src, launch, in_types, out_types = make(dtype_name, dims)
    shape_decl = (f"Shape q_shape = {{{B}, {T}, {Hk}, {Dk}}};" if backend == "cuda"
                  else f"std::array<int, 4> q_shape = {{{B}, {T}, {Hk}, {Dk}}};")
    src += DRIVER % dict(B=B, T=T, Hk=Hk, Dk=Dk, Hv=Hv, Dv=Dv, launch=launch,
                         shape_decl=shape_decl, **in_types, **out_types)
    cpp = os.path.join(case_dir, "kernel.cpp")
    with open(cpp, "w") as f:
        f.write(src)
    exe = os.path.join(case_dir, "kernel")
    cxx = os.environ.get("CXX", "g++")
    sanitize = [] if os.environ.get("GDN_EMUL_NO_ASAN") else ["-fsanitize=address"]
    cmd = [cxx, "-std=c++20", "-O1", "-pthread", *sanitize, "-Wall", "-Wno-attributes",
           "-Wno-unused-variable", "-Wno-unknown-pragmas", "-Werror", "-I", HERE, cpp, "-o", exe]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr[-6000:])
        return False, f"{backend} {dtype_name} {dims}: does not compile ({cpp})"
    r = subprocess.run([exe, case_dir], capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"{backend} {dtype_name} {dims}: run failed: {r.stderr[-2000:]}"
    y = np.fromfile(os.path.join(case_dir, "y.bin"), np.float32).reshape(B, T, Hv, Dv)
    s = np.fromfile(os.path.join(case_dir, "state_out.bin"), np.float32).reshape(B, Hv, Dv, Dk)
    y_ref, s_ref = reference(q, k, v, g, beta, state)
    if dtype_name == "bfloat16":
        y_ref = bf16_round(y_ref.astype(np.float32))
    ok = True
    msgs = []
    for name, got, want, rtol in (("y", y, y_ref, 1e-5 if dtype_name == "float32" else 1 / 128),
                                  ("state", s, s_ref, 1e-5)):
        if not np.all(np.isfinite(got)):
            ok = False
            msgs.append(f"{name}: {np.sum(~np.isfinite(got))} values not written / not finite")
            continue
        err = np.max(np.abs(got - want)) / np.max(np.abs(want))
        msgs.append(f"{name} max err/scale {err:.2e}")
        ok &= err <= rtol
    return ok, f"{backend} {dtype_name} B,T,Hk,Dk,Hv,Dv={dims}: " + ", ".join(msgs)


CASES = [
    # (B, T, Hk, Dk, Hv, Dv)
    (1, 1, 2, 128, 2, 8),    # the real Dk, decode
    (2, 1, 1, 32, 3, 6),     # Hv > Hk, Dv not a multiple of the rows per group, B = 2
    (1, 3, 2, 64, 4, 5),     # several tokens in one launch
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="both", choices=["cuda", "metal", "both"])
    ap.add_argument("--keep", help="folder for the generated sources and binaries")
    args = ap.parse_args()
    backends = ["cuda", "metal"] if args.backend == "both" else [args.backend]
    workdir = args.keep or tempfile.mkdtemp(prefix="gdn-emul-")
    all_ok = True
    for backend in backends:
        for dtype_name in ("float32", "bfloat16"):
            for i, dims in enumerate(CASES):
                ok, msg = run_case(backend, dtype_name, dims, workdir, seed=i)
                print(("ok   " if ok else "FAIL ") + msg, flush=True)
                all_ok &= ok
    print("all cases match" if all_ok else "MISMATCH")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
