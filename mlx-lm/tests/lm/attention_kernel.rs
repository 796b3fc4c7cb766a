//! The CUDA attention decode kernels (`mlx_lm::kernels::attention`) against MLX's own ops on
//! the same GPU: q/k norms + RoPE, and attention over the valid prefix of a cache buffer
//! (one position, fewer positions than warps, more than one buffer step) with grouped
//! heads and the output gate; and a left-padded batch against each of its rows alone. They
//! need a CUDA GPU, so they are ignored by default; on the GPU machine:
//! `lm-<hash> --ignored attention_kernel`.

use crate::common::{assert_kernel_close as close, assert_kernel_emulator_cases, gpu, normal};
use mlx_lm::cache::KvCache;
use mlx_lm::kernels::attention::{attend, fits, qk_prep, AttnHeads, StepMeta};
use mlx_rs::{fast, ops, Array, Dtype};

const HEADS: AttnHeads = AttnHeads {
    heads: 8,
    kv_heads: 2,
    head_dim: 256,
    rope_dims: 64,
};

#[test]
fn shapes_the_kernels_refuse() {
    let ok = |h: AttnHeads| fits(h, Dtype::Bfloat16);
    assert!(ok(HEADS));
    assert!(!ok(AttnHeads {
        head_dim: 100,
        ..HEADS
    }));
    assert!(!ok(AttnHeads {
        kv_heads: 3,
        ..HEADS
    }));
    assert!(!ok(AttnHeads {
        rope_dims: 7,
        ..HEADS
    }));
    assert!(!ok(AttnHeads {
        rope_dims: 512,
        ..HEADS
    }));
    assert!(!fits(HEADS, Dtype::Int32));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn qk_prep_matches_norm_and_rope() {
    gpu(|| {
        let (h, kv, d, rd) = (HEADS.heads, HEADS.kv_heads, HEADS.head_dim, HEADS.rope_dims);
        let theta = 1e7f32;
        let inv: Vec<f32> = (0..rd / 2)
            .map(|i| (theta as f64).powf(-2.0 * i as f64 / rd as f64) as f32)
            .collect();
        let inv = Array::from_slice(&inv, &[rd / 2]).unwrap();
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            for position in [0, 5, 700] {
                let q_full = normal(&[1, h * 2 * d], 1, dtype);
                let k = normal(&[1, kv * d], 2, dtype);
                let qw = normal(&[d], 3, dtype);
                let kw = normal(&[d], 4, dtype);
                let meta = at(position, 1, &[]);
                let (q, kr) = qk_prep(HEADS, &q_full, &k, &qw, &kw, &inv, &meta, 1e-6).unwrap();
                let reference = |x: &Array, w: &Array, heads: i32| {
                    let x = fast::rms_norm(x, Some(w), 1e-6).unwrap();
                    let x = x.reshape(&[1, heads, 1, d]).unwrap();
                    let base = Some(theta);
                    let options = fast::RopeOptions {
                        base,
                        ..Default::default()
                    };
                    fast::rope(&x, rd, position, options).unwrap()
                };
                let qs = ops::split(&q_full.reshape(&[1, h, 2 * d]).unwrap(), 2, -1).unwrap();
                let what = format!("{dtype:?} at {position}");
                close(&format!("q, {what}"), &q, &reference(&qs[0], &qw, h));
                close(
                    &format!("k, {what}"),
                    &kr,
                    &reference(&k.reshape(&[1, kv, d]).unwrap(), &kw, kv),
                );
            }
        }
    })
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn attend_matches_sdpa_and_gate() {
    // Qwen 3.5's heads, and a group of 12 query heads per key/value head that one block
    // takes in three parts.
    let wide = AttnHeads {
        heads: 12,
        kv_heads: 1,
        ..HEADS
    };
    gpu(|| {
        for (heads, dtype) in [
            (HEADS, Dtype::Float32),
            (HEADS, Dtype::Bfloat16),
            (wide, Dtype::Bfloat16),
        ] {
            let (h, kv, d) = (heads.heads, heads.kv_heads, heads.head_dim);
            // One position, fewer positions than warps, several splits, a long context, and
            // one of 1,094 splits (more than a merge block's threads and than the weights it
            // stages at a time).
            for (n, cap) in [
                (1, 256),
                (5, 256),
                (300, 512),
                (5000, 5120),
                (140_000, 140_032),
            ] {
                let q = normal(&[1, h, 1, d], 10 + n as u64, dtype);
                let keys = normal(&[1, kv, cap, d], 20 + n as u64, dtype);
                let values = normal(&[1, kv, cap, d], 30 + n as u64, dtype);
                let q_full = normal(&[1, h * 2 * d], 40 + n as u64, dtype);
                let meta = StepMeta::new(n, cap, 1, &[]).unwrap();
                let (got, _) = attend(heads, &q, &keys, &values, &q_full, &meta).unwrap();
                let valid = |a: &Array| {
                    ops::slice(a, &[0, 0, 0, 0], &[1, kv, n, d], &[1, 1, 1, 1]).unwrap()
                };
                let scale = (d as f32).powf(-0.5);
                let attn = fast::scaled_dot_product_attention(
                    &q,
                    &valid(&keys),
                    &valid(&values),
                    scale,
                    fast::AttentionMask::None,
                )
                .unwrap()
                .reshape(&[1, h * d])
                .unwrap();
                let gate = ops::split(&q_full.reshape(&[1, h, 2 * d]).unwrap(), 2, -1).unwrap()[1]
                    .reshape(&[1, h * d])
                    .unwrap();
                let want = attn.multiply(&ops::sigmoid(&gate).unwrap()).unwrap();
                let what = format!("{dtype:?}, {h}/{kv} heads, {n} of {cap} positions");
                close(&what, &got, &want);
            }
        }
    })
}

/// Row `r` of `a` (along axis 0), keeping the axis.
fn row(a: &Array, r: i32) -> Array {
    let mut start = vec![0; a.ndim()];
    let mut stop = a.shape().to_vec();
    start[0] = r;
    stop[0] = r + 1;
    ops::slice(a, &start, &stop, &vec![1; a.ndim()]).unwrap()
}

fn assert_bits_equal(what: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let f = |a: &Array| a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
    let (g, w) = (f(got), f(want));
    let diff = g
        .iter()
        .zip(&w)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert!(diff.is_none(), "{what}: element {diff:?} differs");
}

/// The meta of a token at `position` (a cache of `position + 1` columns, no room beyond)
/// for `b` rows.
fn at(position: i32, b: i32, left_padding: &[i32]) -> StepMeta {
    StepMeta::new(position + 1, position + 1, b, left_padding).unwrap()
}

/// RoPE frequencies of `HEADS` at theta 1e7.
fn inv_freq() -> Array {
    let rd = HEADS.rope_dims;
    let inv: Vec<f32> = (0..rd / 2)
        .map(|i| 1e7f64.powf(-2.0 * i as f64 / rd as f64) as f32)
        .collect();
    Array::from_slice(&inv, &[rd / 2]).unwrap()
}

/// A left-padded batch (rows at positions 9, 7 and 0 of a cache holding 9 columns): each
/// row's q and k are bit-identical to the same row alone at its own position.
#[test]
#[ignore = "needs a CUDA GPU"]
fn qk_prep_rotates_each_row_at_its_own_position() {
    gpu(|| {
        let (h, kv, d) = (HEADS.heads, HEADS.kv_heads, HEADS.head_dim);
        let (position, padding) = (9, [0, 2, 9]);
        let b = padding.len() as i32;
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            let q_full = normal(&[b, h * 2 * d], 51, dtype);
            let k = normal(&[b, kv * d], 52, dtype);
            let (qw, kw) = (normal(&[d], 53, dtype), normal(&[d], 54, dtype));
            let prep = |qf: &Array, k: &Array, pos: i32, pad: &[i32]| {
                let meta = at(pos, qf.shape()[0], pad);
                qk_prep(HEADS, qf, k, &qw, &kw, &inv_freq(), &meta, 1e-6).unwrap()
            };
            let (q, kr) = prep(&q_full, &k, position, &padding);
            for (r, &pad) in padding.iter().enumerate() {
                let r = r as i32;
                let (q1, k1) = prep(&row(&q_full, r), &row(&k, r), position - pad, &[]);
                let what = format!("{dtype:?}, row {r} (padding {pad})");
                assert_bits_equal(&format!("q, {what}"), &row(&q, r), &q1);
                assert_bits_equal(&format!("k, {what}"), &row(&kr, r), &k1);
            }
        }
    })
}

