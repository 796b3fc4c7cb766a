#!/usr/bin/env python3
"""Runs the CUDA attention decode kernels (mlx-lm/kernels/attn_*.cu.inc) on the CPU.

The kernels of mlx-lm/src/kernels/attention.rs — the q/k norms + RoPE ("qk_prep") and the
attention over the cache times the gate ("attend": the partial attention of each split of
the cache, "attend_split", then the merge of the splits and the gate, "attend_merge") —
are assembled as MLX 0.32.2's CUDA
backend assembles a custom kernel (as in emulate.py: header order, signature from the
input dtypes, template constants, body), compiled with the host C++ compiler against
shim_cuda.h, where each block runs all its threads at once (a warp is 32 of them, shared
memory is shared by the block's threads, __syncthreads is a barrier), launched over the
grid attention.rs asks for (its WARPS and SPLIT constants are read from there), under
AddressSanitizer (unless GDN_EMUL_NO_ASAN is set), outputs pre-filled with NaN (so the
merge reading a split that no block wrote shows as NaN).

Each case is a left-padded batch as mlx-lm's KvCache holds one: rows aligned on the right,
row b after meta[3 + b] padding columns filled with NaN (read, they would poison the
output), and NaN past the valid columns too. Checked:
  * against a NumPy reference of each row over its own columns at its own position;
  * bit for bit against the same row run alone: a batch of one, no padding, its columns
    moved to the front, at its own position (what a sequence decoded alone computes), so a
    sequence's tokens do not depend on the batch it decodes in.
The merge also runs alone on random split results of 2,100 splits (long contexts: more
splits than its block has threads, three stagings of its weights), checked the same two
ways.

Usage: python3 emulate_attention.py [--keep DIR]
Exit status 0 when every case matches.
"""

import argparse
import os
import re
import shutil
import sys
import tempfile

import numpy as np

from emulate import CPP_IO, HERE, bf16_round, build_and_run, read, rnd

ATTN_RS = os.path.join(HERE, "..", "..", "..", "..", "mlx-lm", "src", "kernels", "attention.rs")
_ATTN_SRC = open(ATTN_RS).read()
WARPS = int(re.search(r"const WARPS: i32 = (\d+);", _ATTN_SRC).group(1))
SPLIT = int(re.search(r"pub const SPLIT: i32 = (\d+);", _ATTN_SRC).group(1))
MERGE_THREADS = int(re.search(r"pub const MERGE_THREADS: i32 = (\d+);", _ATTN_SRC).group(1))
MERGE_MAX_ROWS = int(re.search(r"pub const MERGE_MAX_ROWS: i32 = (\d+);", _ATTN_SRC).group(1))
TYPES = {"float32": "float", "bfloat16": "__nv_bfloat16"}

# name: (body, inputs [(name, role)], outputs [(name, role)])
KERNELS = {
    "qk_prep": ("attn_qk_prep.cu.inc",
                [("q_full", "act"), ("k", "act"), ("q_w", "act"), ("k_w", "act"),
                 ("inv_freq", "f32"), ("meta", "i32"), ("eps", "f32")],
                [("q_out", "act"), ("k_out", "act")]),
    "attend_split": ("attn_decode.cu.inc",
                     [("q", "act"), ("keys", "act"), ("values", "act"), ("meta", "i32"),
                      ("scale", "f32")],
                     [("part_o", "f32"), ("part_ml", "f32")]),
    "attend_merge": ("attn_decode_merge.cu.inc",
                     [("part_o", "f32"), ("part_ml", "f32"), ("q_full", "act"),
                      ("meta", "i32")],
                     [("out", "act"), ("meta_next", "i32")]),
}


