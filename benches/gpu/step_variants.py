#!/usr/bin/env python3
"""Writes variants of the CUDA gated delta step kernel for `lm --ignored step_kernel_variants`.

The prefill of a prompt of up to `kernel_prefill_max` tokens runs each DeltaNet layer's
gated delta rule as one launch of the step kernel (mlx-lm/kernels/gated_delta_step.inc);
on an H100 one 2B layer's launch takes ~1.4 ms at 2,048 tokens, half of the prompt's time
(benches README of qwen3_5, session 21). This script writes, into OUT_DIR, whole kernel
sources (prologue + body, first line `// ROWS_PER_WARP=R`, the value rows one warp
handles) that the GPU test times side by side on one layer's shapes and compares with the
first file (the shipped kernel) in sort order:

  a_shipped.cu        the kernel as the model launches it (one row per warp)
  rows{R}.cu          R value rows per warp, 32/R lanes per row, each lane a contiguous
                      chunk of the row (vector loads), lane sums over 32/R lanes only;
                      the key and query loads are shared by the warp's rows
  rows4_acc1.cu       rows4 with one running sum per lane instead of four
  z_diag_*.cu         diagnostics, wrong on purpose (their error column is not zero): no
                      lane sums, no loads after the first token, y stored once; what each
                      saves says where the time goes

Usage: python3 benches/gpu/step_variants.py OUT_DIR [--nvrtc]
(--nvrtc: also compile each source for sm_90 with NVRTC as MLX does, through
examples/qwen3_5/tests/kernel_emulation/nvrtc_check.py --step-source, and print registers
and spills)
Then on the GPU machine: STEP_VARIANTS=OUT_DIR lm-<hash> --ignored --nocapture step_kernel_variants
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join(HERE, "..", "..", "mlx-lm", "kernels")


def read(name):
    with open(os.path.join(KERNELS, name)) as f:
        return f.read()


def rows_variant(rows, acc=4):
    """R value rows per warp; the prologue is its own (no early return: the lane sums
    need the whole warp, so a lane past the last row computes a clamped row and stores
    nothing)."""
    return f"""// ROWS_PER_WARP={rows}
constexpr int R = {rows};
constexpr int L = 32 / R;
const int lane = threadIdx.x;
const int sub = lane / L;
const int li = lane % L;
const int dv_raw = (blockIdx.y * blockDim.y + threadIdx.y) * R + sub;
const bool active = dv_raw < Dv;
const int dv_idx = active ? dv_raw : Dv - 1;
const int n = blockIdx.z;
constexpr int NP = Dk / L;
constexpr int ACC = NP < {acc} ? NP : {acc};
const int T = q_shape[1];
const int b_idx = n / Hv;
const int hv_idx = n - b_idx * Hv;
const int hk_idx = hv_idx / (Hv / Hk);
const int qk_stride = Hk * Dk;
const int v_stride = Hv * Dv;
auto q_ = q + (b_idx * T * Hk + hk_idx) * Dk + li * NP;
auto k_ = k + (b_idx * T * Hk + hk_idx) * Dk + li * NP;
auto v_ = v + (b_idx * T * Hv + hv_idx) * Dv + dv_idx;
auto y_ = y + (b_idx * T * Hv + hv_idx) * Dv + dv_idx;
auto g_ = g + b_idx * T * Hv + hv_idx;
auto beta_ = beta + b_idx * T * Hv + hv_idx;
const int row = (n * Dv + dv_idx) * Dk + li * NP;
float s[NP];
#pragma unroll
for (int i = 0; i < NP; ++i) s[i] = static_cast<float>(state_in[row + i]);
float k_next[NP], q_next[NP];
float v_next = 0.0f, g_next = 0.0f, beta_next = 0.0f;
if (T > 0) {{
  gdn_load_row<KT, NP>(k_, k_next);
  gdn_load_row<KT, NP>(q_, q_next);
  v_next = static_cast<float>(v_[0]);
  g_next = static_cast<float>(g_[0]);
  beta_next = static_cast<float>(beta_[0]);
}}
for (int t = 0; t < T; ++t) {{
  float kk[NP], qq[NP];
#pragma unroll
  for (int i = 0; i < NP; ++i) {{ kk[i] = k_next[i]; qq[i] = q_next[i]; }}
  const float vv = v_next, decay = g_next, strength = beta_next;
  if (t + 1 < T) {{
    const int u = t + 1;
    gdn_load_row<KT, NP>(k_ + u * qk_stride, k_next);
    gdn_load_row<KT, NP>(q_ + u * qk_stride, q_next);
    v_next = static_cast<float>(v_[u * v_stride]);
    g_next = static_cast<float>(g_[u * Hv]);
    beta_next = static_cast<float>(beta_[u * Hv]);
  }}
  float a_kv[ACC], a_sq[ACC], a_kq[ACC];
#pragma unroll
  for (int j = 0; j < ACC; ++j) {{ a_kv[j] = 0.0f; a_sq[j] = 0.0f; a_kq[j] = 0.0f; }}
#pragma unroll
  for (int i = 0; i < NP; ++i) {{
    s[i] = s[i] * decay;
    a_kv[i % ACC] += s[i] * kk[i];
    a_sq[i % ACC] += s[i] * qq[i];
    a_kq[i % ACC] += kk[i] * qq[i];
  }}
  float kv_mem = 0.0f, sq = 0.0f, kq = 0.0f;
#pragma unroll
  for (int j = 0; j < ACC; ++j) {{ kv_mem += a_kv[j]; sq += a_sq[j]; kq += a_kq[j]; }}
#pragma unroll
  for (int off = L / 2; off > 0; off >>= 1) {{
    kv_mem += __shfl_xor_sync(0xffffffffu, kv_mem, off);
    sq += __shfl_xor_sync(0xffffffffu, sq, off);
    kq += __shfl_xor_sync(0xffffffffu, kq, off);
  }}
  const float delta = (vv - kv_mem) * strength;
#pragma unroll
  for (int i = 0; i < NP; ++i) s[i] = s[i] + kk[i] * delta;
  if (li == 0 && active) y_[t * v_stride] = static_cast<InT>(sq + delta * kq);
}}
if (active) {{
#pragma unroll
  for (int i = 0; i < NP; ++i) state_out[row + i] = s[i];
}}
"""


SMEM_STAGE_LOAD = """      const int t = {t0} + c;
      gdn_load_row<KT, NP>(k_ + t * qk_stride, kr[j]);
      gdn_load_row<InT, NP>(q_ + t * qk_stride, qr[j]);
      gb[j][0] = static_cast<float>(g_[t * Hv]);
      gb[j][1] = static_cast<float>(beta_[t * Hv]);
      gb[j][2] = (lane < W && dv0 + lane < Dv) ? static_cast<float>(v_[t * v_stride + lane]) : 0.0f;
