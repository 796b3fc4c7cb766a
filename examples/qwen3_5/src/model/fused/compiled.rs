//! The compiled graphs of the fused decode (the CPU path, and the GPU pieces the kernels
//! do not cover): the step's ops, the conv + SiLU + norms + gates of a decode step
//! ([`delta_decode_inputs`]), the gated output norm, SwiGLU, the attention output gate, the
//! norm and the residual add + norm.
//!
//! Compiled closures are cached per thread (MLX keeps its compile cache per thread) and
//! per value of the constants they capture (head counts, `eps`); they are never freed
//! (a few per thread), which avoids racing MLX's own per-thread cache at thread exit.

use super::DeltaHeads;
use crate::error::{Error, Result};
use mlx_rs::transforms::{compile, Closure};
use mlx_rs::{fast, ops, Array, DeviceType, Dtype};
use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;

/// (function, captured constants, stream the trace's ops run on).
type CompiledKey = (&'static str, u64, (bool, i32));

thread_local! {
    static COMPILED: RefCell<HashMap<CompiledKey, ManuallyDrop<Closure<'static>>>> =
        RefCell::new(HashMap::new());
}

/// The current stream as a cache key: (on the GPU, stream index).
fn stream_key() -> Result<(bool, i32)> {
    let s = mlx_rs::current_stream()?;
    Ok((s.device()?.kind()? == DeviceType::Gpu, s.index()?))
}

/// Calls the compiled form of the function `make()` builds, cached on this thread under
/// `(name, key)` and the current stream: `key` must change whenever a constant the
/// function captures does.
///
/// The stream is part of the key because a trace records the stream of each op, while
/// MLX looks its traces up by input shapes and *its* default device only, not by the
/// stream this crate's [`mlx_rs::with_stream`] / [`mlx_rs::with_device`] choose: one
/// closure per stream keeps a CPU trace from being replayed on a GPU stream.
pub(crate) fn compiled<F>(
    name: &'static str,
    key: u64,
    shapeless: bool,
    make: impl FnOnce() -> F,
    args: &[&Array],
) -> Result<Vec<Array>>
where
    F: FnMut(&[Array]) -> mlx_rs::Result<Vec<Array>> + 'static,
{
    let full_key = (name, key, stream_key()?);
    let f = COMPILED.with(|c| -> Result<Closure<'static>> {
        if let Some(f) = c.borrow().get(&full_key) {
            return Ok(Closure::clone(f));
        }
        let f = compile(make(), shapeless)?;
        c.borrow_mut()
            .insert(full_key, ManuallyDrop::new(f.clone()));
        Ok(f)
    })?;
    // `f` is a clone; dropping it after the call only releases this reference.
    Ok(f.call(args)?)
}

fn f32_key(x: f32) -> u64 {
    x.to_bits() as u64
}

/// `x · sigmoid(x)`.
fn silu(x: &Array) -> mlx_rs::Result<Array> {
    x.multiply(&ops::sigmoid(x)?)
}

/// `silu(gate) · up`, compiled (shapeless: prefill and decode share one trace).
pub fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    let out = compiled(
        "swiglu",
        0,
        true,
        || |x: &[Array]| Ok(vec![silu(&x[0])?.multiply(&x[1])?]),
        &[gate, up],
    )?;
    Ok(out[0].clone())
}

/// `x · sigmoid(gate)` (the output gate of attention), compiled (shapeless).
pub fn sigmoid_gate(x: &Array, gate: &Array) -> Result<Array> {
    let out = compiled(
        "sigmoid_gate",
        0,
        true,
        || |x: &[Array]| Ok(vec![x[0].multiply(&ops::sigmoid(&x[1])?)?]),
        &[x, gate],
    )?;
    Ok(out[0].clone())
}

/// `rms_norm(x) · w` (`w` already `1 + w` for the zero-centred norms), compiled: on the
/// CPU MLX runs the norm as element-wise ops and a mean, which compile fuses; on the GPU
/// it stays MLX's own norm kernel.
pub fn rms_norm(x: &Array, w: &Array, eps: f32) -> Result<Array> {
    let out = compiled(
        "rms_norm",
        f32_key(eps),
        false,
        || move |x: &[Array]| Ok(vec![fast::rms_norm(&x[0], Some(&x[1]), eps)?]),
        &[x, w],
    )?;
    Ok(out[0].clone())
}

/// The residual add and the following norm: `(h + r, rms_norm(h + r) · w)`, compiled.
pub fn add_rms_norm(h: &Array, r: &Array, w: &Array, eps: f32) -> Result<(Array, Array)> {
    let out = compiled(
        "add_rms_norm",
        f32_key(eps),
        false,
        || {
            move |x: &[Array]| {
                let h = x[0].add(&x[1])?;
                let n = fast::rms_norm(&h, Some(&x[2]), eps)?;
                Ok(vec![h, n])
            }
        },
        &[h, r, w],
    )?;
    Ok((out[0].clone(), out[1].clone()))
}

/// The gated output norm of DeltaNet, `rmsnorm(o) · w · silu(z)` per head (the product
/// in fp32, as [`crate::model::deltanet`] does), compiled.
pub fn gated_rms_norm(o: &Array, z: &Array, w: &Array, eps: f32) -> Result<Array> {
    let out = compiled(
        "gated_rms_norm",
        f32_key(eps),
        false,
        || {
            move |x: &[Array]| {
                Ok(vec![crate::model::deltanet::gated_rms_norm(
                    &x[0], &x[1], &x[2], eps,
                )?])
            }
        },
        &[o, z, w],
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
    let (q, k) = crate::model::deltanet::normalize_qk(&q, &k, h.dk)?;
    let beta = ops::sigmoid(b)?.reshape(&[bsz, h.hv])?;
    let g = crate::model::deltanet::decay(a_log, a, dt_bias)?.reshape(&[bsz, h.hv])?;
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
