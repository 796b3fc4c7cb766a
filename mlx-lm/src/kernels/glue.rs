//! The glue between a decode step's products in single CUDA launches, each one graph node
//! where MLX's ops make two, with the same values:
//! * [`add_rms_norm`] (`mlx-lm/kernels/add_rms_norm.cu.inc`): a residual add and the next
//!   RMSNorm (48 pairs in a 2B decode step; the sum of squares in another order);
//! * [`swiglu`] (`mlx-lm/kernels/swiglu_joined.cu.inc`): SwiGLU straight from the MLP's
//!   joined gate / up projection (no Split; 24 in a 2B step).

use crate::error::{Error, Result};
use crate::kernels::gpu::{self, GpuBackend};
use mlx_rs::fast::{KernelConfig, TemplateArg};
use mlx_rs::{Array, Dtype};

/// The kernel's body.
pub const ADD_NORM_BODY: &str = include_str!("../../kernels/add_rms_norm.cu.inc");
/// The most threads of a block (one row).
pub const MAX_THREADS: i32 = 1024;
/// Values each thread takes, unless the row needs more than [`MAX_THREADS`] threads.
pub const PER_THREAD: i32 = 8;

/// Threads of a block for rows of `d` values: a whole number of warps, at most
/// [`MAX_THREADS`].
fn threads(d: i32) -> i32 {
    let t = (d + PER_THREAD - 1) / PER_THREAD;
    ((t + 31) / 32 * 32).clamp(32, MAX_THREADS)
}

/// `(x + r, rmsnorm(x + r) · w)` for rows `x`, `r` `[B, D]` and a weight `w` `[D]` of one
/// float dtype, as MLX's `add` and `fast::rms_norm` compute them, in one CUDA launch.
///
/// # Errors
/// Shapes or dtypes that differ, an `eps` that is not finite or below 0; and (when
/// evaluated) where MLX lacks CUDA.
pub fn add_rms_norm(x: &Array, r: &Array, w: &Array, eps: f32) -> Result<(Array, Array)> {
    let bad = |m: String| Error::InvalidArgument(format!("add + RMSNorm kernel: {m}"));
    let &[b, d] = x.shape() else {
        return Err(bad(format!("x {:?} must be [B, D]", x.shape())));
    };
    if r.shape() != x.shape() || w.shape() != [d] || b <= 0 || d <= 0 || b > 65_535 {
        return Err(bad(format!(
            "x {:?}, r {:?} and w {:?} must be [B, D], [B, D] and [D] (0 < B ≤ 65535)",
            x.shape(),
            r.shape(),
            w.shape()
        )));
    }
    let act = x.dtype();
    if !matches!(act, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
        || r.dtype() != act
        || w.dtype() != act
    {
        return Err(bad(format!(
            "x, r and w must share one float dtype, found {act:?}, {:?}, {:?}",
            r.dtype(),
            w.dtype()
        )));
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(bad(format!("eps must be finite and ≥ 0, found {eps}")));
    }
    let t = threads(d);
    let kernel = gpu::kernel(
        GpuBackend::Cuda,
        "add_rms_norm",
        &["x", "r", "w"],
        &["h", "n"],
        |_| ADD_NORM_BODY.to_string(),
    )?;
    let config = KernelConfig::new([t, 1, b], [t, 1, 1])
        .output(&[b, d], act)
        .output(&[b, d], act)
        .template("T", TemplateArg::Dtype(act))
        .template("D", TemplateArg::Int(d))
        .template("THREADS", TemplateArg::Int(t))
        // The bits of a finite float ≥ 0 fit an i32 unchanged.
        .template("EPS_BITS", TemplateArg::Int(eps.to_bits() as i32));
    let [h, n] = gpu::outputs(kernel.apply(&[x, r, w], &config)?, "add + RMSNorm kernel")?;
    Ok((h, n))
}

/// The SwiGLU kernel's body.
pub const SWIGLU_BODY: &str = include_str!("../../kernels/swiglu_joined.cu.inc");
/// Threads of a block of the SwiGLU kernel.
pub const SWIGLU_THREADS: i32 = 256;

/// `silu(g) · u` for a joined gate / up projection `gu` `[B, 2·I]` (the gate's `I` values
/// first) of a float dtype, as MLX's ops on that dtype compute it, in one CUDA launch:
/// `[B, I]`.
///
/// # Errors
/// A `gu` that is not `[B, 2·I]` with `I ≥ 1`, a dtype that is not a float type; and (when
/// evaluated) where MLX lacks CUDA.
pub fn swiglu(gu: &Array) -> Result<Array> {
    let bad = |m: String| Error::InvalidArgument(format!("SwiGLU kernel: {m}"));
    let &[b, w] = gu.shape() else {
        return Err(bad(format!("gu {:?} must be [B, 2·I]", gu.shape())));
    };
    if b <= 0 || b > 65_535 || w < 2 || w % 2 != 0 {
        return Err(bad(format!(
            "gu {:?} must be [B, 2·I] with I ≥ 1 and 0 < B ≤ 65535",
            gu.shape()
        )));
    }
    let act = gu.dtype();
    if !matches!(act, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) {
        return Err(bad(format!("gu must be a float type, found {act:?}")));
    }
    let inner = w / 2;
    let kernel = gpu::kernel(GpuBackend::Cuda, "swiglu_joined", &["gu"], &["out"], |_| {
        SWIGLU_BODY.to_string()
    })?;
    let grid_x = (inner + SWIGLU_THREADS - 1) / SWIGLU_THREADS * SWIGLU_THREADS;
    let config = KernelConfig::new([grid_x, 1, b], [SWIGLU_THREADS, 1, 1])
        .output(&[b, inner], act)
        .template("T", TemplateArg::Dtype(act))
        .template("I", TemplateArg::Int(inner));
    let [out] = gpu::outputs(kernel.apply(&[gu], &config)?, "SwiGLU kernel")?;
    Ok(out)
}