"""


def smem_variant(warps, chunk, pipelined=False):
    """One value row per warp as shipped, but a block's W warps (W consecutive rows of one
    head) stage C tokens at a time in shared memory: each token's key and query rows are
    loaded, converted and summed (k . q) once per block instead of once per row, the
    per-token scalars (g, beta, k . q) and the block's v values sit beside them, and the
    block's y values leave in one coalesced store per token after the round. A lane keeps
    Dk / 32 contiguous state elements (vector loads of the state). `pipelined`: the next
    round's global loads are issued into registers before the current round's tokens are
    walked."""
    first = "" if not pipelined else (
        "#pragma unroll\nfor (int j = 0; j < J; ++j) {\n  const int c = w + W * j;\n"
        "  if (c < C && c < T) {\n" + SMEM_STAGE_LOAD.format(t0="0") + "  }\n}\n")
    here = "" if pipelined else SMEM_STAGE_LOAD.format(t0="t0")
    ahead = "" if not pipelined else (
        "#pragma unroll\n  for (int j = 0; j < J; ++j) {\n    const int c = w + W * j;\n"
        "    if (c < C && t0 + C + c < T) {\n" + SMEM_STAGE_LOAD.format(t0="t0 + C") + "    }\n  }\n")
    return f"""// ROWS_PER_WARP=1
