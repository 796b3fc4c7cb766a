//! Fused single-token (decode) forms of the model's pieces.
//!
//! * **Whole-layer DeltaNet decode kernel** ([`delta_decode_kernel`], GPU): from the
//!   layer's projections to the delta-rule output in one launch — causal conv over the
//!   carried inputs, SiLU, L2 norms of q and k, the gates, the recurrence step, the new
//!   conv state. One warp / SIMD group per 4 value rows of a head.
//! * **Gated delta step kernel** ([`gated_delta_step`], [`gated_delta_kernel`], GPU): the
//!   recurrence alone, `q, k, v, g, beta, state → y, state`, one warp per value row, over
//!   `T ≥ 1` tokens in one launch (the state stays in registers across tokens).
//! * **Compiled graphs** (CPU, and the GPU pieces the kernels do not cover): the step's ops,
//!   the conv + SiLU + norms + gates of a decode step ([`delta_decode_inputs`]), the gated
//!   output norm, SwiGLU, the attention output gate, the residual add + RMSNorm.
//!
//! The kernels' CUDA and Metal sources share one body each (`model/kernels/*.inc`); a short
//! prologue per backend maps the launch indices. `tests/kernel_emulation/` runs both
//! sources on the CPU (emulated warps) and compiles the CUDA one with NVRTC, without a GPU.
//!
//! Everything here computes the same values as the plain ops of [`super::deltanet`],
//! [`super::attention`] and [`super::mlp`] (which stay the reference and the prefill path):
//! on the CPU the fused decode is bit-identical to them today; the kernels round to the
//! activation dtype at the same points as the ops and differ only in the order of fp32
//! sums and in the last bit of `exp`/`rsqrt`.
//!
//! # Choosing a path
//! A model picks its [`StepPath`] once, at load ([`crate::options::Plan`]): the kernels of
//! the GPU backend for a model on the GPU, compiled ops on the CPU, plain ops for
//! [`crate::options::Decode::Reference`]. The functions here take the path as an argument.
//!
//! # Layout
//! [`kernels`] holds the GPU kernels (sources, builders, checks, launches), [`compiled`]
//! the compiled graphs; this module the path choice ([`StepPath`]) and the two entry
//! points that dispatch on it ([`gated_delta_step`], [`delta_decode`]).

pub mod compiled;
pub mod kernels;

pub(crate) use compiled::compiled;
pub use compiled::{
    add_rms_norm, delta_decode_inputs, gated_rms_norm, rms_norm, sigmoid_gate, swiglu,
};
pub use kernels::*;

use crate::error::Result;
use compiled::step_ops;
use mlx_rs::{ops, Array, Device, DeviceType};

/// How the gated delta step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepPath {
    /// The custom CUDA kernel (MLX with the CUDA backend, current stream on the GPU).
    CudaKernel,
    /// The custom Metal kernel (MLX with the Metal backend, current stream on the GPU).
    MetalKernel,
    /// The step's ops, compiled into fused kernels (the CPU path).
    Compiled,
    /// The step's ops, uncompiled (the reference).
    Ops,
}

impl StepPath {
    /// The GPU kernel path of this platform (Metal on macOS, CUDA elsewhere) if the MLX
    /// loaded at run time has a GPU; `None` otherwise. Decided at run time, not from the
    /// backend MLX was built against: a binary built against the CPU library runs on the
    /// CUDA one unchanged.
    pub fn gpu_kernel() -> Option<StepPath> {
        if !Device::gpu().is_available() {
            None
        } else if cfg!(target_os = "macos") {
            Some(StepPath::MetalKernel)
        } else {
            Some(StepPath::CudaKernel)
        }
    }

    /// The path of the fused decode on `device`: the GPU kernel on a GPU, compiled ops on
    /// the CPU.
    pub fn fused_on(device: &Device) -> StepPath {
        let on_gpu = device.kind().is_ok_and(|k| k == DeviceType::Gpu);
        match (on_gpu, StepPath::gpu_kernel()) {
            (true, Some(kernel)) => kernel,
            _ => StepPath::Compiled,
        }
    }

    /// Whether this is a GPU kernel path.
    pub fn is_kernel(self) -> bool {
        matches!(self, StepPath::CudaKernel | StepPath::MetalKernel)
    }
}

/// Head layout of a DeltaNet layer (the constants its compiled decode inputs capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeltaHeads {
    /// Key heads.
    pub hk: i32,
    /// Value heads.
    pub hv: i32,
    /// Key head dim.
    pub dk: i32,
    /// Value head dim.
    pub dv: i32,
}

impl DeltaHeads {
    pub(super) fn key(self) -> u64 {
        let f = |x: i32| (x as u16) as u64;
        f(self.hk) | f(self.hv) << 16 | f(self.dk) << 32 | f(self.dv) << 48
    }
}

/// One single-token gated delta step on `path`. A kernel path falls back to compiled ops
/// for dimensions the kernel does not take (Dk not a multiple of 32).
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
    let path = match path {
        StepPath::CudaKernel | StepPath::MetalKernel if !kernel_fits(d) => StepPath::Compiled,
        p => p,
    };
    match path {
        StepPath::CudaKernel | StepPath::MetalKernel => {
            let (y, state) = launch(path, d, &q4, &k4, &v4, &g3, &b3, state)?;
            Ok((y.reshape(&[d.b, d.hv, d.dv])?, state))
        }
        StepPath::Compiled => {
            let out = compiled(
                "gated_delta_step",
                0,
                false,
                || step_ops,
                &[q, k, v, g, beta, state],
            )?;
            Ok((out[0].clone(), out[1].clone()))
        }
        StepPath::Ops => {
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
    }
}

/// One token of a Gated DeltaNet layer (shapes as [`delta_decode_kernel`]) on `path`:
/// on a kernel path the whole-layer kernel when the inputs fit it, else the compiled
/// inputs ([`delta_decode_inputs`]) and the step ([`gated_delta_step`], itself a kernel
/// on a kernel path). Returns `y` `[B, 1, Hv, Dv]` (`[B, Hv, Dv]` for a `[B, C]` `qkv`),
/// the new state and the new conv state.
#[allow(clippy::too_many_arguments)]
pub fn delta_decode(
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
    if path.is_kernel() {
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
            return launch_decode(path, heads, checked, x);
        }
    }
    let bsz = qkv.try_dim(0)?;
    // The compiled inputs take the [B, 1, ..] forms.
    let (qkv3, a3, b3);
    let (qkv, a, b, y_shape): (&Array, &Array, &Array, &[i32]) = if qkv.ndim() == 2 {
        qkv3 = ops::expand_dims(qkv, 1)?;
        a3 = ops::expand_dims(a, 1)?;
        b3 = ops::expand_dims(b, 1)?;
        (&qkv3, &a3, &b3, &[bsz, heads.hv, heads.dv])
    } else {
        (qkv, a, b, &[bsz, 1, heads.hv, heads.dv])
    };
    let [q, k, v, g, beta, conv] =
        delta_decode_inputs(heads, qkv, conv_state, conv_weight, a, b, a_log, dt_bias)?;
    let (y, state) = gated_delta_step(path, &q, &k, &v, &g, &beta, state)?;
    Ok((y.reshape(y_shape)?, state, conv))
}
