//! Fused ops: against Python MLX (`mx.fast.*`), against plain-Rust references computed
//! from the definitions, gradients through them, and bad inputs.

mod common;

use mlx_rs::fast::{self, AttentionMask, AttentionOptions, RopeOptions};
use mlx_rs::ops;
use mlx_rs::transforms::grad;
use mlx_rs::{Array, Dtype, Error, Result};

fn f64s(a: &Array) -> Vec<f64> {
    let cpu = mlx_rs::Stream::cpu();
    mlx_rs::with_stream(&cpu, || a.astype(Dtype::Float64))
        .unwrap()
        .to_vec::<f64>()
        .unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// A deterministic float32 array with values in [-2, 2).
fn sample(shape: &[i32], seed: u64) -> Array {
    let n: i32 = shape.iter().product();
    let mut s = seed.wrapping_add(0x9e3779b97f4a7c15);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Array::from_slice(&v, shape).unwrap()
}

#[test]
fn fast_ops_match_python_mlx() {
    let cases = common::load("fast");
    assert!(cases.len() >= 25, "fixture has {} cases", cases.len());
    for case in &cases {
        let x = case.input(0);
        let input = |i: usize| case.input(i);
        let got = match case.op.as_str() {
            "rms_norm" => {
                let w = (case.inputs.len() > 1).then(|| input(1));
                fast::rms_norm(&x, w.as_ref(), case.float("eps") as f32)
            }
            "layer_norm" => {
                let w = (case.inputs.len() > 1).then(|| input(1));
                let b = (case.inputs.len() > 2).then(|| input(2));
                fast::layer_norm(&x, w.as_ref(), b.as_ref(), case.float("eps") as f32)
            }
            "rope" | "rope_freqs" | "rope_dynamic" => {
                let freqs = (case.op == "rope_freqs").then(|| input(1));
                let options = RopeOptions {
                    traditional: case.bool("traditional"),
                    base: freqs.is_none().then(|| case.float("base") as f32),
                    scale: case.float("scale") as f32,
                    freqs: freqs.as_ref(),
                };
                let dims = case.int("dims");
                if case.op == "rope_dynamic" {
                    fast::rope_dynamic(&x, dims, &input(1), options)
                } else {
                    fast::rope(&x, dims, case.int("offset"), options)
                }
            }
            "sdpa" => {
                let (k, v) = (input(1), input(2));
                let mut next = 3;
                let mask_arr = (case.str("mask") == "array").then(|| {
                    next += 1;
                    input(3)
                });
                let sinks = case.bool("sinks").then(|| input(next));
                let mask = match case.str("mask").as_str() {
                    "none" => AttentionMask::None,
                    "causal" => AttentionMask::Causal,
                    _ => AttentionMask::Array(mask_arr.as_ref().unwrap()),
                };
                let options = AttentionOptions {
                    mask,
                    sinks: sinks.as_ref(),
                    force_fused: false,
                };
                fast::scaled_dot_product_attention(&x, &k, &v, case.float("scale") as f32, options)
            }
            "cross_entropy" => fast::cross_entropy(&x, &input(1)),
            other => panic!("unknown op {other}"),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        case.check(0, &got);
    }
}

// -------------------------------------------------------------------------------------
// Plain-Rust references
// -------------------------------------------------------------------------------------

#[test]
fn norms_match_their_definition() {
    let (rows, d) = (3usize, 10usize);
    let x = sample(&[rows as i32, d as i32], 1);
    let w = sample(&[d as i32], 2);
    let b = sample(&[d as i32], 3);
    let (xv, wv, bv) = (f64s(&x), f64s(&w), f64s(&b));
    let eps = 1e-5;
    let mut rms = Vec::new();
    let mut ln = Vec::new();
    for r in 0..rows {
        let row = &xv[r * d..(r + 1) * d];
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        for j in 0..d {
            rms.push(row[j] / (ms + eps).sqrt() * wv[j]);
            ln.push((row[j] - mean) / (var + eps).sqrt() * wv[j] + bv[j]);
        }
    }
    assert_close(
        &f64s(&fast::rms_norm(&x, Some(&w), eps as f32).unwrap()),
        &rms,
        1e-5,
        "rms_norm",
    );
    assert_close(
        &f64s(&fast::layer_norm(&x, Some(&w), Some(&b), eps as f32).unwrap()),
        &ln,
        1e-5,
        "layer_norm",
    );
}

/// RoPE by its definition on [B, H, T, D] data: pairs (i, i + dims/2) (or (2i, 2i+1) when
/// traditional) rotated by angle (offset + t) · scale · base^(-2i/dims).
#[allow(clippy::too_many_arguments)]
fn rope_reference(
    x: &[f64],
    shape: [usize; 4],
    dims: usize,
    traditional: bool,
    base: f64,
    scale: f64,
    offsets: &[f64],
) -> Vec<f64> {
    let [b, h, t, d] = shape;
    let mut out = x.to_vec();
    let half = dims / 2;
    for bi in 0..b {
        let offset = offsets[if offsets.len() == 1 { 0 } else { bi }];
        for hi in 0..h {
            for ti in 0..t {
                let at = ((bi * h + hi) * t + ti) * d;
                let pos = (offset + ti as f64) * scale;
                for i in 0..half {
                    let theta = pos * base.powf(-2.0 * i as f64 / dims as f64);
                    let (j, k) = if traditional {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    let (x1, x2) = (x[at + j], x[at + k]);
                    out[at + j] = x1 * theta.cos() - x2 * theta.sin();
                    out[at + k] = x1 * theta.sin() + x2 * theta.cos();
                }
            }
        }
    }
    out
}

#[test]
fn rope_matches_its_definition() {
    let shape = [2usize, 2, 5, 8];
    let x = sample(&[2, 2, 5, 8], 4);
    let xv = f64s(&x);
    for traditional in [false, true] {
        for (dims, offset, scale) in [(8usize, 0i32, 1.0f32), (6, 3, 0.5)] {
            let options = RopeOptions {
                traditional,
                scale,
                ..Default::default()
            };
            let got = fast::rope(&x, dims as i32, offset, options).unwrap();
            let want = rope_reference(
                &xv,
                shape,
                dims,
                traditional,
                10000.0,
                scale as f64,
                &[offset as f64],
            );
            assert_close(
                &f64s(&got),
                &want,
                1e-4,
                &format!("rope trad={traditional} dims={dims}"),
            );
        }
    }
    // per-batch offsets through rope_dynamic
    let offsets = Array::from_slice(&[2i32, 9], &[2]).unwrap();
    let got = fast::rope_dynamic(&x, 8, &offsets, RopeOptions::default()).unwrap();
    let want = rope_reference(&xv, shape, 8, false, 10000.0, 1.0, &[2.0, 9.0]);
    assert_close(&f64s(&got), &want, 1e-4, "rope_dynamic");
}

/// `mx.fast.rope` called through mlx-c with positional arguments, on the CPU: what
/// `fast::rope` did before it took [`RopeOptions`].
fn rope_positional(
    x: &Array,
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    offset: i32,
    freqs: Option<&Array>,
) -> Array {
    let base = mlx_sys::mlx_optional_float {
        value: base.unwrap_or(0.0),
        has_value: base.is_some(),
    };
    let freqs = freqs.map_or(
        mlx_sys::mlx_array_ {
            ctx: std::ptr::null_mut(),
        },
        |f| f.as_raw_handle(),
    );
    // SAFETY: live input handles; the output handle is owned by the returned Array.
    unsafe {
        let stream = mlx_sys::mlx_default_cpu_stream_new();
        let mut res = mlx_sys::mlx_array_new();
        let code = mlx_sys::mlx_fast_rope(
            &mut res,
            x.as_raw_handle(),
            dims,
            traditional,
            base,
            scale,
            offset,
            freqs,
            stream,
        );
        mlx_sys::mlx_stream_free(stream);
        assert_eq!(code, 0, "mlx_fast_rope failed");
        Array::from_raw_handle(res)
    }
}

#[test]
fn rope_options_give_the_positional_results() {
    let x = sample(&[2, 3, 5, 8], 21);
    let freqs = Array::from_slice(&[1.0f32, 0.5, 0.25, 0.125], &[4]).unwrap();
    let cpu = mlx_rs::Stream::cpu();
    for traditional in [false, true] {
        for (dims, offset, scale) in [(8, 0, 1.0f32), (6, 4, 0.5)] {
            let cases = [
                (
                    RopeOptions {
                        traditional,
                        scale,
                        ..Default::default()
                    },
                    Some(10000.0),
                    None,
                ),
                (
                    RopeOptions {
                        traditional,
                        scale,
                        base: Some(1e6),
                        freqs: None,
                    },
                    Some(1e6),
                    None,
                ),
                (
                    RopeOptions {
                        traditional,
                        scale,
                        base: None,
                        freqs: Some(&freqs),
                    },
                    None,
                    Some(&freqs),
                ),
            ];
            for (options, base, f) in cases {
                let f = f.filter(|_| dims == 8); // freqs has dims / 2 entries
                if base.is_none() && f.is_none() {
                    continue;
                }
                let got = mlx_rs::with_stream(&cpu, || fast::rope(&x, dims, offset, options));
                let want = rope_positional(&x, dims, traditional, base, scale, offset, f);
                assert_eq!(
                    f64s(&got.unwrap()),
                    f64s(&want),
                    "{options:?} dims={dims} offset={offset}"
                );
            }
        }
    }
    // rope_dynamic with a scalar offset array is rope with that offset
    let offset = Array::from(3i32);
    let options = RopeOptions {
        base: Some(5e5),
        ..Default::default()
    };
    assert_eq!(
        f64s(&fast::rope_dynamic(&x, 8, &offset, options).unwrap()),
        f64s(&fast::rope(&x, 8, 3, options).unwrap())
    );
}

#[test]
fn rope_takes_a_base_or_frequencies_not_both() {
    let x = sample(&[1, 1, 3, 8], 22);
    let freqs = sample(&[4], 0);
    let both = RopeOptions {
        base: Some(1e4),
        freqs: Some(&freqs),
        ..Default::default()
    };
    for r in [
        fast::rope(&x, 8, 0, both),
        fast::rope_dynamic(&x, 8, &Array::from(0i32), both),
    ] {
        match r {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("not both"), "{m}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
    // neither: the default base
    let default = fast::rope(&x, 8, 2, RopeOptions::default()).unwrap();
    let base = RopeOptions {
        base: Some(RopeOptions::DEFAULT_BASE),
        ..Default::default()
    };
    assert_eq!(f64s(&default), f64s(&fast::rope(&x, 8, 2, base).unwrap()));
}

/// softmax(scale · q kᵀ + mask) v on [B, N, T, D] data (same number of heads), f64.
fn attention_reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dims: [usize; 5], // b, n, tq, tkv, d
    scale: f64,
    allowed: impl Fn(usize, usize) -> bool,
) -> Vec<f64> {
    let [b, n, tq, tkv, d] = dims;
    let mut out = vec![0.0; b * n * tq * d];
    for bn in 0..b * n {
        for i in 0..tq {
            let qi = &q[(bn * tq + i) * d..][..d];
            let scores: Vec<f64> = (0..tkv)
                .map(|j| {
                    if !allowed(i, j) {
                        return f64::NEG_INFINITY;
                    }
                    let kj = &k[(bn * tkv + j) * d..][..d];
                    scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for j in 0..tkv {
                let vj = &v[(bn * tkv + j) * d..][..d];
                for c in 0..d {
                    out[(bn * tq + i) * d + c] += weights[j] / total * vj[c];
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_its_definition() {
    let (b, n, tq, tkv, d) = (2usize, 2usize, 3usize, 5usize, 4usize);
    let q = sample(&[b as i32, n as i32, tq as i32, d as i32], 5);
    let k = sample(&[b as i32, n as i32, tkv as i32, d as i32], 6);
    let v = sample(&[b as i32, n as i32, tkv as i32, d as i32], 7);
    let (qv, kv, vv) = (f64s(&q), f64s(&k), f64s(&v));
    let scale = 0.5;
    let dims = [b, n, tq, tkv, d];

    let plain =
        fast::scaled_dot_product_attention(&q, &k, &v, scale as f32, AttentionMask::None).unwrap();
    assert_close(
        &f64s(&plain),
        &attention_reference(&qv, &kv, &vv, dims, scale, |_, _| true),
        1e-5,
        "none",
    );

    // causal, aligned bottom-right: query i sees keys j <= i + (tkv - tq)
    let causal =
        fast::scaled_dot_product_attention(&q, &k, &v, scale as f32, AttentionMask::Causal)
            .unwrap();
    let want = attention_reference(&qv, &kv, &vv, dims, scale, |i, j| j <= i + (tkv - tq));
    assert_close(&f64s(&causal), &want, 1e-5, "causal");

    // a boolean mask: query i sees keys j with (i + j) even
    let mask_vals: Vec<bool> = (0..tq * tkv)
        .map(|x| (x / tkv + x % tkv) % 2 == 0)
        .collect();
    let mask = Array::from_slice(&mask_vals, &[tq as i32, tkv as i32]).unwrap();
    let masked =
        fast::scaled_dot_product_attention(&q, &k, &v, scale as f32, AttentionMask::Array(&mask))
            .unwrap();
    let want = attention_reference(&qv, &kv, &vv, dims, scale, |i, j| (i + j) % 2 == 0);
    assert_close(&f64s(&masked), &want, 1e-5, "bool mask");

    // grouped-query attention equals attention with repeated key/value heads
    let q4 = sample(&[1, 4, tq as i32, d as i32], 8);
    let k2 = sample(&[1, 2, tkv as i32, d as i32], 9);
    let v2 = sample(&[1, 2, tkv as i32, d as i32], 10);
    let gqa = fast::scaled_dot_product_attention(&q4, &k2, &v2, scale as f32, AttentionMask::None)
        .unwrap();
    let (k4, v4) = (
        ops::repeat_axis(&k2, 2, 1).unwrap(),
        ops::repeat_axis(&v2, 2, 1).unwrap(),
    );
    let want = attention_reference(
        &f64s(&q4),
        &f64s(&k4),
        &f64s(&v4),
        [1, 4, tq, tkv, d],
        scale,
        |_, _| true,
    );
    assert_close(&f64s(&gqa), &want, 1e-5, "gqa");
}

#[test]
fn cross_entropy_matches_its_definition() {
    let logits = sample(&[4, 6], 11);
    let targets = Array::from_slice(&[0i32, 5, 2, 3], &[4]).unwrap();
    let lv = f64s(&logits);
    let want: Vec<f64> = [0usize, 5, 2, 3]
        .iter()
        .enumerate()
        .map(|(r, &t)| {
            let row = &lv[r * 6..(r + 1) * 6];
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            lse - row[t]
        })
        .collect();
    let got = fast::cross_entropy(&logits, &targets).unwrap();
    assert_eq!(got.dtype(), Dtype::Float32);
    assert_close(&f64s(&got), &want, 1e-5, "cross_entropy");
}

#[test]
fn gradients_flow_through_fast_ops() {
    // d/dx sum(rms_norm(x) · c), against finite differences in float32
    let x = sample(&[2, 6], 12);
    let c = sample(&[2, 6], 13);
    let cc = c.clone();
    let f = move |a: &[Array]| -> Result<Vec<Array>> {
        Ok(vec![ops::sum(
            &fast::rms_norm(&a[0], None, 1e-5)?.multiply(&cc)?,
            false,
        )?])
    };
    let g = f64s(&grad(f.clone(), &[0]).unwrap().call(&[&x]).unwrap()[0]);
    let xv = x.to_vec::<f32>().unwrap();
    let h = 1e-2f32;
    for j in 0..xv.len() {
        let eval_at = |delta: f32| {
            let mut v = xv.clone();
            v[j] += delta;
            let moved = Array::from_slice(&v, &[2, 6]).unwrap();
            let ff = f.clone();
            ff(&[moved]).unwrap()[0].item::<f32>().unwrap() as f64
        };
        let numeric = (eval_at(h) - eval_at(-h)) / (2.0 * h as f64);
        assert!(
            (numeric - g[j]).abs() < 2e-2 * (1.0 + numeric.abs()),
            "[{j}] {} vs {numeric}",
            g[j]
        );
    }
}

// -------------------------------------------------------------------------------------
// Bad inputs: errors, not aborts
// -------------------------------------------------------------------------------------

#[test]
fn bad_inputs_are_errors() {
    let x = sample(&[2, 4], 14);
    let is_mlx = |r: Result<Array>, what: &str| match r {
        Err(Error::Mlx { message, .. }) => assert!(!message.is_empty(), "{what}"),
        other => panic!("{what}: expected an MLX error, got {other:?}"),
    };
    is_mlx(
        fast::rms_norm(&x, Some(&sample(&[3], 0)), 1e-5),
        "rms_norm weight of the wrong size",
    );
    is_mlx(
        fast::layer_norm(&x, None, Some(&sample(&[5], 0)), 1e-5),
        "layer_norm bias of the wrong size",
    );
    let x4 = sample(&[1, 1, 3, 8], 15);
    let freqs = sample(&[3], 0);
    let options = RopeOptions {
        freqs: Some(&freqs),
        ..Default::default()
    };
    is_mlx(
        fast::rope(&x4, 8, 0, options),
        "rope freqs of the wrong size",
    );
    let k = sample(&[1, 1, 3, 4], 16);
    is_mlx(
        fast::scaled_dot_product_attention(&x4, &k, &k, 1.0, AttentionMask::None),
        "attention with mismatched head dims",
    );
    let q3 = sample(&[1, 3, 3, 8], 17);
    let k2 = sample(&[1, 2, 3, 8], 18);
    is_mlx(
        fast::scaled_dot_product_attention(&q3, &k2, &k2, 1.0, AttentionMask::None),
        "query heads not a multiple of key heads",
    );
    let bad_mask = Array::from_slice(&[true; 4], &[2, 2]).unwrap();
    is_mlx(
        fast::scaled_dot_product_attention(&x4, &x4, &x4, 1.0, AttentionMask::Array(&bad_mask)),
        "mask that does not broadcast",
    );
    let targets = Array::from_slice(&[0i32, 1, 2], &[3]).unwrap();
    is_mlx(
        fast::cross_entropy(&x, &targets),
        "cross_entropy targets of the wrong shape",
    );
}
