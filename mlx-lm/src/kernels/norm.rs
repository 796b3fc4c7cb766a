//! CUDA kernels for the norms of a decode step, each one launch where MLX runs two:
//!
//! * [`add_rms_norm`] (`mlx-lm/kernels/norm_add.cu.inc`): the residual add and the
//!   RMSNorm after it (MLX: an `Add` and an `RMSNorm` kernel), twice per decoder layer;
//! * [`gated_rms_norm`] (`mlx-lm/kernels/norm_gated.cu.inc`): a Gated DeltaNet layer's
//!   gated output norm (MLX: an `RMSNorm` and a fused element-wise kernel).
//!
//! A decode step is host-bound on a fast GPU and MLX's host time grows with the kernels
//! it launches: for the 2B, these take 66 of the ~300 launches of a step. Same values as
//! the ops forms up to the last bit of an `exp` or `rsqrt` (rounding to the activation
//! dtype at the same points); `tests/lm/norm_kernel.rs` compares them on a CUDA GPU.
//!
//! [`add_rms_norm_on`] and [`gated_rms_norm_on`] pick the kernel on the CUDA kernel path
//! for shapes it takes, else the compiled ops.

use crate::error::{Error, Result};
use crate::kernels::gated_delta::StepPath;
use crate::kernels::gpu::{self, f32_constant, GpuBackend};
use mlx_rs::fast::{KernelConfig, TemplateArg};
use mlx_rs::{Array, Dtype};

/// Body of the residual add + RMSNorm kernel.
pub const ADD_BODY: &str = include_str!("../../kernels/norm_add.cu.inc");
/// Body of the gated output norm kernel.
pub const GATED_BODY: &str = include_str!("../../kernels/norm_gated.cu.inc");

/// Rows longer than this are left to MLX (a thread holds `D / 256` values in registers).
const MAX_ROW: i32 = 8192;

fn bad(msg: String) -> Error {
    Error::InvalidArgument(format!("norm kernel: {msg}"))
}

/// Threads per block for rows of `d` values: one per value up to 256, then 256.
fn threads(d: i32) -> i32 {
    (d.min(256) + 31) / 32 * 32
}

/// Whether the kernels take rows of `d` values of `x` with weight `w`.
fn fits(x: &Array, w: &Array) -> bool {
    let d = x.shape().last().copied().unwrap_or(0);
    x.ndim() >= 1
        && (1..=MAX_ROW).contains(&d)
        && w.shape() == [d]
        && matches!(x.dtype(), Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
        && matches!(w.dtype(), Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
}

/// The launch shape for `x`'s rows: `(rows, d)`.
fn rows(x: &Array) -> (i32, i32) {
    let d = x.shape().last().copied().unwrap_or(1).max(1);
    ((x.size() as i64 / d as i64) as i32, d)
}

/// `(h + r, rms_norm(h + r) · w)` in one CUDA launch: `h`, `r` of one shape and float
/// dtype, rows over the last axis; `w` `[D]`. Errors for inputs the kernel does not take
/// (see [`add_rms_norm_on`], which falls back to the ops).
pub fn add_rms_norm(h: &Array, r: &Array, w: &Array, eps: f32) -> Result<(Array, Array)> {
    if !fits(h, w) || r.shape() != h.shape() || r.dtype() != h.dtype() || h.size() == 0 {
        return Err(bad(format!(
            "add + rms_norm of {:?} {:?} and {:?} {:?} with weight {:?} {:?}",
            h.shape(),
            h.dtype(),
            r.shape(),
            r.dtype(),
            w.shape(),
            w.dtype()
        )));
    }
    let (n, d) = rows(h);
    let t = threads(d);
    let kern = gpu::kernel(
        GpuBackend::Cuda,
        "norm_add_rms",
        &["h", "r", "w", "eps"],
        &["h_out", "n_out"],
        |_| ADD_BODY.to_string(),
    )?;
    let config = KernelConfig::new([t, 1, n], [t, 1, 1])
        .output(h.shape(), h.dtype())
        .output(h.shape(), h.dtype())
        .template("T", TemplateArg::Dtype(h.dtype()))
        .template("WT", TemplateArg::Dtype(w.dtype()))
        .template("D", TemplateArg::Int(d))
        .template("THREADS", TemplateArg::Int(t));
    let eps = f32_constant(eps)?;
    let out = kern.apply(&[h, r, w, &eps], &config)?;
    let [h, n] = gpu::outputs(out, "add + rms_norm kernel")?;
    Ok((h, n))
}

/// `silu(z) · rms_norm(y) · w` per row (the gated output norm of a Gated DeltaNet layer),
/// in one CUDA launch: `y`, `z` of one shape and float dtype, rows over the last axis,
/// `w` `[D]`. Errors for inputs the kernel does not take (see [`gated_rms_norm_on`]).
pub fn gated_rms_norm(y: &Array, z: &Array, w: &Array, eps: f32) -> Result<Array> {
    if !fits(y, w) || z.shape() != y.shape() || z.dtype() != y.dtype() || y.size() == 0 {
        return Err(bad(format!(
            "gated rms_norm of {:?} {:?} with gate {:?} {:?} and weight {:?} {:?}",
            y.shape(),
            y.dtype(),
            z.shape(),
            z.dtype(),
            w.shape(),
            w.dtype()
        )));
    }
    let (n, d) = rows(y);
    let t = threads(d);
    let kern = gpu::kernel(
        GpuBackend::Cuda,
        "norm_gated_rms",
        &["y", "z", "w", "eps"],
        &["out"],
        |_| GATED_BODY.to_string(),
    )?;
    let config = KernelConfig::new([t, 1, n], [t, 1, 1])
        .output(y.shape(), y.dtype())
        .template("T", TemplateArg::Dtype(y.dtype()))
        .template("WT", TemplateArg::Dtype(w.dtype()))
        .template("D", TemplateArg::Int(d))
        .template("THREADS", TemplateArg::Int(t));
    let eps = f32_constant(eps)?;
    let out = kern.apply(&[y, z, w, &eps], &config)?;
    let [out] = gpu::outputs(out, "gated rms_norm kernel")?;
    Ok(out)
}

/// `(h + r, rms_norm(h + r) · w)`: [`add_rms_norm`]'s kernel on [`StepPath::CudaKernel`]
/// for inputs it takes, else the compiled ops ([`crate::kernels::compiled::add_rms_norm`]).
pub fn add_rms_norm_on(
    path: StepPath,
    h: &Array,
    r: &Array,
    w: &Array,
    eps: f32,
) -> Result<(Array, Array)> {
    if path == StepPath::CudaKernel {
        if let Ok(out) = add_rms_norm(h, r, w, eps) {
            return Ok(out);
        }
    }
    crate::kernels::compiled::add_rms_norm(h, r, w, eps)
}

/// The gated output norm: [`gated_rms_norm`]'s kernel on [`StepPath::CudaKernel`] for
/// inputs it takes, else the compiled ops
/// ([`crate::kernels::gated_delta::compiled::gated_rms_norm`]).
pub fn gated_rms_norm_on(
    path: StepPath,
    y: &Array,
    z: &Array,
    w: &Array,
    eps: f32,
) -> Result<Array> {
    if path == StepPath::CudaKernel {
        if let Ok(out) = gated_rms_norm(y, z, w, eps) {
            return Ok(out);
        }
    }
    crate::kernels::gated_delta::compiled::gated_rms_norm(y, z, w, eps)
}
