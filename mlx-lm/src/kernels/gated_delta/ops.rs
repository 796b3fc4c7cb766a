//! The gated delta rule as plain MLX ops: the sequential reference recurrence (as mlx-lm's
//! `gated_delta_ops`), and the pieces around it (the causal conv, the q/k norms, the
//! decay gate, the gated output norm). Every faster form is checked against these.

use crate::error::Result;
use mlx_rs::{fast, ops, Array, Dtype};

/// `x · sigmoid(x)`.
fn silu(x: &Array) -> Result<Array> {
    Ok(x.multiply(&ops::sigmoid(x)?)?)
}

/// A scalar of `like`'s dtype (as a Python scalar would be in MLX: it does not promote).
fn scalar_like(value: f32, like: &Array) -> Result<Array> {
    Ok(Array::scalar(value).astype(like.dtype())?)
}

/// L2-normalises q and k per head (eps 1e-6 on the sum of squares) and folds the
/// `Dk^-1/2` read-out scale into q, through RMSNorm as mlx-lm's `normalize_qk` does.
pub fn normalize_qk(q: &Array, k: &Array, dk: i32) -> Result<(Array, Array)> {
    let inv_scale = (dk as f32).powf(-0.5);
    let rms_eps = 1e-6 * inv_scale * inv_scale;
    let q = fast::rms_norm(q, None, rms_eps)?;
    let q = q.multiply(&scalar_like(inv_scale * inv_scale, &q)?)?;
    let k = fast::rms_norm(k, None, rms_eps)?;
    let k = k.multiply(&scalar_like(inv_scale, &k)?)?;
    Ok((q, k))
}

/// The per-token decay `exp(−exp(A_log) · softplus(a + dt_bias))`, in fp32.
pub fn decay(a_log: &Array, a: &Array, dt_bias: &Array) -> Result<Array> {
    Ok(ops::exp(&log_decay(a_log, a, dt_bias)?)?)
}

/// `−exp(A_log) · softplus(a + dt_bias)` in fp32: the log of [`decay`], for the chunked
/// prefill (which works with cumulative sums of it).
pub fn log_decay(a_log: &Array, a: &Array, dt_bias: &Array) -> Result<Array> {
    let x = a.add(dt_bias)?;
    let softplus = ops::logaddexp(&x, &scalar_like(0.0, &x)?)?;
    let rate = ops::exp(&a_log.astype(Dtype::Float32)?)?;
    Ok(rate.negative()?.multiply(&softplus)?)
}

/// The causal depthwise conv of a Gated DeltaNet layer: `input` `[B, K − 1 + S, C]` (the
/// carried inputs, then the new ones), taps `weight` `[C, K, 1]` (MLX's conv layout);
/// returns `[B, S, C]`, `out[t, c] = Σ_j input[t + j, c] · weight[c, j]`, summed in
/// float32 and rounded once to `input`'s dtype, which is what MLX's grouped conv computes.
///
/// Element-wise products of shifted views rather than MLX's conv: on CUDA, MLX's grouped
/// conv builds a cuDNN graph for every new sequence length (measured on an H200: 190–240 ms
/// for each prompt length a server had not seen, against a ~50 ms request).
pub fn causal_conv(input: &Array, weight: &Array) -> Result<Array> {
    let (b, total, c) = (input.try_dim(0)?, input.try_dim(1)?, input.try_dim(2)?);
    let taps = weight.try_dim(1)?;
    let s = total - (taps - 1);
    if weight.shape() != [c, taps, 1] || taps < 1 || s < 0 {
        return Err(crate::error::Error::InvalidArgument(format!(
            "causal conv: input {:?} and taps {:?} must be [B, K - 1 + S, C] and [C, K, 1]",
            input.shape(),
            weight.shape()
        )));
    }
    let w = weight.reshape(&[c, taps])?.astype(Dtype::Float32)?;
    // Tap j times the inputs it meets: positions j .. j + S.
    let term = |j: i32| -> Result<Array> {
        let x = ops::slice(input, &[0, j, 0], &[b, j + s, c], &[1, 1, 1])?;
        let wj = ops::slice(&w, &[0, j], &[c, j + 1], &[1, 1])?.reshape(&[c])?;
        Ok(x.astype(Dtype::Float32)?.multiply(&wj)?)
    };
    let mut out = term(0)?;
    for j in 1..taps {
        out = out.add(&term(j)?)?;
    }
    Ok(out.astype(input.dtype())?)
}

/// The gated output norm, `rmsnorm(x) · weight · silu(z)` per head, the SiLU gate product
/// taken in fp32.
pub fn gated_rms_norm(x: &Array, z: &Array, weight: &Array, eps: f32) -> Result<Array> {
    let normed = fast::rms_norm(x, Some(weight), eps)?;
    let gate = silu(&z.astype(Dtype::Float32)?)?;
    Ok(gate
        .multiply(&normed.astype(Dtype::Float32)?)?
        .astype(x.dtype())?)
}

/// The sequential reference form: one state update per token.
///
/// Per value head (`hk = hv / (Hv/Hk)` picks its key head):
/// `S ← g·S; δ = β·(v − S·k); S ← S + δ ⊗ k; y = S·q`.
pub fn gated_delta_sequential(
    q: &Array,
    k: &Array,
    v: &Array,
    g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<(Array, Array)> {
    let (b, t, hk, dk) = (q.try_dim(0)?, q.try_dim(1)?, q.try_dim(2)?, q.try_dim(3)?);
    let (hv, dv) = (v.try_dim(2)?, v.try_dim(3)?);
    let (q, k) = if hv > hk {
        let r = hv / hk;
        (ops::repeat_axis(q, r, 2)?, ops::repeat_axis(k, r, 2)?)
    } else {
        (q.clone(), k.clone())
    };
    let step = |a: &Array, i: i32, width: i32| -> Result<Array> {
        Ok(
            ops::slice(a, &[0, i, 0, 0], &[b, i + 1, hv, width], &[1, 1, 1, 1])?
                .reshape(&[b, hv, width])?,
        )
    };
    let step3 = |a: &Array, i: i32| -> Result<Array> {
        Ok(ops::slice(a, &[0, i, 0], &[b, i + 1, hv], &[1, 1, 1])?.reshape(&[b, hv])?)
    };
    let mut state = state.clone();
    let mut ys = Vec::with_capacity(t as usize);
    for i in 0..t {
        let (qt, kt, vt) = (step(&q, i, dk)?, step(&k, i, dk)?, step(v, i, dv)?);
        let gt = step3(g, i)?.reshape(&[b, hv, 1, 1])?;
        let bt = step3(beta, i)?.reshape(&[b, hv, 1])?;
        let k_row = kt.reshape(&[b, hv, 1, dk])?;
        state = state.multiply(&gt)?;
        let kv_mem = ops::sum_axis(&state.multiply(&k_row)?, -1, false)?;
        let delta = vt.subtract(&kv_mem)?.multiply(&bt)?;
        state = state.add(&k_row.multiply(&delta.reshape(&[b, hv, dv, 1])?)?)?;
        let q_row = qt.reshape(&[b, hv, 1, dk])?;
        let y = ops::sum_axis(&state.multiply(&q_row)?, -1, false)?;
        ys.push(y.astype(q.dtype())?);
    }
    let y = ops::stack_axis(&ys, 1)?;
    Ok((y, state))
}
