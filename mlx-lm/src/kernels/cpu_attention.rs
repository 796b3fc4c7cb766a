//! One query per sequence attending over a float32 KV cache on the CPU, done outside MLX.
//!
//! A decode step's attention is two thin products per key/value head (the group's queries
//! against every cached key, then the weights against every value). On Linux MLX hands
//! them to the reference BLAS its wheel ships, at a few GFLOP/s: a 4,096-position cache
//! made float32 decode of a 1,024-wide model ~25 % slower than a 128-position one. Here the
//! queries that share a key/value head read each cached key and value once, in one pass
//! each, bound by memory instead (the softmax is MLX's precise form: scores and sums in
//! float32, the largest score subtracted first).
//!
//! Taken where a model multiplies float32 outside MLX anyway
//! ([`super::cpu_gemm::CpuProducts::gemm`]); for a padded batch (a mask) the model uses
//! MLX's attention.

use super::cpu_gemm::{dense, output_buffer};
use crate::error::Result;
use mlx_rs::{Array, Dtype};

thread_local! {
    /// Calls of [`attend_one`] on this thread that did the attention.
    static CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many attentions [`attend_one`] has done for calls made on this thread (to check
/// that a path took it): per thread, so tests running side by side do not see each
/// other's.
pub fn calls() -> usize {
    CALLS.with(|c| c.get())
}

/// `softmax(q · Kᵀ · scale) · V` for one query per head: `queries` `[B, H, 1, D]`,
/// `keys` `[B, KV, cap, D]` and `values` `[B, KV, cap, Dv]` float32 buffers whose first
/// `len` positions are valid (the same for every sequence), `H` a multiple of `KV` (query
/// head `h` reads key/value head `h / (H / KV)`). Evaluates the inputs and returns a new,
/// evaluated `[B, H, 1, Dv]`, spread over up to `threads` threads (one key/value head of
/// one sequence each).
///
/// `None` (leave it to MLX) for other dtypes or shapes, `len` outside `1..=cap`, and
/// inputs that cannot be evaluated here (inside a transform).
pub fn attend_one(
    queries: &Array,
    keys: &Array,
    values: &Array,
    len: i32,
    scale: f32,
    threads: usize,
) -> Result<Option<Array>> {
    if [queries, keys, values]
        .iter()
        .any(|a| a.dtype() != Dtype::Float32 || a.ndim() != 4)
    {
        return Ok(None);
    }
    let (&[b, h, l, d], &[kb, kv, cap, kd], &[vb, vkv, vcap, dv]) =
        (queries.shape(), keys.shape(), values.shape())
    else {
        return Ok(None);
    };
    if l != 1
        || (kb, kd) != (b, d)
        || (vb, vkv, vcap) != (b, kv, cap)
        || kv <= 0
        || h % kv != 0
        || len < 1
        || len > cap
        || d <= 0
        || dv <= 0
    {
        return Ok(None);
    }
    if mlx_rs::eval(&[queries, keys, values]).is_err() {
        return Ok(None);
    }
    let (q, k, v) = (dense(queries)?, dense(keys)?, dense(values)?);
    let (Ok(q), Ok(k), Ok(v)) = (
        q.as_slice::<f32>(),
        k.as_slice::<f32>(),
        v.as_slice::<f32>(),
    ) else {
        return Ok(None);
    };
    let dims = Dims {
        rep: (h / kv) as usize,
        d: d as usize,
        dv: dv as usize,
        cap: cap as usize,
        len: len as usize,
    };
    let groups = (b * kv) as usize;
    let Some(mut out) = output_buffer(groups * dims.rep * dims.dv) else {
        return Ok(None);
    };
    let per_group = dims.rep * dims.dv;
    let threads = threads.clamp(1, groups);
    let chunk = groups.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, out) in out.chunks_mut(chunk * per_group).enumerate() {
            let mut work = move || {
                for (j, out) in out.chunks_mut(per_group).enumerate() {
                    let g = i * chunk + j;
                    group(q, k, v, g, dims, scale, out);
                }
            };
            if (i + 1) * chunk >= groups {
                work();
            } else {
                s.spawn(work);
            }
        }
    });
    CALLS.with(|c| c.set(c.get() + 1));
    Ok(Some(Array::from_slice(&out, &[b, h, 1, dv])?))
}

/// Sizes of one key/value head's work.
#[derive(Debug, Clone, Copy)]
struct Dims {
    /// Query heads per key/value head.
    rep: usize,
    /// Query and key width.
    d: usize,
    /// Value width.
    dv: usize,
    /// Positions each head's buffer holds.
    cap: usize,
    /// Valid positions.
    len: usize,
}