/// A left-padded batch over 40 cache columns (paddings 0, 7 and 33), and over 300 (paddings
/// 0, 7 and 133: rows of three and two splits), padding columns filled with large values
/// that would dominate the softmax if read: each row's output is bit-identical to the row
/// alone over its own columns moved to the front, and close to MLX's attention over them.
#[test]
#[ignore = "needs a CUDA GPU"]
fn attend_skips_each_rows_padding() {
    gpu(|| {
        let (h, kv, d) = (HEADS.heads, HEADS.kv_heads, HEADS.head_dim);
        let cases = [(40, 256, [0, 7, 33]), (300, 512, [0, 7, 133])];
        for (dtype, (n, cap, padding)) in [Dtype::Float32, Dtype::Bfloat16]
            .into_iter()
            .flat_map(|d| cases.map(|c| (d, c)))
        {
            let b = padding.len() as i32;
            let q = normal(&[b, h, 1, d], 61, dtype);
            let q_full = normal(&[b, h * 2 * d], 62, dtype);
            let column = ops::arange(0.0, cap as f64, 1.0, Dtype::Int32)
                .unwrap()
                .reshape(&[1, 1, cap, 1])
                .unwrap();
            let pad = Array::from_slice(&padding, &[b, 1, 1, 1]).unwrap();
            let is_pad = column.less(&pad).unwrap();
            let big = Array::scalar(300f32).astype(dtype).unwrap();
            let cache = |seed: u64| {
                let a = normal(&[b, kv, cap, d], seed, dtype);
                ops::r#where(&is_pad, &big, &a).unwrap()
            };
            let (keys, values) = (cache(63), cache(64));
            let meta = StepMeta::new(n, cap, b, &padding).unwrap();
            let (got, _) = attend(HEADS, &q, &keys, &values, &q_full, &meta).unwrap();
            for (r, &p) in padding.iter().enumerate() {
                let r = r as i32;
                let own = |a: &Array| {
                    let a = ops::slice(a, &[r, 0, p, 0], &[r + 1, kv, n, d], &[1, 1, 1, 1]);
                    a.unwrap()
                };
                let front = |a: &Array| {
                    let zero = Array::scalar(0f32).astype(dtype).unwrap();
                    let width = [0, 0, 0, 0];
                    let tail = [0, 0, cap - (n - p), 0];
                    ops::pad(&own(a), &[0, 1, 2, 3], &width, &tail, &zero, "constant").unwrap()
                };
                let (qr, qfr) = (row(&q, r), row(&q_full, r));
                let meta = StepMeta::new(n - p, cap, 1, &[]).unwrap();
                let (alone, _) =
                    attend(HEADS, &qr, &front(&keys), &front(&values), &qfr, &meta).unwrap();
                let what = format!("{dtype:?}, row {r} (padding {p})");
                assert_bits_equal(&what, &row(&got, r), &alone);
                let scale = (d as f32).powf(-0.5);
                let none = fast::AttentionMask::None;
                let attn = fast::scaled_dot_product_attention(
                    &qr,
                    &own(&keys),
                    &own(&values),
                    scale,
                    none,
                )
                .unwrap()
                .reshape(&[1, h * d])
                .unwrap();
                let gate = ops::split(&qfr.reshape(&[1, h, 2 * d]).unwrap(), 2, -1).unwrap()[1]
                    .reshape(&[1, h * d])
                    .unwrap();
                let want = attn.multiply(&ops::sigmoid(&gate).unwrap()).unwrap();
                close(&what, &row(&got, r), &want);
            }
        }
    })
}