// WARPS_PER_BLOCK={warps}
constexpr int W = {warps};
constexpr int C = {chunk};
constexpr int NP = Dk / 32;
constexpr int J = (C + W - 1) / W;
const int lane = threadIdx.x;
const int w = threadIdx.y;
const int dv0 = blockIdx.y * W;
const bool active = dv0 + w < Dv;
const int dv_idx = active ? dv0 + w : Dv - 1;
const int n = blockIdx.z;
const int T = q_shape[1];
const int b_idx = n / Hv;
const int hv_idx = n - b_idx * Hv;
const int hk_idx = hv_idx / (Hv / Hk);
const int qk_stride = Hk * Dk;
const int v_stride = Hv * Dv;
auto q_ = q + (b_idx * T * Hk + hk_idx) * Dk + lane * NP;
auto k_ = k + (b_idx * T * Hk + hk_idx) * Dk + lane * NP;
auto v_ = v + (b_idx * T * Hv + hv_idx) * Dv + dv0;
auto y_ = y + (b_idx * T * Hv + hv_idx) * Dv + dv0;
auto g_ = g + b_idx * T * Hv + hv_idx;
auto beta_ = beta + b_idx * T * Hv + hv_idx;
const int row = (n * Dv + dv_idx) * Dk + lane * NP;
__shared__ float k_s[C][Dk];
__shared__ float q_s[C][Dk];
__shared__ float tok_s[C][4];
__shared__ float v_s[C][W];
__shared__ float y_s[C][W];
float s[NP];
gdn_load_row<float, NP>(state_in + row, s);
// This warp's staged tokens of a round: c = w + W j.
float kr[J][NP], qr[J][NP], gb[J][3];
{first}for (int t0 = 0; t0 < T; t0 += C) {{
  const int len = min(C, T - t0);
#pragma unroll
  for (int j = 0; j < J; ++j) {{
    const int c = w + W * j;
    if (c < len) {{
{here}      float kq = 0.0f;
#pragma unroll
      for (int i = 0; i < NP; ++i) {{
        k_s[c][lane * NP + i] = kr[j][i];
        q_s[c][lane * NP + i] = qr[j][i];
        kq += kr[j][i] * qr[j][i];
      }}
      kq = gdn_lane_sum(kq);
      if (lane == 0) {{
        tok_s[c][0] = gb[j][0];
        tok_s[c][1] = gb[j][1];
        tok_s[c][2] = kq;
      }}
      if (lane < W) v_s[c][lane] = gb[j][2];
    }}
  }}
  __syncthreads();
  {ahead}for (int c = 0; c < len; ++c) {{
    float kk[NP], qq[NP];
#pragma unroll
    for (int i = 0; i < NP; ++i) {{
      kk[i] = k_s[c][lane * NP + i];
      qq[i] = q_s[c][lane * NP + i];
    }}
    const float decay = tok_s[c][0], strength = tok_s[c][1], kq = tok_s[c][2];
    const float vv = v_s[c][w];
    float kv_mem = 0.0f, sq = 0.0f;
#pragma unroll
    for (int i = 0; i < NP; ++i) {{
      s[i] = s[i] * decay;
      kv_mem += s[i] * kk[i];
      sq += s[i] * qq[i];
    }}
    kv_mem = gdn_lane_sum(kv_mem);
    sq = gdn_lane_sum(sq);
    const float delta = (vv - kv_mem) * strength;
#pragma unroll
    for (int i = 0; i < NP; ++i) s[i] = s[i] + kk[i] * delta;
    if (lane == 0) y_s[c][w] = sq + delta * kq;
  }}
  __syncthreads();
  for (int e = w * 32 + lane; e < len * W; e += W * 32) {{
    const int c = e / W, r = e - c * W;
    if (dv0 + r < Dv) y_[(t0 + c) * v_stride + r] = static_cast<InT>(y_s[c][r]);
  }}
}}
if (active) {{
#pragma unroll
  for (int i = 0; i < NP; ++i) state_out[row + i] = s[i];
}}
"""


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
    shipped = "// ROWS_PER_WARP=1\n" + read("cuda_prologue.inc") + read("gated_delta_step.inc")
    files = {"a_shipped.cu": shipped}
    for rows in (1, 2, 4, 8):
        files[f"rows{rows}.cu"] = rows_variant(rows)
    files["rows4_acc1.cu"] = rows_variant(4, acc=1)
    for warps, chunk in ((4, 16), (4, 32), (8, 16), (8, 32), (16, 16)):
        files[f"smem_w{warps}_c{chunk}.cu"] = smem_variant(warps, chunk)
    files["smem_w8_c16_pipelined.cu"] = smem_variant(8, 16, pipelined=True)
    files["smem_w4_c32_pipelined.cu"] = smem_variant(4, 32, pipelined=True)
    no_sums = shipped
    for name in ("kv_mem", "sq", "kq"):
        no_sums = replaced(no_sums, f"{name} = gdn_lane_sum({name});", "")
    files["z_diag_no_lane_sums.cu"] = no_sums
    files["z_diag_no_loads.cu"] = replaced(shipped, "if (t + 1 < T) {", "if (false) {")
    files["z_diag_y_once.cu"] = replaced(shipped, "if (lane == 0) {", "if (lane == 0 && t + 1 == T) {")
    for name, text in files.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    print(f"{len(files)} kernel sources in {out}")
    if "--nvrtc" in sys.argv and not nvrtc(out, sorted(files)):
        raise SystemExit("a variant does not compile")


if __name__ == "__main__":
    main()