/// Key/value head `g` (of sequence `g / KV`): its `rep` query rows (consecutive in `q`)
/// against its first `len` keys and values; writes the `rep × dv` outputs.
fn group(q: &[f32], k: &[f32], v: &[f32], g: usize, n: Dims, scale: f32, out: &mut [f32]) {
    let q = &q[g * n.rep * n.d..(g + 1) * n.rep * n.d];
    let k = &k[g * n.cap * n.d..][..n.len * n.d];
    let v = &v[g * n.cap * n.dv..][..n.len * n.dv];
    // Scores, position-major: scores[s * rep + r].
    let mut scores = vec![0f32; n.len * n.rep];
    for (s, key) in k.chunks_exact(n.d).enumerate() {
        for (r, query) in q.chunks_exact(n.d).enumerate() {
            scores[s * n.rep + r] = dot(query, key) * scale;
        }
    }
    let mut sums = vec![0f32; n.rep];
    for r in 0..n.rep {
        let max = (0..n.len)
            .map(|s| scores[s * n.rep + r])
            .fold(f32::NEG_INFINITY, f32::max);
        for s in 0..n.len {
            let e = (scores[s * n.rep + r] - max).exp();
            scores[s * n.rep + r] = e;
            sums[r] += e;
        }
    }
    out.fill(0.0);
    for (s, value) in v.chunks_exact(n.dv).enumerate() {
        for (r, o) in out.chunks_exact_mut(n.dv).enumerate() {
            let p = scores[s * n.rep + r];
            for (o, x) in o.iter_mut().zip(value) {
                *o += p * x;
            }
        }
    }
    for (r, o) in out.chunks_exact_mut(n.dv).enumerate() {
        let inv = 1.0 / sums[r];
        o.iter_mut().for_each(|x| *x *= inv);
    }
}

/// `a · b` with eight partial sums (so the compiler keeps them in SIMD lanes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::{fast, ops, random};

    fn normal(shape: &[i32], seed: u64) -> Array {
        random::normal(
            shape,
            Dtype::Float32,
            0.0,
            1.0,
            Some(&random::key(seed).unwrap()),
        )
        .unwrap()
    }

    /// Against MLX's attention over the valid positions, for batches, head groups,
    /// widths off the eight-lane blocks, a first position and a full buffer.
    #[test]
    fn matches_mlx_attention() {
        let cpu = mlx_rs::Device::cpu();
        mlx_rs::with_device(&cpu, || {
            for (b, h, kv, d, dv, cap, len) in [
                (1, 8, 2, 256, 256, 512, 300),
                (2, 4, 4, 20, 12, 64, 64),
                (3, 6, 2, 8, 16, 40, 1),
            ] {
                let q = normal(&[b, h, 1, d], 1);
                let k = normal(&[b, kv, cap, d], 2);
                let v = normal(&[b, kv, cap, dv], 3);
                let scale = (d as f32).powf(-0.5);
                for threads in [1, 3] {
                    let ours = attend_one(&q, &k, &v, len, scale, threads)
                        .unwrap()
                        .expect("taken");
                    let valid = |a: &Array, w: i32| {
                        ops::slice(a, &[0, 0, 0, 0], &[b, kv, len, w], &[1, 1, 1, 1]).unwrap()
                    };
                    let mlx = fast::scaled_dot_product_attention(
                        &q,
                        &valid(&k, d),
                        &valid(&v, dv),
                        scale,
                        fast::AttentionMask::None,
                    )
                    .unwrap();
                    assert_eq!(ours.shape(), mlx.shape());
                    let (ours, mlx) = (ours.to_vec::<f32>().unwrap(), mlx.to_vec::<f32>().unwrap());
                    for (i, (a, e)) in ours.iter().zip(&mlx).enumerate() {
                        assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{i}: {a} vs {e}");
                    }
                }
            }
        })
        .unwrap();
    }

    #[test]
    fn declines_what_it_does_not_take() {
        let q = normal(&[1, 4, 1, 8], 1);
        let k = normal(&[1, 2, 16, 8], 2);
        let v = normal(&[1, 2, 16, 8], 3);
        let half = q.astype(Dtype::Float16).unwrap();
        assert!(attend_one(&half, &k, &v, 4, 1.0, 1).unwrap().is_none());
        assert!(attend_one(&q, &k, &v, 0, 1.0, 1).unwrap().is_none());
        assert!(attend_one(&q, &k, &v, 17, 1.0, 1).unwrap().is_none());
        let three = normal(&[1, 3, 1, 8], 4);
        assert!(attend_one(&three, &k, &v, 4, 1.0, 1).unwrap().is_none());
        let two_queries = normal(&[1, 4, 2, 8], 5);
        assert!(attend_one(&two_queries, &k, &v, 4, 1.0, 1)
            .unwrap()
            .is_none());
    }
}
