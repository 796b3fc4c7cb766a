//! CUDA kernels for one decode token of gated attention (Qwen 3.5, Qwen3-Next: per-head
//! q/k RMSNorm, partial RoPE, GQA, output × `sigmoid(gate)`).
//!
//! MLX's CUDA backend has no single-query attention kernel for head dim 256, so
//! one token's attention runs as MLX's fallback ops (about 30 graph nodes per layer:
//! transposes, broadcasts for the grouped heads, two matmuls, a softmax), each a kernel
//! and host work. Here it is two custom kernels and MLX's two cache writes:
//!
//! * [`qk_prep`] (`mlx-lm/kernels/attn_qk_prep.cu.inc`): the q/k RMSNorms and the RoPE of every
//!   head, one block per head;
//! * [`attend`] (`mlx-lm/kernels/attn_decode.cu.inc`, `attn_decode_merge.cu.inc`): softmax
//!   attention of each query head over the valid columns of the cache buffers, split over
//!   the keys (flash-decoding: one block per key/value head and [`SPLIT`] positions, which
//!   serves the query heads of the group together; then one merge per head, its splits
//!   shared by up to 1,024 threads), times the output gate. The split keeps long contexts
//!   on the whole GPU: one block per head left most of an H200 idle at 16k positions.
//!
//! Both take a batch whose sequences have different lengths as [`KvCache`] keeps it:
//! aligned on the right, row `i` after `left_padding[i]` columns that it never reads, at
//! its own RoPE position. A row's result is then bit-identical to the same sequence
//! decoded alone (each warp meets the same keys in the same order), so a continuous batch
//! stays on these kernels.
//!
//! [`KvCache`]: crate::cache::KvCache
//!
//! A model's plain attention ops stay the reference, the prefill path and the path on the
//! CPU and on Metal (where MLX's own attention kernel covers these shapes); mlx-lm's
//! `tests/lm/attention_kernel.rs` compares the two on a CUDA GPU.

use crate::error::{Error, Result};
use crate::kernels::gpu::{self, f32_constant, GpuBackend};
use mlx_rs::fast::{KernelConfig, TemplateArg};
use mlx_rs::{Array, Dtype};

/// Body of the q/k norm + RoPE kernel.
pub const QK_PREP_BODY: &str = include_str!("../../kernels/attn_qk_prep.cu.inc");
/// Body of the attention kernel's first part (the partial attention of each split).
pub const DECODE_BODY: &str = include_str!("../../kernels/attn_decode.cu.inc");
/// Body of the attention kernel's second part (the merge of the splits and the gate).
pub const MERGE_BODY: &str = include_str!("../../kernels/attn_decode_merge.cu.inc");
/// Cache positions per split of the attention kernel. A constant, not a function of the
/// length: a row's splits are then the same alone or in a padded batch. 64 rather than
/// 128: twice the blocks, and on an H100 at 2k context the split kernel took 18.8 µs a
/// launch against 21.6 and the merge 5.0 against 5.4 (session 27); at 16k the split's
/// mean fell 42.4 → 38.5 µs and the merge rose 6.5 → 7.8 (session 26).
pub const SPLIT: i32 = 64;
/// Warps per block of the attention kernel's first part.
const WARPS: i32 = 8;
/// Threads per block of the attention kernel's second part (the merge), at most.
pub const MERGE_THREADS: i32 = 1024;
/// Rows of a merge block at most: each row of `D` threads sums its share of the splits.
pub const MERGE_MAX_ROWS: i32 = 8;

/// Rows of threads of a merge block for head dim `d`: as many as [`MERGE_THREADS`] allows,
/// 1 to [`MERGE_MAX_ROWS`].
fn merge_rows(d: i32) -> i32 {
    (MERGE_THREADS / d.max(1)).clamp(1, MERGE_MAX_ROWS)
}

/// Query heads per block of the attention kernel's first part: the largest divisor of the
/// group (query heads per key/value head) with at most 1,024 values per head dim, so a
/// lane holds at most 32 query and 32 output values and the block's shared memory at most
/// `WARPS × 1,024` floats (32 KiB).
fn heads_per_block(h: AttnHeads) -> i32 {
    let group = h.heads / h.kv_heads;
    let most = (1024 / h.head_dim).max(1);
    (1..=group.min(most))
        .rev()
        .find(|k| group % k == 0)
        .unwrap_or(1)
}

/// Head layout of an attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnHeads {
    /// Query heads.
    pub heads: i32,
    /// Key/value heads (divides `heads`).
    pub kv_heads: i32,
    /// Head dim.
    pub head_dim: i32,
    /// Rotated dims (even, at most `head_dim`).
    pub rope_dims: i32,
}