/// Step metas the kernels cannot take: the wrong count of paddings, a padding past the
/// cache's length, no columns, more columns than room; and a meta for another batch size
/// or capacity than the arrays'.
#[test]
fn bad_step_metas_are_errors() {
    for padding in [&[1][..], &[0, 1, 2], &[0, 5], &[-1, 0]] {
        let e = StepMeta::new(5, 256, 2, padding).unwrap_err();
        assert!(e.to_string().contains("padding"), "{padding:?}: {e}");
    }
    for (n, cap, b) in [(0, 256, 1), (257, 256, 1), (5, 256, 0)] {
        let e = StepMeta::new(n, cap, b, &[]).unwrap_err();
        assert!(
            e.to_string().contains("step meta"),
            "{n} of {cap}, {b} rows: {e}"
        );
    }
    let (h, kv, d) = (HEADS.heads, HEADS.kv_heads, HEADS.head_dim);
    let zeros = |shape: &[i32]| ops::zeros(shape, Dtype::Float32).unwrap();
    let (q, cache) = (zeros(&[2, h, 1, d]), zeros(&[2, kv, 256, d]));
    let (q_full, k, w) = (zeros(&[2, h * 2 * d]), zeros(&[2, kv * d]), zeros(&[d]));
    for meta in [
        StepMeta::new(5, 256, 3, &[]).unwrap(),
        StepMeta::new(5, 512, 2, &[]).unwrap(),
    ] {
        let e = attend(HEADS, &q, &cache, &cache, &q_full, &meta).unwrap_err();
        assert!(e.to_string().contains("step meta"), "{meta:?}: {e}");
    }
    let meta = StepMeta::new(5, 256, 3, &[]).unwrap();
    let e = qk_prep(HEADS, &q_full, &k, &w, &w, &inv_freq(), &meta, 1e-6).unwrap_err();
    assert!(e.to_string().contains("step meta"), "{e}");
}

