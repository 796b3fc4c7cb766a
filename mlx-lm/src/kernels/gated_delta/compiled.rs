//! The compiled graphs of the gated delta rule (the CPU path of a decode step, and the GPU
//! pieces the kernels do not cover): the step's ops, the conv + SiLU + norms + gates of a
//! decode step ([`delta_decode_inputs`]) and the gated output norm. Cached per thread by
//! [`crate::kernels::compiled::compiled`].

use super::ops::{decay, normalize_qk};
use super::options::DeltaHeads;
use crate::error::{Error, Result};
use crate::kernels::compiled::{compiled, f32_key};
use mlx_rs::{ops, Array, Dtype};

/// `x · sigmoid(x)`.
fn silu(x: &Array) -> mlx_rs::Result<Array> {
    x.multiply(&ops::sigmoid(x)?)
}

/// The gated output norm, `rmsnorm(o) · w · silu(z)` per head (the product in fp32), as
/// [`super::ops::gated_rms_norm`], compiled.
pub fn gated_rms_norm(o: &Array, z: &Array, w: &Array, eps: f32) -> Result<Array> {
    let out = compiled(
        "gated_rms_norm",
        f32_key(eps),
        false,
        || move |x: &[Array]| Ok(vec![super::ops::gated_rms_norm(&x[0], &x[1], &x[2], eps)?]),
        &[o, z, w],
    )?;
    Ok(out[0].clone())
}

/// [`super::ops::causal_conv`], compiled (the products and the sum one fused kernel; the
/// trace is redone for each new length, which costs the host a few microseconds).
pub fn causal_conv(input: &Array, weight: &Array) -> Result<Array> {
    let out = compiled(
        "causal_conv",
        0,
        false,
        || {
            |x: &[Array]| {
                super::ops::causal_conv(&x[0], &x[1])
                    .map(|y| vec![y])
                    .map_err(|e| mlx_rs::Error::Closure(e.to_string()))
            }
        },
        &[input, weight],
    )?;
    Ok(out[0].clone())
}

/// The inputs of one decode step of the delta rule, from the layer's projections:
/// the causal depthwise conv over the carried inputs and the new one (as an fp32
/// multiply-sum over the taps, which is what MLX's conv computes), SiLU, the split into
/// q, k, v, their L2 norms, and the gates.
///
/// Shapes: `qkv` `[B, 1, C]`, `conv_state` `[B, K − 1, C]`, `conv_weight` `[C, K, 1]`,
/// `a`, `b` `[B, 1, Hv]`, `a_log`, `dt_bias` `[Hv]`. Returns `q`, `k` `[B, Hk, Dk]`,
/// `v` `[B, Hv, Dv]`, `g`, `beta` `[B, Hv]` and the new conv state `[B, K − 1, C]`.
#[allow(clippy::too_many_arguments)]
pub fn delta_decode_inputs(
    heads: DeltaHeads,
    qkv: &Array,
    conv_state: &Array,
    conv_weight: &Array,
    a: &Array,
    b: &Array,
    a_log: &Array,
    dt_bias: &Array,
) -> Result<[Array; 6]> {
    let out = compiled(
        "delta_decode_inputs",
        heads.key(),
        false,
        || move |x: &[Array]| decode_inputs_ops(heads, x),
        &[qkv, conv_state, conv_weight, a, b, a_log, dt_bias],
    )?;
    out.try_into().map_err(|v: Vec<Array>| {
        Error::InvalidArgument(format!("decode inputs: {} outputs", v.len()))
    })
}

fn decode_inputs_ops(h: DeltaHeads, x: &[Array]) -> mlx_rs::Result<Vec<Array>> {
    let [qkv, conv_state, w, a, b, a_log, dt_bias] = x else {
        return Err(mlx_rs::Error::Closure(format!(
            "decode inputs: 7 inputs expected, got {}",
            x.len()
        )));
    };
    let (bsz, c, taps) = (qkv.dim(0), w.dim(0), w.dim(1));
    let conv_input = ops::concatenate_axis(&[conv_state, qkv], 1)?;
    let new_state = ops::contiguous(
        &ops::slice(&conv_input, &[0, 1, 0], &[bsz, taps, c], &[1, 1, 1])?,
        false,
    )?;
    let w_t = w.reshape(&[c, taps])?.transpose()?.astype(Dtype::Float32)?;
    let conv = ops::sum_axis(
        &conv_input.astype(Dtype::Float32)?.multiply(&w_t)?,
        1,
        false,
    )?;
    let conv = silu(&conv.astype(qkv.dtype())?)?;
    let key_dim = h.hk * h.dk;
    let parts = ops::split_sections(&conv, &[key_dim, 2 * key_dim], -1)?;
    let q = parts[0].reshape(&[bsz, h.hk, h.dk])?;
    let k = parts[1].reshape(&[bsz, h.hk, h.dk])?;
    let v = parts[2].reshape(&[bsz, h.hv, h.dv])?;
    let (q, k) = normalize_qk(&q, &k, h.dk)?;
    let beta = ops::sigmoid(b)?.reshape(&[bsz, h.hv])?;
    let g = decay(a_log, a, dt_bias)?.reshape(&[bsz, h.hv])?;
    Ok(vec![q, k, v, g, beta, new_state])
}

/// The sequential step as ops, on `[q, k, v, g, beta, state]` (single-token shapes): the
/// same ops, in the same order, as one token of the reference recurrence.
pub(super) fn step_ops(x: &[Array]) -> mlx_rs::Result<Vec<Array>> {
    let [q, k, v, g, beta, state] = x else {
        return Err(mlx_rs::Error::Closure(format!(
            "step: 6 inputs expected, got {}",
            x.len()
        )));
    };
    let (hk, hv) = (q.dim(1), v.dim(1));
    let (q, k) = if hv > hk {
        let r = hv / hk;
        (ops::repeat_axis(q, r, 1)?, ops::repeat_axis(k, r, 1)?)
    } else {
        (q.clone(), k.clone())
    };
    let state = state.multiply(&ops::expand_dims_axes(g, &[2, 3])?)?;
    let k_row = ops::expand_dims(&k, 2)?;
    let kv_mem = ops::sum_axis(&state.multiply(&k_row)?, -1, false)?;
    let delta = v.subtract(&kv_mem)?.multiply(&ops::expand_dims(beta, 2)?)?;
    let state = state.add(&k_row.multiply(&ops::expand_dims(&delta, 3)?)?)?;
    let y = ops::sum_axis(&state.multiply(&ops::expand_dims(&q, 2)?)?, -1, false)?;
    Ok(vec![y.astype(q.dtype())?, state])
}
