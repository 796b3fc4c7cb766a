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
//! * [`gated_delta_decode`]: one token of a whole layer from its projections (the causal
//!   conv over the carried inputs, SiLU, the q/k norms and the gates, then the rule): on a
//!   kernel path one launch of the whole-layer kernel when the inputs fit it, else the
//!   compiled inputs and [`gated_delta_step`].
//!
//! # Forms
//! * [`ops`]: the sequential reference (plain MLX ops), and the element-wise pieces
//!   around it; every other form computes the same values.
//! * [`chunked`]: the WY / UT-transform form for prefill, in float32 matrix products
//!   (any backend; on the CPU optionally through [`crate::kernels::cpu_gemm`]).
//! * [`kernel`]: the CUDA and Metal kernels (sources in `mlx-lm/kernels/`): the step
//!   over `T ≥ 1` tokens (one warp / SIMD group per value row, the state in registers)
//!   and the whole-layer decode (one warp per 4 value rows of a head).
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

/// One token of a Gated DeltaNet layer on `path`, from its projections to the rule's
/// output: on a kernel path the whole-layer kernel ([`kernel::delta_decode_kernel`]) when
/// the inputs fit it, else the compiled inputs ([`delta_decode_inputs`]) and the step
/// ([`gated_delta_step`], itself a kernel on a kernel path).
///
/// Shapes: `qkv` `[B, 1, C]` (`C = 2·Hk·Dk + Hv·Dv`, the `[q|k|v]` projections before the
/// conv), `a`, `b` `[B, 1, Hv]`, or all three without the length axis; `conv_state`
/// `[B, K − 1, C]` (the carried conv inputs); `conv_weight` `[C, K, 1]`; `a_log`, `dt_bias`
/// `[Hv]`; `state` `[B, Hv, Dv, Dk]` fp32. Returns `y` `[B, 1, Hv, Dv]` (`[B, Hv, Dv]` for a
/// `[B, C]` `qkv`, before the gated output norm), the new state and the new conv state.
#[allow(clippy::too_many_arguments)]
pub fn gated_delta_decode(
    path: StepPath,
    heads: DeltaHeads,
    qkv: &Array,
    conv_state: &Array,
    conv_weight: &Array,
    a: &Array,
    b: &Array,
    a_log: &Array,
    dt_bias: &Array,
    state: &Array,
) -> Result<(Array, Array, Array)> {
    if let Some(backend) = path.backend() {
        if let Ok(checked) = check_decode(
            heads,
            qkv,
            conv_state,
            conv_weight,
            a,
            b,
            a_log,
            dt_bias,
            state,
        ) {
            let x = [qkv, conv_state, conv_weight, a, b, a_log, dt_bias, state];
            return launch_decode(backend, heads, checked, x);
        }
    }
    let bsz = qkv.try_dim(0)?;
    // The compiled inputs take the [B, 1, ..] forms.
    let (qkv3, a3, b3);
    let (qkv, a, b, y_shape): (&Array, &Array, &Array, &[i32]) = if qkv.ndim() == 2 {
        qkv3 = mlx_rs::ops::expand_dims(qkv, 1)?;
        a3 = mlx_rs::ops::expand_dims(a, 1)?;
        b3 = mlx_rs::ops::expand_dims(b, 1)?;
        (&qkv3, &a3, &b3, &[bsz, heads.hv, heads.dv])
    } else {
        (qkv, a, b, &[bsz, 1, heads.hv, heads.dv])
    };
    let [q, k, v, g, beta, conv] =
        delta_decode_inputs(heads, qkv, conv_state, conv_weight, a, b, a_log, dt_bias)?;
    let (y, state) = gated_delta_step(path, &q, &k, &v, &g, &beta, state)?;
    Ok((y.reshape(y_shape)?, state, conv))
}