/// A left-padded cache of one attention layer: one row of each length (`[B, KV, len, D]`
/// random keys and values), merged as a continuous batch merges them.
fn padded_cache(lengths: &[i32], seed: u64, dtype: Dtype) -> KvCache {
    use mlx_lm::cache::{Cache, LayerCache};
    let (kv, d) = (HEADS.kv_heads, HEADS.head_dim);
    let rows: Vec<Cache> = lengths
        .iter()
        .zip(seed..)
        .map(|(&len, seed)| {
            let mut c = KvCache::default();
            let x = normal(&[1, kv, len, d], seed, dtype);
            c.update_buffers(&x, &x).unwrap();
            Cache::new(vec![LayerCache::Attention(c)])
        })
        .collect();
    match Cache::merge(&rows).unwrap().layers.into_iter().next() {
        Some(LayerCache::Attention(c)) => c,
        _ => unreachable!("one attention layer"),
    }
}

/// Decode steps through a cache as a model runs them (qk_prep, the cache write, attend,
/// the next meta kept), a left-padded batch of three rows across the 256-column growth of
/// the buffers: after the first step each meta comes from the last step's kernel, holds
/// what the host would write, and gives bit-identical outputs to a host-written one.
#[test]
#[ignore = "needs a CUDA GPU"]
fn attend_leaves_the_next_tokens_meta() {
    gpu(|| {
        let (h, kv, d) = (HEADS.heads, HEADS.kv_heads, HEADS.head_dim);
        let dtype = Dtype::Bfloat16;
        let padding = [0, 3, 250];
        let b = padding.len() as i32;
        let (qw, kw) = (normal(&[d], 71, dtype), normal(&[d], 72, dtype));
        let mut c = padded_cache(&[252, 249, 2], 73, dtype);
        assert_eq!(c.left_padding(), &padding);
        for step in 0..8u64 {
            let n = c.offset() + 1;
            let meta = c.step_meta(b).unwrap();
            assert_eq!(
                meta.on_device(),
                step > 0 && n != 257,
                "step {step}: {meta:?}"
            );
            let host = StepMeta::new(n, c.capacity_after(1), b, &padding).unwrap();
            let v = |m: &StepMeta| m.array().to_vec::<i32>().unwrap();
            assert_eq!(v(&meta), v(&host), "step {step}");
            let q_full = normal(&[b, h * 2 * d], 80 + step, dtype);
            let k = normal(&[b, kv * d], 90 + step, dtype);
            let run = |c: &mut KvCache, m: &StepMeta| {
                let (q, k) = qk_prep(HEADS, &q_full, &k, &qw, &kw, &inv_freq(), m, 1e-6).unwrap();
                let v = k.clone();
                let (kb, vb) = c.update_buffers(&k, &v).unwrap();
                attend(HEADS, &q, &kb, &vb, &q_full, m).unwrap()
            };
            let (want, _) = run(&mut c.clone(), &host);
            let (got, next) = run(&mut c, &meta);
            assert_bits_equal(&format!("step {step}"), &got, &want);
            c.keep_step_meta(next);
        }
    })
}

/// The attention decode kernels' text (query/key preparation, the split-K attention and
/// its merge) run on the CPU a block at a time with emulated warps and shared memory, under
/// AddressSanitizer, against NumPy, on left-padded batches and each row bit for bit against
/// itself alone (`examples/qwen3_5/tests/kernel_emulation/emulate_attention.py`), and the
/// merge alone over 2,100 splits (a 268k-position context), so that CI checks what the GPU
/// tests above check on a GPU.
#[test]
fn attention_kernels_run_emulated() {
    assert_kernel_emulator_cases("emulate_attention.py", 14);
}
