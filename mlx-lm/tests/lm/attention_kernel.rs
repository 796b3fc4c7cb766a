//! The CUDA attention decode kernels (`mlx_lm::kernels::attention`) against MLX's own ops on
//! the same GPU: q/k norms + RoPE, and attention over the valid prefix of a cache buffer
//! (one position, fewer positions than warps, more than one buffer step) with grouped
//! heads and the output gate. They need a CUDA GPU, so they are ignored by default; on
//! the GPU machine: `lm-<hash> --ignored attention_kernel`.

use crate::common::{gpu, kernel_rtol};
use mlx_lm::kernels::attention::{attend, fits, qk_prep, AttnHeads};
use mlx_rs::{fast, ops, random, Array, Dtype};

fn close(what: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let tol = kernel_rtol(want.dtype());
    let g = got.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
    let w = want
        .astype(Dtype::Float32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let scale = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    for (i, (a, e)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - e).abs() <= tol * scale,
            "{what}: element {i} is {a}, expected {e} (tolerance {})",
            tol * scale
        );
    }
}

fn normal(shape: &[i32], seed: u64, dtype: Dtype) -> Array {
    let key = random::key(seed).unwrap();
    random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(&key))
        .unwrap()
        .astype(dtype)
        .unwrap()
}

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
                let (q, kr) = qk_prep(HEADS, &q_full, &k, &qw, &kw, &inv, position, 1e-6).unwrap();
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
    gpu(|| {
        let (h, kv, d) = (HEADS.heads, HEADS.kv_heads, HEADS.head_dim);
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            for (n, cap) in [(1, 256), (5, 256), (300, 512)] {
                let q = normal(&[1, h, 1, d], 10 + n as u64, dtype);
                let keys = normal(&[1, kv, cap, d], 20 + n as u64, dtype);
                let values = normal(&[1, kv, cap, d], 30 + n as u64, dtype);
                let q_full = normal(&[1, h * 2 * d], 40 + n as u64, dtype);
                let got = attend(HEADS, &q, &keys, &values, &q_full, n).unwrap();
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
                close(&format!("{dtype:?}, {n} of {cap} positions"), &got, &want);
            }
        }
    })
}