/// Whether the kernels take these shapes and dtype.
pub fn fits(h: AttnHeads, dtype: Dtype) -> bool {
    h.heads > 0
        && h.kv_heads > 0
        && h.heads % h.kv_heads == 0
        && h.head_dim % 32 == 0
        && (32..=1024).contains(&h.head_dim)
        && h.rope_dims % 2 == 0
        && (0..=h.head_dim).contains(&h.rope_dims)
        && matches!(dtype, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
}

fn bad(msg: String) -> Error {
    Error::InvalidArgument(format!("attention decode kernel: {msg}"))
}

/// The kernels' per-token `meta` input, `[n, cap, n − 1, left_padding[0], …]` int32, for a
/// token that makes a cache of capacity `cap` hold `n` columns (so row `i` sits at
/// position `n − 1 − left_padding[i]`).
///
/// [`StepMeta::new`] writes it on the host. On CUDA, MLX keeps such an array in managed
/// memory that the GPU must fetch (a page fault) the first time a kernel reads it: every
/// decode step with fresh ones paid ~190 µs of GPU time in its first attention kernel
/// (H100, Nsight Compute). So [`attend`] also returns the next token's meta, computed on
/// the device, and a cache keeps it for the next step ([`KvCache::step_meta`]).
///
/// [`KvCache::step_meta`]: crate::cache::KvCache::step_meta
#[derive(Clone, Debug)]
pub struct StepMeta {
    array: Array,
    n: i32,
    cap: i32,
    b: i32,
    left_padding: Vec<i32>,
    on_device: bool,
}

impl StepMeta {
    /// The meta of a token after which a batch of `b` rows holds `n` columns of a cache of
    /// capacity `cap`, row `i` after `left_padding[i]` columns (`b` values in `0..n`, or
    /// empty for none).
    pub fn new(n: i32, cap: i32, b: i32, left_padding: &[i32]) -> Result<StepMeta> {
        if b < 1 || !(1..=cap).contains(&n) {
            return Err(bad(format!(
                "a step meta of {n} columns of {cap} for a batch of {b}"
            )));
        }
        if !left_padding.is_empty() && left_padding.len() != b as usize {
            return Err(bad(format!(
                "{} left paddings for a batch of {b}",
                left_padding.len()
            )));
        }
        if let Some(p) = left_padding.iter().find(|&&p| !(0..n).contains(&p)) {
            return Err(bad(format!("left padding {p} is outside 0..{n}")));
        }
        let mut v = Vec::with_capacity(3 + b as usize);
        v.extend([n, cap, n - 1]);
        match left_padding.is_empty() {
            true => v.extend(std::iter::repeat_n(0, b as usize)),
            false => v.extend_from_slice(left_padding),
        }
        Ok(StepMeta {
            array: Array::from_slice(&v, &[3 + b])?,
            n,
            cap,
            b,
            left_padding: left_padding.to_vec(),
            on_device: false,
        })
    }

    /// Columns after the token (its position plus one, padding included).
    pub fn n(&self) -> i32 {
        self.n
    }

    /// Capacity of the cache buffers the kernels read.
    pub fn cap(&self) -> i32 {
        self.cap
    }

    /// Each row's left padding, as given (empty for none).
    pub fn left_padding(&self) -> &[i32] {
        &self.left_padding
    }

    /// Rows of the batch.
    pub fn batch(&self) -> i32 {
        self.b
    }

    /// Whether a kernel computed it ([`attend`]'s second result) rather than the host.
    pub fn on_device(&self) -> bool {
        self.on_device
    }

    /// The int32 array the kernels read.
    pub fn array(&self) -> &Array {
        &self.array
    }
}

/// The q/k RMSNorms and RoPE of one token: `q_full` `[B, H·2·D]` (q_proj output, query
/// then gate values per head), `k` `[B, KV·D]`, norm weights `[D]`, `inv_freq`
/// `[RD / 2]` fp32, row `i` at position `meta.n() − 1 − meta.left_padding()[i]`. Returns
/// q `[B, H, 1, D]` and k `[B, KV, 1, D]`.
#[allow(clippy::too_many_arguments)]
pub fn qk_prep(
    h: AttnHeads,
    q_full: &Array,
    k: &Array,
    q_norm: &Array,
    k_norm: &Array,
    inv_freq: &Array,
    meta: &StepMeta,
    eps: f32,
) -> Result<(Array, Array)> {
    let AttnHeads {
        heads,
        kv_heads,
        head_dim: d,
        rope_dims,
    } = h;
    let b = q_full.try_dim(0)?;
    if !fits(h, q_full.dtype())
        || q_full.shape() != [b, heads * 2 * d]
        || k.shape() != [b, kv_heads * d]
        || k.dtype() != q_full.dtype()
        || q_norm.shape() != [d]
        || k_norm.shape() != [d]
        || inv_freq.shape() != [rope_dims / 2]
        || inv_freq.dtype() != Dtype::Float32
        || meta.b != b
    {
        return Err(bad(format!(
            "q_full {:?}, k {:?}, norms {:?} {:?}, inv_freq {:?}, a step meta of {} rows \
             do not fit {h:?}",
            q_full.shape(),
            k.shape(),
            q_norm.shape(),
            k_norm.shape(),
            inv_freq.shape(),
            meta.b
        )));
    }
    let act = q_full.dtype();
    let kern = gpu::kernel(
        GpuBackend::Cuda,
        "attn_qk_prep",
        &["q_full", "k", "q_w", "k_w", "inv_freq", "meta", "eps"],
        &["q_out", "k_out"],
        |_| QK_PREP_BODY.to_string(),
    )?;
    let config = KernelConfig::new([d, 1, b * (heads + kv_heads)], [d, 1, 1])
        .output(&[b, heads, 1, d], act)
        .output(&[b, kv_heads, 1, d], act)
        .template("T", TemplateArg::Dtype(act))
        .template("WT", TemplateArg::Dtype(q_norm.dtype()))
        .template("KWT", TemplateArg::Dtype(k_norm.dtype()))
        .template("D", TemplateArg::Int(d))
        .template("H", TemplateArg::Int(heads))
        .template("KV", TemplateArg::Int(kv_heads))
        .template("RD", TemplateArg::Int(rope_dims));
    let eps = f32_constant(eps)?;
    let out = kern.apply(
        &[q_full, k, q_norm, k_norm, inv_freq, &meta.array, &eps],
        &config,
    )?;
    let [q, k] = gpu::outputs(out, "attention q/k kernel")?;
    Ok((q, k))
}

/// Attention of one token: `q` `[B, H, 1, D]` over the cache buffers `keys`, `values`
/// (`[B, KV, cap, D]`, `cap` = `meta.cap()`), row `i` over positions
/// `meta.left_padding()[i]..meta.n()`, gated by the second half of each head's `q_full`
/// values. Returns `[B, H·D]` and the next token's meta (one more column, the same
/// capacity and padding), computed on the device.
pub fn attend(
    h: AttnHeads,
    q: &Array,
    keys: &Array,
    values: &Array,
    q_full: &Array,
    meta: &StepMeta,
) -> Result<(Array, StepMeta)> {
    let AttnHeads {
        heads,
        kv_heads,
        head_dim: d,
        ..
    } = h;
    let b = q.try_dim(0)?;
    let cap = keys.try_dim(2)?;
    if !fits(h, q.dtype())
        || q.shape() != [b, heads, 1, d]
        || keys.shape() != [b, kv_heads, cap, d]
        || values.shape() != keys.shape()
        || q_full.shape() != [b, heads * 2 * d]
        || keys.dtype() != q.dtype()
        || values.dtype() != q.dtype()
        || q_full.dtype() != q.dtype()
        || meta.cap != cap
        || !(1..=cap).contains(&meta.n)
        || meta.b != b
    {
        return Err(bad(format!(
            "q {:?}, cache {:?} / {:?}, q_full {:?}, a step meta of {} of {} columns for \
             {} rows do not fit {h:?}",
            q.shape(),
            keys.shape(),
            values.shape(),
            q_full.shape(),
            meta.n,
            meta.cap,
            meta.b
        )));
    }
    let n = meta.n;
    let act = q.dtype();
    let splits = (n + SPLIT - 1) / SPLIT;
    let part = gpu::kernel(
        GpuBackend::Cuda,
        "attn_decode_split",
        &["q", "keys", "values", "meta", "scale"],
        &["part_o", "part_ml"],
        |_| DECODE_BODY.to_string(),
    )?;
    let gb = heads_per_block(h);
    let config = KernelConfig::new([32 * splits, WARPS, b * heads / gb], [32, WARPS, 1])
        .output(&[b, heads, splits, d], Dtype::Float32)
        .output(&[b, heads, splits, 2], Dtype::Float32)
        .template("T", TemplateArg::Dtype(act))
        .template("D", TemplateArg::Int(d))
        .template("H", TemplateArg::Int(heads))
        .template("KV", TemplateArg::Int(kv_heads))
        .template("GB", TemplateArg::Int(gb))
        .template("WARPS", TemplateArg::Int(WARPS))
        .template("L", TemplateArg::Int(SPLIT));
    let scale = f32_constant((d as f32).powf(-0.5))?;
    let out = part.apply(&[q, keys, values, &meta.array, &scale], &config)?;
    let [part_o, part_ml] = gpu::outputs(out, "attention decode kernel")?;
    let merge = gpu::kernel(
        GpuBackend::Cuda,
        "attn_decode_merge",
        &["part_o", "part_ml", "q_full", "meta"],
        &["out", "meta_next"],
        |_| MERGE_BODY.to_string(),
    )?;
    let r = merge_rows(d);
    let config = KernelConfig::new([d, r, b * heads], [d, r, 1])
        .output(&[b, heads * d], act)
        .output(&[3 + b], Dtype::Int32)
        .template("T", TemplateArg::Dtype(act))
        .template("D", TemplateArg::Int(d))
        .template("H", TemplateArg::Int(heads))
        .template("L", TemplateArg::Int(SPLIT))
        .template("R", TemplateArg::Int(r));
    let out = merge.apply(&[&part_o, &part_ml, q_full, &meta.array], &config)?;
    let [out, next] = gpu::outputs(out, "attention merge kernel")?;
    let next = StepMeta {
        array: next,
        n: n + 1,
        cap,
        b,
        left_padding: meta.left_padding.clone(),
        on_device: true,
    };
    Ok((out, next))
}
