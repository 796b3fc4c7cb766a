//! The gated delta rule of Gated DeltaNet layers (Qwen 3.5, Qwen3-Next), in every form,
//! behind two dispatch functions.
//!
//! Per value head, with an fp32 state `S` `[Dv, Dk]` and, per token, the decay
//! `g = exp(−exp(A_log) · softplus(a + dt_bias))` and the write strength `β = sigmoid(b)`:
//! `S ← g·S; δ = β·(v − S·k); S ← S + δ ⊗ k; y = S·q`.
//!
//! # Dispatch
//! * [`gated_delta_update`] (as mlx-lm's `gated_delta_update`): the rule over `T` tokens
//!   from the normalised `q`, `k`, `v` and the raw gate inputs `a`, `b`. A multi-token
//!   call (prefill) takes the form of [`GatedDeltaOptions::prefill`]: the chunkwise-parallel
//!   form ([`chunked`], the default) or the sequential one ([`ops`]), unless it is short
//!   enough for [`GatedDeltaOptions::short_prefill`] (the GPU step kernel over its tokens,
//!   one launch); a single token takes
//!   [`GatedDeltaOptions::step`]: the uncompiled ops, the compiled ops (CPU) or the step
//!   kernel of the GPU backend.
//! * [`gated_delta_decode`]: one token of a whole layer from its joined projections (the
//!   causal conv over the carried inputs, SiLU, the q/k norms and the gates, the rule, then
//!   the gated output norm): on a kernel path one launch of the whole-layer kernel when the
//!   inputs fit it, else the compiled inputs, [`gated_delta_step`] and the compiled norm.
//!
//! # Forms
//! * [`ops`]: the sequential reference (plain MLX ops), and the element-wise pieces
//!   around it; every other form computes the same values.
//! * [`chunked`]: the WY / UT-transform form for prefill, in float32 matrix products
//!   (any backend; on the CPU optionally through [`crate::kernels::cpu_gemm`]).
//! * [`kernel`]: the CUDA and Metal kernels (sources in `mlx-lm/kernels/`): the step
//!   over `T ≥ 1` tokens (one warp / SIMD group per value row, the state in registers)
//!   and the whole-layer decode (one block per value head, each warp 4 or more of its
//!   rows).
//! * [`compiled`]: compiled graphs of the step and of the decode inputs (the CPU path).
//!
//! On the CPU the compiled decode is bit-identical to the ops; the kernels round to the
//! activation dtype at the same points as the ops and differ only in the order of fp32
//! sums and in the last bit of `exp`/`rsqrt`.

pub mod chunked;
pub mod compiled;
pub mod kernel;
pub mod ops;
mod options;

pub use kernel::DecodeLayer;
pub use options::{DeltaHeads, GatedDeltaOptions, Prefill, ShortPrefill, StepPath, DEFAULT_CHUNK};

use crate::error::Result;
use compiled::{delta_decode_inputs, step_ops};
use kernel::{check_decode, check_seq, kernel_fits, launch, launch_decode, shape_error};
use mlx_rs::Array;

/// The gated delta rule over `T ≥ 1` tokens, continuing from `state`, in the form
/// `options` pick (see the [module docs](self)).
///
/// Shapes: `q`, `k` `[B, T, Hk, Dk]` (already normalised: [`ops::normalize_qk`]); `v`
/// `[B, T, Hv, Dv]`; `a`, `b` `[B, T, Hv]` (the decay and write-strength inputs, before
/// softplus / sigmoid); `a_log`, `dt_bias` `[Hv]`; `state` `[B, Hv, Dv, Dk]` fp32. `Hv` a
/// multiple of `Hk`: value head `j` reads key head `j / (Hv / Hk)`. Returns `y`
/// `[B, T, Hv, Dv]` in q's dtype and the new state.
///
/// # Errors
/// Shapes that disagree, a chunk size below 1, and what MLX reports.
#[allow(clippy::too_many_arguments)]
pub fn gated_delta_update(
    q: &Array,
    k: &Array,
    v: &Array,
    a: &Array,
    b: &Array,
    a_log: &Array,
    dt_bias: &Array,
    state: &Array,
    options: &GatedDeltaOptions,
) -> Result<(Array, Array)> {
    let beta = mlx_rs::ops::sigmoid(b)?;
    let t = q.try_dim(1)?;
    if let Some(short) = options.short_prefill.filter(|s| t > 1 && t <= s.max_tokens) {
        let g = ops::decay(a_log, a, dt_bias)?;
        let d = check_seq(q, k, v, &g, &beta, state)?;
        if kernel_fits(d) {
            return launch(short.backend, d, q, k, v, &g, &beta, state);
        }
    }
    if t > 1 {
        let log_g = ops::log_decay(a_log, a, dt_bias)?;
        return match options.prefill.checked()? {
            Prefill::Chunked(chunk) => {
                chunked::gated_delta_chunked(q, k, v, &log_g, &beta, state, chunk, options.cpu)
            }
            Prefill::Sequential => {
                ops::gated_delta_sequential(q, k, v, &mlx_rs::ops::exp(&log_g)?, &beta, state)
            }
        };
    }
    let g = ops::decay(a_log, a, dt_bias)?;
    if options.step == StepPath::Ops {
        return ops::gated_delta_sequential(q, k, v, &g, &beta, state);
    }
    // One token on a compiled or kernel path: the step, on the shapes without T.
    let drop_t = |x: &Array| -> Result<Array> {
        let s = x.shape();
        Ok(x.reshape(&[&s[..1], &s[2..]].concat())?)
    };
    let (y, state) = gated_delta_step(
        options.step,
        &drop_t(q)?,
        &drop_t(k)?,
        &drop_t(v)?,
        &drop_t(&g)?,
        &drop_t(&beta)?,
        state,
    )?;
    let s = y.shape();
    Ok((y.reshape(&[s[0], 1, s[1], s[2]])?, state))
}