def heads_per_block(H, KV, D):
    """attention.rs's heads_per_block: the largest divisor of H / KV with at most 1024 / D."""
    group = H // KV
    most = max(1024 // D, 1)
    return next(k for k in range(min(group, most), 0, -1) if group % k == 0)


def ctype(role, act):
    return {"act": TYPES[act], "f32": "float", "i32": "int32_t"}[role]


def source(kernel, act, consts, arrays, out_shapes, grid, block):
    """The kernel as MLX writes it, and a main() that loads the inputs, launches every
    block of `grid` (one at a time) and saves the outputs."""
    body_file, inputs, outputs = KERNELS[kernel]
    src = '#include "shim_cuda.h"\n#include <cstdio>\n#include <string>\n'
    src += read("cuda_header.cuh") + read("gdn_common.h")
    src += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    src += "__global__ void attn_kernel(\n"
    src += "".join(f"    const {ctype(r, act)}* {n},\n" for n, r in inputs)
    src += ",\n".join(f"    {ctype(r, act)}* {n}" for n, r in outputs) + ") {\n"
    src += f"  using T = {TYPES[act]};\n"
    if kernel == "qk_prep":
        src += f"  using WT = {TYPES[act]};\n  using KWT = {TYPES[act]};\n"
    src += "".join(f"  constexpr int {k} = {v};\n" for k, v in consts.items())
    src += "\n" + read(body_file) + "\n}\n\n} // namespace mlx::core::cu\n\n"
    src += CPP_IO + """int main(int, char** argv) {
  const char* dir = argv[1];
"""
    for n, r in inputs:
        src += f'  auto {n} = load<{ctype(r, act)}>(dir, "{n}", {arrays[n].size});\n'
    for n, r in outputs:
        size = int(np.prod(out_shapes[n]))
        src += f"  std::vector<{ctype(r, act)}> {n}({size}, {ctype(r, act)}(NAN));\n"
    bx, by, bz = block
    assert grid[0] % bx == 0 and grid[1] == by and bz == 1
    call = ", ".join([f"{n}.data()" for n, _ in inputs] + [f"{n}.data()" for n, _ in outputs])
    src += f"""  for (unsigned z = 0; z < {grid[2]}; ++z)
    for (unsigned x = 0; x < {grid[0] // bx}; ++x)
      emul::run_block({bx * by}, [&](int t) {{
        threadIdx = dim3{{(unsigned)(t % {bx}), (unsigned)(t / {bx}), 0}};
        blockIdx = dim3{{x, 0, z}};
        blockDim = dim3{{{bx}, {by}, 1}};
        gridDim = dim3{{{grid[0] // bx}, 1, {grid[2]}}};
        mlx::core::cu::attn_kernel({call});
      }});
"""
    src += "".join(f'  save(dir, "{n}", {n});\n' for n, _ in outputs)
    return src + "  return 0;\n}\n"


def run(kernel, act, consts, arrays, out_shapes, grid, block, workdir, tag):
    """Compiles and runs one launch; the outputs as float32 arrays, or an error string."""
    case_dir = os.path.join(workdir, tag)
    os.makedirs(case_dir, exist_ok=True)
    for name, a in arrays.items():
        np.asarray(a, np.float32).tofile(os.path.join(case_dir, name + ".bin"))
    err = build_and_run(case_dir, source(kernel, act, consts, arrays, out_shapes, grid, block))
    if err:
        return err
    return {n: np.fromfile(os.path.join(case_dir, n + ".bin"), np.float32).reshape(s)
            for n, s in out_shapes.items()}


def f32(x):
    return np.asarray(x, np.float32)


# ---------------------------------------------------------------------------------------
# qk_prep: per-head RMSNorm, RoPE of the first RD dims at each row's position
# ---------------------------------------------------------------------------------------

def qk_prep_launch(act, dims, q_full, k, q_w, k_w, inv_freq, position, padding, workdir, tag):
    B, H, KV, D, RD = dims
    meta = step_meta(position + 1, position + 1, padding)
    arrays = dict(q_full=q_full, k=k, q_w=q_w, k_w=k_w, inv_freq=inv_freq, meta=meta,
                  eps=np.array([1e-6], np.float32))
    consts = dict(D=D, H=H, KV=KV, RD=RD)
    shapes = dict(q_out=(B, H, 1, D), k_out=(B, KV, 1, D))
    return run("qk_prep", act, consts, arrays, shapes, (D, 1, B * (H + KV)), (D, 1, 1),
               workdir, tag)


def qk_prep_reference(act, dims, q_full, k, q_w, k_w, inv_freq, positions):
    B, H, KV, D, RD = dims
    q = q_full.reshape(B, H, 2 * D)[:, :, :D]
    k = k.reshape(B, KV, D)

    def one(x, w):
        scale = 1.0 / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6)
        normed = rnd(f32(x * scale) * w, act)
        half = RD // 2
        angle = f32(positions)[:, None, None] * inv_freq[None, None, :]
        c, s = np.cos(angle), np.sin(angle)
        out = normed.copy()
        a, b = normed[..., :half], normed[..., half:RD]
        out[..., :half] = a * c - b * s
        out[..., half:RD] = a * s + b * c
        return rnd(out, act)[:, :, None, :]

    return dict(q_out=one(q, q_w), k_out=one(k, k_w))


