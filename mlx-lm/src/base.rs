//! What the models' layers share, as mlx-lm's `models/base.py`: attention over a cache
//! whose peak memory stays bounded at long context.

use crate::error::Result;
use mlx_rs::fast::{self, AttentionMask};
use mlx_rs::{ops, Array};

/// Attention scores (`B · H · L · S` values) that one call of MLX's attention may hold at
/// once: 2^27, 256 MiB in bfloat16. Where MLX has no fused kernel for the shapes (head dim
/// 256 on CUDA, among others) it computes the whole `[B, H, L, S]` score matrix: at 64k
/// cached positions a 2,048-token prefill chunk of the 2B made 2 GiB of it, and more in
/// float32 for the softmax. [`scaled_dot_product_attention`] keeps each call below this.
pub const MAX_SCORES: i64 = 1 << 27;

/// `softmax(scale · Q Kᵀ + mask) V` as [`fast::scaled_dot_product_attention`] (`q`
/// `[B, H, L, D]`, `k` and `v` `[B, KV, S, D]`), with the queries taken in blocks of rows
/// when the scores would pass [`MAX_SCORES`]: a causal block attends the keys up to its
/// last query, a block under an array mask the rows of the mask that are its own. The
/// result is the same (each query row's softmax is its own), the peak memory a block's.
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: AttentionMask,
) -> Result<Array> {
    attention_in_blocks(q, k, v, scale, mask, MAX_SCORES)
}

/// [`scaled_dot_product_attention`] with at most `max_scores` scores per block (at least one
/// query row per block).
pub fn attention_in_blocks(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: AttentionMask,
    max_scores: i64,
) -> Result<Array> {
    let dims = (q.ndim() == 4 && k.ndim() == 4).then(|| (q.shape(), k.shape()));
    let Some((qs, ks)) = dims else {
        return Ok(fast::scaled_dot_product_attention(q, k, v, scale, mask)?);
    };
    let (b, h, l, d) = (qs[0], qs[1], qs[2], qs[3]);
    let s = ks[2];
    let scores = b as i64 * h as i64 * l as i64 * s as i64;
    let rows = (max_scores / (b as i64 * h as i64 * s.max(1) as i64)).max(1) as i32;
    let mask_rows = match mask {
        AttentionMask::Array(m) if m.ndim() >= 2 => Some(m.shape()[m.ndim() - 2]),
        _ => None,
    };
    // Blocks need a causal mask aligned at the end, or an array mask over the rows.
    let splittable = match mask {
        AttentionMask::Causal => s >= l,
        AttentionMask::Array(_) => matches!(mask_rows, Some(r) if r == l || r == 1),
        AttentionMask::None => true,
    };
    if scores <= max_scores || rows >= l || !splittable {
        return Ok(fast::scaled_dot_product_attention(q, k, v, scale, mask)?);
    }
    let mut outs = Vec::with_capacity(((l + rows - 1) / rows) as usize);
    let mut start = 0;
    while start < l {
        let end = (start + rows).min(l);
        let qb = ops::slice(q, &[0, 0, start, 0], &[b, h, end, d], &[1, 1, 1, 1])?;
        let out = match mask {
            AttentionMask::Causal => {
                // Query row i sees keys up to s - l + i: this block's up to s - l + end.
                let keys_end = s - l + end;
                let kb = ops::slice(k, &[0, 0, 0, 0], &[ks[0], ks[1], keys_end, ks[3]], &[1; 4])?;
                let vs = v.shape();
                let vb = ops::slice(v, &[0, 0, 0, 0], &[vs[0], vs[1], keys_end, vs[3]], &[1; 4])?;
                fast::scaled_dot_product_attention(&qb, &kb, &vb, scale, AttentionMask::Causal)?
            }
            AttentionMask::Array(m) if mask_rows == Some(l) => {
                let mut lo = vec![0; m.ndim()];
                let mut hi = m.shape().to_vec();
                lo[m.ndim() - 2] = start;
                hi[m.ndim() - 2] = end;
                let mb = ops::slice(m, &lo, &hi, &vec![1; m.ndim()])?;
                fast::scaled_dot_product_attention(&qb, k, v, scale, AttentionMask::Array(&mb))?
            }
            other => fast::scaled_dot_product_attention(&qb, k, v, scale, other)?,
        };
        outs.push(out);
        start = end;
    }
    Ok(ops::concatenate_axis(&outs, 2)?)
}