/// One single-token gated delta step on `path`. A kernel path falls back to compiled ops
/// for dimensions the kernel does not take (Dk not a multiple of 32, or above
/// [`kernel::MAX_DK`]).
///
/// Shapes: `q`, `k` `[B, Hk, Dk]`; `v` `[B, Hv, Dv]`; `g` (decay), `beta` `[B, Hv]`;
/// `state` `[B, Hv, Dv, Dk]` fp32. Value head `j` reads key head `j / (Hv / Hk)`.
/// Returns `y` `[B, Hv, Dv]` in q's dtype and the new state.
pub fn gated_delta_step(
    path: StepPath,
    q: &Array,
    k: &Array,
    v: &Array,
    g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<(Array, Array)> {
    let expand = |a: &Array, what: &str| -> Result<Array> {
        let s = a.shape();
        match s.len() {
            2 => Ok(a.reshape(&[s[0], 1, s[1]])?),
            3 => Ok(a.reshape(&[s[0], 1, s[1], s[2]])?),
            _ => Err(shape_error(format!("{what} has shape {s:?}"))),
        }
    };
    if q.ndim() != 3 || v.ndim() != 3 || g.ndim() != 2 || beta.ndim() != 2 {
        return Err(shape_error(format!(
            "single step wants q, k [B, Hk, Dk], v [B, Hv, Dv], g, beta [B, Hv]; found q {:?}, v {:?}, g {:?}, beta {:?}",
            q.shape(),
            v.shape(),
            g.shape(),
            beta.shape()
        )));
    }
    let (q4, k4, v4) = (expand(q, "q")?, expand(k, "k")?, expand(v, "v")?);
    let (g3, b3) = (expand(g, "g")?, expand(beta, "beta")?);
    let d = check_seq(&q4, &k4, &v4, &g3, &b3, state)?;
    match path.backend().filter(|_| kernel_fits(d)) {
        Some(backend) => {
            let (y, state) = launch(backend, d, &q4, &k4, &v4, &g3, &b3, state)?;
            Ok((y.reshape(&[d.b, d.hv, d.dv])?, state))
        }
        None if path == StepPath::Ops => {
            let out = step_ops(&[
                q.clone(),
                k.clone(),
                v.clone(),
                g.clone(),
                beta.clone(),
                state.clone(),
            ])?;
            Ok((out[0].clone(), out[1].clone()))
        }
        None => {
            let out = crate::kernels::compiled::compiled(
                "gated_delta_step",
                0,
                false,
                || step_ops,
                &[q, k, v, g, beta, state],
            )?;
            Ok((out[0].clone(), out[1].clone()))
        }
    }
}

/// One token of a Gated DeltaNet layer on `path`, from its joined projections to the
/// gated output norm (the out projection's input): on a kernel path the whole-layer kernel
/// ([`kernel::delta_decode_kernel`], one launch) when the inputs fit it, else the
/// projections split, the compiled inputs ([`delta_decode_inputs`]), the step
/// ([`gated_delta_step`], itself a kernel on a kernel path) and the compiled gated norm
/// ([`compiled::gated_rms_norm`]).
///
/// Shapes as [`DecodeLayer`] says; returns the normed output `[B, 1, Hv·Dv]` (`[B, Hv·Dv]`
/// for `[B, P]` projections), the new state and the new conv state.
pub fn gated_delta_decode(
    path: StepPath,
    heads: DeltaHeads,
    x: &DecodeLayer,
) -> Result<(Array, Array, Array)> {
    if let Some(backend) = path.backend() {
        if let Ok(dims) = check_decode(heads, x) {
            return launch_decode(backend, heads, dims, x);
        }
    }
    let DeltaHeads { hk, hv, dk, dv } = heads;
    let c = 2 * hk * dk + hv * dv;
    let parts = mlx_rs::ops::split_sections(x.proj, &[c, c + hv * dv, c + hv * dv + hv], -1)?;
    let [qkv, z, b, a]: [Array; 4] = parts.try_into().map_err(|p: Vec<Array>| {
        shape_error(format!("the projections split into {} parts", p.len()))
    })?;
    // The compiled inputs take the [B, 1, ..] forms.
    let lead = x.proj.shape()[..x.proj.ndim().saturating_sub(1)].to_vec();
    let one = |a: Array| -> Result<Array> {
        Ok(if a.ndim() == 2 {
            mlx_rs::ops::expand_dims(&a, 1)?
        } else {
            a
        })
    };
    let (qkv, a, b) = (one(qkv)?, one(a)?, one(b)?);
    let [q, k, v, g, beta, conv] = delta_decode_inputs(
        heads,
        &qkv,
        x.conv_state,
        x.conv_weight,
        &a,
        &b,
        x.a_log,
        x.dt_bias,
    )?;
    let (y, state) = gated_delta_step(path, &q, &k, &v, &g, &beta, x.state)?;
    let heads_shape = [lead.as_slice(), &[hv, dv]].concat();
    let out = compiled::gated_rms_norm(
        &y.reshape(&heads_shape)?,
        &z.reshape(&heads_shape)?,
        x.norm_weight,
        x.norm_eps,
    )?;
    Ok((
        out.reshape(&[lead.as_slice(), &[hv * dv]].concat())?,
        state,
        conv,
    ))
}
