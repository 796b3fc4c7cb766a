//! STOPGAP, to be replaced by `mlx_rs::fast` once it lands: `rms_norm`, `rope` and
//! `scaled_dot_product_attention` composed from plain ops, with the signatures the
//! `mlx_rs::fast` wrappers of `mlx_fast_*` are expected to have. They compute in fp32 and
//! cast back, as MLX's own fallbacks do.

use mlx_rs::{ops, Array, Dtype, Result};

/// `x · rsqrt(mean(x²) + eps) · weight` over the last axis.
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    let xf = x.astype(Dtype::Float32)?;
    let ms = ops::mean_axis(&ops::square(&xf)?, -1, true)?;
    let normed = xf.multiply(&ops::rsqrt(&ms.add(&Array::scalar(eps))?)?)?;
    match weight {
        Some(w) => {
            let out_type = if w.dtype() == Dtype::Float32 {
                Dtype::Float32
            } else {
                x.dtype()
            };
            normed.astype(out_type)?.multiply(&w.astype(out_type)?)
        }
        None => normed.astype(x.dtype()),
    }
}

/// Rotary embedding of the first `dims` features of the last axis (rotate-half form when
/// `traditional` is false), positions starting at `offset` along axis −2.
pub fn rope(
    x: &Array,
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    offset: i32,
    freqs: Option<&Array>,
) -> Result<Array> {
    assert!(
        !traditional && freqs.is_none(),
        "stopgap rope: plain form only"
    );
    let base = base.unwrap_or(10000.0);
    let shape = x.shape().to_vec();
    let nd = shape.len();
    let (l, d) = (shape[nd - 2], shape[nd - 1]);
    let half = dims / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| base.powf(-(2 * i) as f32 / dims as f32))
        .collect();
    let pos: Vec<f32> = (0..l).map(|p| (p + offset) as f32 * scale).collect();
    let inv = Array::from_slice(&inv, &[1, half])?;
    let pos = Array::from_slice(&pos, &[l, 1])?;
    let theta = pos.multiply(&inv)?; // [L, half]
    let (cos, sin) = (ops::cos(&theta)?, ops::sin(&theta)?);
    let xf = x.astype(Dtype::Float32)?;
    let sl = |a: &Array, s: i32, e: i32| -> Result<Array> {
        let mut start = vec![0; nd];
        let mut stop = shape.clone();
        start[nd - 1] = s;
        stop[nd - 1] = e;
        ops::slice(a, &start, &stop, &vec![1; nd])
    };
    let x1 = sl(&xf, 0, half)?;
    let x2 = sl(&xf, half, dims)?;
    let o1 = x1.multiply(&cos)?.subtract(&x2.multiply(&sin)?)?;
    let o2 = x1.multiply(&sin)?.add(&x2.multiply(&cos)?)?;
    let mut parts = vec![o1, o2];
    if dims < d {
        parts.push(sl(&xf, dims, d)?);
    }
    ops::concatenate_axis(&parts, -1)?.astype(x.dtype())
}

/// Softmax attention of `q` `[B, Hq, L, D]` over `k`, `v` `[B, Hkv, S, D]` (grouped
/// heads), with `mask_mode` `"causal"` (bottom-right aligned) or `""`.
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask_mode: &str,
    mask: Option<&Array>,
    sinks: Option<&Array>,
) -> Result<Array> {
    assert!(
        mask.is_none() && sinks.is_none(),
        "stopgap sdpa: no mask arrays or sinks"
    );
    let (b, hq, l, d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (hkv, s) = (k.shape()[1], k.shape()[2]);
    let rep = hq / hkv;
    let qf = q
        .astype(Dtype::Float32)?
        .multiply(&Array::scalar(scale))?
        .reshape(&[b, hkv, rep, l, d])?;
    let kf = ops::expand_dims(&k.astype(Dtype::Float32)?, 2)?;
    let vf = ops::expand_dims(&v.astype(Dtype::Float32)?, 2)?;
    let mut scores = qf.matmul(&ops::swapaxes(&kf, -1, -2)?)?; // [B, Hkv, rep, L, S]
    if mask_mode == "causal" {
        let qi = ops::arange((s - l) as f64, s as f64, 1.0, Dtype::Int32)?.reshape(&[l, 1])?;
        let ki = ops::arange(0.0, s as f64, 1.0, Dtype::Int32)?.reshape(&[1, s])?;
        let allowed = ops::greater_equal(&qi, &ki)?;
        scores = ops::r#where(&allowed, &scores, &Array::scalar(f32::NEG_INFINITY))?;
    }
    let probs = ops::softmax_axis(&scores, -1, true)?;
    probs
        .matmul(&vf)?
        .reshape(&[b, hq, l, d])?
        .astype(q.dtype())
}