def qk_prep_case(act, dims, position, padding, workdir, seed):
    B, H, KV, D, RD = dims
    rng = np.random.default_rng(seed)
    q_full = rnd(rng.standard_normal((B, H * 2 * D)), act)
    k = rnd(rng.standard_normal((B, KV * D)), act)
    q_w, k_w = rnd(1 + 0.3 * rng.standard_normal(D), act), rnd(1 + 0.3 * rng.standard_normal(D), act)
    inv_freq = f32(1e4 ** (-2.0 * np.arange(RD // 2) / RD))
    tag = f"qk_prep_{act}_{'x'.join(map(str, dims))}_p{position}_{'-'.join(map(str, padding))}"
    got = qk_prep_launch(act, dims, q_full, k, q_w, k_w, inv_freq, position, padding, workdir, tag)
    if isinstance(got, str):
        return False, f"{tag}: {got}"
    positions = [position - p for p in padding]
    want = qk_prep_reference(act, dims, q_full, k, q_w, k_w, inv_freq, positions)
    msgs, ok = [], True
    for name in ("q_out", "k_out"):
        err = np.max(np.abs(got[name] - want[name])) / np.max(np.abs(want[name]))
        tol = 1e-5 if act == "float32" else 1 / 128
        ok &= bool(np.all(np.isfinite(got[name]))) and err <= tol
        msgs.append(f"{name} err/scale {err:.1e}")
    for b, p in enumerate(padding):
        alone = qk_prep_launch(act, (1, H, KV, D, RD), q_full[b:b + 1], k[b:b + 1], q_w, k_w,
                               inv_freq, position - p, [0], workdir, f"{tag}_row{b}")
        if isinstance(alone, str):
            return False, f"{tag} row {b} alone: {alone}"
        same = all(np.array_equal(got[n][b:b + 1], alone[n]) for n in ("q_out", "k_out"))
        ok &= same
        msgs.append(f"row {b} {'bit-equal' if same else 'DIFFERS'} alone")
    return ok, f"{tag}: " + ", ".join(msgs)


# ---------------------------------------------------------------------------------------
# attend: softmax attention over each row's own columns, times sigmoid(gate)
# ---------------------------------------------------------------------------------------

def attend_launch(act, dims, q, keys, values, q_full, n, padding, workdir, tag):
    """The two launches of attention.rs's attend: the splits, then their merge."""
    B, H, KV, D, cap = dims
    meta = step_meta(n, cap, padding)
    splits = (n + SPLIT - 1) // SPLIT
    gb = heads_per_block(H, KV, D)
    arrays = dict(q=q, keys=keys, values=values, meta=meta,
                  scale=np.array([D ** -0.5], np.float32))
    consts = dict(D=D, H=H, KV=KV, GB=gb, WARPS=WARPS, L=SPLIT)
    parts = run("attend_split", act, consts, arrays,
                dict(part_o=(B, H, splits, D), part_ml=(B, H, splits, 2)),
                (32 * splits, WARPS, B * H // gb), (32, WARPS, 1), workdir, tag + "_split")
    if isinstance(parts, str):
        return parts
    arrays = dict(part_o=parts["part_o"], part_ml=parts["part_ml"], q_full=q_full, meta=meta)
    r = min(max(MERGE_THREADS // D, 1), MERGE_MAX_ROWS)  # attention.rs's merge_rows
    return run("attend_merge", act, dict(D=D, H=H, L=SPLIT, R=r), arrays,
               dict(out=(B, H * D), meta_next=(3 + B,)), (D, r, B * H), (D, r, 1), workdir,
               tag + "_merge")


def attend_reference(act, dims, q, keys, values, q_full, n, padding):
    B, H, KV, D, cap = dims
    out = np.zeros((B, H, D))
    for b in range(B):
        for h in range(H):
            g = h // (H // KV)
            kk = keys[b, g, padding[b]:n].astype(np.float64)
            vv = values[b, g, padding[b]:n].astype(np.float64)
            s = kk @ (q[b, h, 0].astype(np.float64) * D ** -0.5)
            p = np.exp(s - s.max())
            out[b, h] = p @ vv / p.sum()
    gate = q_full.reshape(B, H, 2 * D)[:, :, D:]
    sig = rnd(1.0 / (1.0 + np.exp(-gate.astype(np.float64))), act)
    return rnd(rnd(out, act) * sig, act).reshape(B, H * D)


def attend_case(act, dims, n, padding, workdir, seed):
    B, H, KV, D, cap = dims
    rng = np.random.default_rng(seed)
    q = rnd(rng.standard_normal((B, H, 1, D)), act)
    q_full = rnd(rng.standard_normal((B, H * 2 * D)), act)
    col = np.arange(cap)[None, None, :, None]
    pad = np.array(padding)[:, None, None, None]
    outside = (col < pad) | (col >= n)

    def cache():
        return np.where(outside, np.nan, rnd(rng.standard_normal((B, KV, cap, D)), act))

    keys, values = cache(), cache()
    tag = f"attend_{act}_{'x'.join(map(str, dims))}_n{n}_{'-'.join(map(str, padding))}"
    got = attend_launch(act, dims, q, keys, values, q_full, n, padding, workdir, tag)
    if isinstance(got, str):
        return False, f"{tag}: {got}"
    next_ok, next_msg = next_meta_check(got, n, cap, padding)
    got = got["out"]
    want = attend_reference(act, dims, q, keys, values, q_full, n, padding)
    finite = bool(np.all(np.isfinite(got)))
    err = np.max(np.abs(got - want)) / np.max(np.abs(want)) if finite else np.inf
    tol = 1e-5 if act == "float32" else 1 / 64
    ok = finite and err <= tol and next_ok
    msgs = [f"out err/scale {err:.1e}" + ("" if finite else " (NaN: padding or tail read?)"),
            next_msg]

    def row_alone(b, p):
        length = n - p
        front = lambda a: np.where(np.arange(cap)[None, :, None] < length,
                                   np.roll(np.nan_to_num(a[b], nan=0.0), -p, axis=1), np.nan)[None]
        return attend_launch(act, (1, H, KV, D, cap), q[b:b + 1], front(keys), front(values),
                             q_full[b:b + 1], length, [0], workdir, f"{tag}_row{b}")

    return alone_checks(tag, ok, msgs, got, padding, row_alone)


def step_meta(n, cap, padding):
    """attention.rs's StepMeta::new: [n, cap, n - 1, paddings]."""
    return np.array([n, cap, n - 1, *padding], np.float32)


def next_meta_check(got, n, cap, padding):
    """The merge's meta_next: the next token's meta, one column more."""
    want = step_meta(n + 1, cap, padding)
    same = np.array_equal(got["meta_next"], want)
    return same, "meta_next " + ("right" if same else f"WRONG {got['meta_next']} != {want}")


def alone_checks(tag, ok, msgs, got, padding, row_alone):
    """Each row of `got` bit for bit against `row_alone(b, padding[b])` (the same row run
    alone); the case's (ok, message)."""
    for b, p in enumerate(padding):
        alone = row_alone(b, p)
        if isinstance(alone, str):
            return False, f"{tag} row {b} alone: {alone}"
        same = np.array_equal(got[b:b + 1], alone["out"])
        ok &= bool(same)
        msgs.append(f"row {b} {'bit-equal' if same else 'DIFFERS'} alone")
    return ok, f"{tag}: " + ", ".join(msgs)


def merge_launch(act, dims, part_o, part_ml, q_full, n, padding, workdir, tag):
    """attention.rs's merge launch alone, on given split results."""
    B, H, D = dims
    meta = step_meta(n, n, padding)
    r = min(max(MERGE_THREADS // D, 1), MERGE_MAX_ROWS)
    arrays = dict(part_o=part_o, part_ml=part_ml, q_full=q_full, meta=meta)
    return run("attend_merge", act, dict(D=D, H=H, L=SPLIT, R=r), arrays,
               dict(out=(B, H * D), meta_next=(3 + B,)), (D, r, B * H), (D, r, 1), workdir, tag)


def merge_case(act, dims, n, padding, workdir, seed):
    """The merge over many splits (more than a block's threads and than the weights it
    stages at a time) from random split results: against NumPy, and each row bit for bit
    against the same splits merged alone."""
    B, H, D = dims
    rng = np.random.default_rng(seed)
    splits = (n + SPLIT - 1) // SPLIT
    own = [(n - p + SPLIT - 1) // SPLIT for p in padding]
    part_o = np.full((B, H, splits, D), np.nan, np.float32)
    part_ml = np.full((B, H, splits, 2), np.nan, np.float32)
    for b in range(B):
        part_o[b, :, :own[b]] = rng.standard_normal((H, own[b], D))
        part_ml[b, :, :own[b], 0] = 4 * rng.standard_normal((H, own[b]))
        part_ml[b, :, :own[b], 1] = rng.uniform(1, SPLIT, (H, own[b]))
    q_full = rnd(rng.standard_normal((B, H * 2 * D)), act)
    tag = f"merge_{act}_{'x'.join(map(str, dims))}_n{n}_{'-'.join(map(str, padding))}"
    got = merge_launch(act, dims, part_o, part_ml, q_full, n, padding, workdir, tag)
    if isinstance(got, str):
        return False, f"{tag}: {got}"
    next_ok, next_msg = next_meta_check(got, n, n, padding)
    got = got["out"]
    want = np.zeros((B, H, D))
    for b in range(B):
        m = part_ml[b, :, :own[b], 0].astype(np.float64)
        f = np.exp(m - m.max(-1, keepdims=True))
        total = (part_ml[b, :, :own[b], 1] * f).sum(-1)
        want[b] = np.einsum("hs,hsd->hd", f, part_o[b, :, :own[b]]) / total[:, None]
    gate = q_full.reshape(B, H, 2 * D)[:, :, D:]
    sig = rnd(1.0 / (1.0 + np.exp(-gate.astype(np.float64))), act)
    want = rnd(rnd(want, act) * sig, act).reshape(B, H * D)
    finite = bool(np.all(np.isfinite(got)))
    err = np.max(np.abs(got - want)) / np.max(np.abs(want)) if finite else np.inf
    ok = finite and err <= (1e-5 if act == "float32" else 1 / 64) and next_ok
    msgs = [f"{max(own)} splits, out err/scale {err:.1e}", next_msg]

    def row_alone(b, p):
        return merge_launch(act, (1, H, D), part_o[b:b + 1, :, :own[b]],
                            part_ml[b:b + 1, :, :own[b]], q_full[b:b + 1], n - p, [0], workdir,
                            f"{tag}_row{b}")

    return alone_checks(tag, ok, msgs, got, padding, row_alone)


# merge alone: (B, H, D), valid columns n, left padding per row: 2,100 splits (three
# stagings of 1,024 weights, more than the 256 threads of a D-32 block), a row of 1,400
MERGE_CASES = [((2, 2, 32), 2100 * SPLIT, [0, 700 * SPLIT + 5])]
# qk_prep: (B, H, KV, D, RD), position (the cache's column count), left padding per row
QK_CASES = [
    ((1, 2, 1, 64, 16), 5, [0]),  # one sequence, no padding
    ((3, 4, 2, 32, 8), 9, [0, 2, 9]),  # padded rows, one with no earlier column
]
# attend: (B, H, KV, D, cap), valid columns n (this token's included), left padding per row
ATTEND_CASES = [
    ((1, 2, 1, 64, 64), 5, [0]),  # fewer positions than warps
    ((3, 4, 2, 32, 96), 77, [0, 40, 76]),  # padded rows: more than WARPS, fewer, just one
    ((3, 4, 2, 32, 320), 300, [0, 7, 133]),  # rows of 3, 3 and 2 splits
    ((1, 12, 1, 256, 160), 150, [0]),  # 12 query heads on one key head: 3 blocks of 4
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="folder for the generated sources and binaries")
    args = ap.parse_args()
    workdir = args.keep or tempfile.mkdtemp(prefix="attn-emul-")
    all_ok = True
    for act in ("float32", "bfloat16"):
        for i, (dims, position, padding) in enumerate(QK_CASES):
            ok, msg = qk_prep_case(act, dims, position, padding, workdir, seed=i)
            print(("ok   " if ok else "FAIL ") + msg, flush=True)
            all_ok &= bool(ok)
        for i, (dims, n, padding) in enumerate(ATTEND_CASES):
            ok, msg = attend_case(act, dims, n, padding, workdir, seed=10 + i)
            print(("ok   " if ok else "FAIL ") + msg, flush=True)
            all_ok &= bool(ok)
        for i, (dims, n, padding) in enumerate(MERGE_CASES):
            ok, msg = merge_case(act, dims, n, padding, workdir, seed=20 + i)
            print(("ok   " if ok else "FAIL ") + msg, flush=True)
            all_ok &= bool(ok)
    print("all cases match" if all_ok else "MISMATCH")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)  # sources and binaries; --keep keeps them
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
