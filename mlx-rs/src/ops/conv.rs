//! Convolutions (1-D to 3-D, transposed, general) and the Hadamard transform.
//!
//! Inputs are channels-last (`N, ..spatial, C_in`) and weights `C_out, ..kernel, C_in /
//! groups`, as in MLX.
//!
//! An empty input or weight (no batch, no input or output channels) gives zeros of the
//! output shape: each output element is a sum over nothing. A kernel with a spatial size
//! of 0 is an error.

use crate::error::Error;
use crate::raw::stream_op;
use crate::{Array, Result};
use mlx_sys as sys;

/// Fails unless every value of `what` is at least `min` (MLX divides by some of them).
fn check_at_least(op: &str, what: &str, values: &[i32], min: i32) -> Result<()> {
    if let Some(v) = values.iter().find(|&&v| v < min) {
        return Err(Error::InvalidArgument(format!(
            "{op}: {what} must be at least {min}, got {v} in {values:?}"
        )));
    }
    Ok(())
}

/// `out`, MLX's lazy convolution of `input` by `weight`, unless it or either operand is
/// empty (then never run: MLX's CPU convolutions hand such shapes to BLAS with a leading
/// dimension of 0, which the reference BLAS rejects by exiting the process).
///
/// MLX's convolution kernels divide by the number of input channels and hand zero sizes
/// to BLAS, which kills the process (SIGFPE, or the reference BLAS exiting). With an
/// empty input or weight every output element is a sum over nothing (or there is no
/// element at all), so the result is zeros of MLX's output shape; a kernel with a
/// spatial size of 0 has no meaning and is an error.
fn zero_size_conv(op: &str, input: &Array, weight: &Array, out: Array) -> Result<Array> {
    if input.size() != 0 && weight.size() != 0 && out.size() != 0 {
        return Ok(out);
    }
    let w = weight.shape();
    if w.len() > 2 && w[1..w.len() - 1].contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "{op}: the kernel has a spatial size of 0 (weight shape {w:?})"
        )));
    }
    crate::ops::zeros(out.shape(), out.dtype())
}

impl<const N: usize> ConvOptions<N> {
    fn check(&self, op: &str) -> Result<()> {
        check_at_least(op, "stride", &self.stride, 1)?;
        check_at_least(op, "dilation", &self.dilation, 1)?;
        check_at_least(op, "groups", &[self.groups], 1)
    }
}

impl<const N: usize> ConvTransposeOptions<N> {
    fn check(&self, op: &str) -> Result<()> {
        check_at_least(op, "stride", &self.stride, 1)?;
        check_at_least(op, "dilation", &self.dilation, 1)?;
        check_at_least(op, "groups", &[self.groups], 1)
    }
}

impl ConvGeneralOptions<'_> {
    fn check(&self) -> Result<()> {
        let op = "conv_general";
        check_at_least(op, "stride", self.stride, 1)?;
        check_at_least(op, "kernel dilation", self.kernel_dilation, 1)?;
        check_at_least(op, "input dilation", self.input_dilation, 1)?;
        check_at_least(op, "groups", &[self.groups], 1)
    }
}

/// Stride, padding, dilation and groups of an `N`-dimensional convolution.
///
/// ```
/// use mlx_rs::ops::ConvOptions;
/// let opts = ConvOptions { stride: [2, 2], padding: [1, 1], ..Default::default() };
/// assert_eq!(opts.dilation, [1, 1]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvOptions<const N: usize> {
    /// Step of the kernel along each spatial axis (default 1).
    pub stride: [i32; N],
    /// Zeros added on both sides of each spatial axis (default 0).
    pub padding: [i32; N],
    /// Spacing between kernel elements along each spatial axis (default 1).
    pub dilation: [i32; N],
    /// Number of channel groups (default 1).
    pub groups: i32,
}

impl<const N: usize> Default for ConvOptions<N> {
    fn default() -> Self {
        ConvOptions {
            stride: [1; N],
            padding: [0; N],
            dilation: [1; N],
            groups: 1,
        }
    }
}

/// Stride, padding, dilation, output padding and groups of an `N`-dimensional transposed
/// convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTransposeOptions<const N: usize> {
    /// Stride along each spatial axis (default 1).
    pub stride: [i32; N],
    /// Padding along each spatial axis (default 0).
    pub padding: [i32; N],
    /// Kernel dilation along each spatial axis (default 1).
    pub dilation: [i32; N],
    /// Extra size added to one side of each spatial axis of the output (default 0).
    pub output_padding: [i32; N],
    /// Number of channel groups (default 1).
    pub groups: i32,
}

impl<const N: usize> Default for ConvTransposeOptions<N> {
    fn default() -> Self {
        ConvTransposeOptions {
            stride: [1; N],
            padding: [0; N],
            dilation: [1; N],
            output_padding: [0; N],
            groups: 1,
        }
    }
}

/// The knobs of [`conv_general`]. Empty slices take MLX's defaults (stride 1, padding 0,
/// dilation 1); a single value applies to every spatial axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeneralOptions<'a> {
    /// Stride per spatial axis.
    pub stride: &'a [i32],
    /// Padding before each spatial axis.
    pub padding_lo: &'a [i32],
    /// Padding after each spatial axis.
    pub padding_hi: &'a [i32],
    /// Kernel dilation per spatial axis.
    pub kernel_dilation: &'a [i32],
    /// Input dilation per spatial axis.
    pub input_dilation: &'a [i32],
    /// Number of channel groups (default 1).
    pub groups: i32,
    /// Flip the kernel (convolution proper rather than cross-correlation).
    pub flip: bool,
}

impl Default for ConvGeneralOptions<'_> {
    fn default() -> Self {
        ConvGeneralOptions {
            stride: &[],
            padding_lo: &[],
            padding_hi: &[],
            kernel_dilation: &[],
            input_dilation: &[],
            groups: 1,
            flip: false,
        }
    }
}

/// 1-D convolution of `input` (`N, L, C_in`) with `weight` (`C_out, K, C_in / groups`).
#[track_caller]
pub fn conv1d(input: &Array, weight: &Array, opts: ConvOptions<1>) -> Result<Array> {
    opts.check("conv1d")?;
    let o = opts;
    let out = stream_op(|res, s| unsafe {
        sys::mlx_conv1d(
            res,
            input.as_raw(),
            weight.as_raw(),
            o.stride[0],
            o.padding[0],
            o.dilation[0],
            o.groups,
            s,
        )
    })?;
    zero_size_conv("conv1d", input, weight, out)
}

/// 2-D convolution of `input` (`N, H, W, C_in`) with `weight` (`C_out, KH, KW, C_in / groups`).
#[track_caller]
pub fn conv2d(input: &Array, weight: &Array, opts: ConvOptions<2>) -> Result<Array> {
    opts.check("conv2d")?;
    let o = opts;
    let out = stream_op(|res, s| unsafe {
        sys::mlx_conv2d(
            res,
            input.as_raw(),
            weight.as_raw(),
            o.stride[0],
            o.stride[1],
            o.padding[0],
            o.padding[1],
            o.dilation[0],
            o.dilation[1],
            o.groups,
            s,
        )
    })?;
    zero_size_conv("conv2d", input, weight, out)
}

/// 3-D convolution of `input` (`N, D, H, W, C_in`) with `weight`
/// (`C_out, KD, KH, KW, C_in / groups`).
#[track_caller]
pub fn conv3d(input: &Array, weight: &Array, opts: ConvOptions<3>) -> Result<Array> {
    opts.check("conv3d")?;
    let o = opts;
    let out = stream_op(|res, s| unsafe {
        sys::mlx_conv3d(
            res,
            input.as_raw(),
            weight.as_raw(),
            o.stride[0],
            o.stride[1],
            o.stride[2],
            o.padding[0],
            o.padding[1],
            o.padding[2],
            o.dilation[0],
            o.dilation[1],
            o.dilation[2],
            o.groups,
            s,
        )
    })?;
    zero_size_conv("conv3d", input, weight, out)
}

/// Convolution over any number of spatial axes, with asymmetric padding and input
/// dilation.
#[track_caller]
pub fn conv_general(input: &Array, weight: &Array, opts: ConvGeneralOptions<'_>) -> Result<Array> {
    opts.check()?;
    let o = opts;
    let out = stream_op(|res, s| unsafe {
        sys::mlx_conv_general(
            res,
            input.as_raw(),
            weight.as_raw(),
            o.stride.as_ptr(),
            o.stride.len(),
            o.padding_lo.as_ptr(),
            o.padding_lo.len(),
            o.padding_hi.as_ptr(),
            o.padding_hi.len(),
            o.kernel_dilation.as_ptr(),
            o.kernel_dilation.len(),
            o.input_dilation.as_ptr(),
            o.input_dilation.len(),
            o.groups,
            o.flip,
            s,
        )
    })?;
    zero_size_conv("conv_general", input, weight, out)
}

/// 1-D transposed convolution of `input` (`N, L, C_in`) with `weight` (`C_out, K, C_in / groups`).
#[track_caller]
pub fn conv_transpose1d(
    input: &Array,
    weight: &Array,
    opts: ConvTransposeOptions<1>,
) -> Result<Array> {
    opts.check("conv_transpose1d")?;
    let o = opts;
    let out = stream_op(|res, s| unsafe {
        sys::mlx_conv_transpose1d(
            res,
            input.as_raw(),
            weight.as_raw(),
            o.stride[0],
            o.padding[0],
            o.dilation[0],
            o.output_padding[0],
            o.groups,
            s,
        )
    })?;
    zero_size_conv("conv_transpose1d", input, weight, out)
}

/// 2-D transposed convolution of `input` (`N, H, W, C_in`) with `weight`
/// (`C_out, KH, KW, C_in / groups`).
#[track_caller]
pub fn conv_transpose2d(
    input: &Array,
    weight: &Array,
    opts: ConvTransposeOptions<2>,
) -> Result<Array> {
    opts.check("conv_transpose2d")?;
    let o = opts;
    let out = stream_op(|res, s| unsafe {
        sys::mlx_conv_transpose2d(
            res,
            input.as_raw(),
            weight.as_raw(),
            o.stride[0],
            o.stride[1],
            o.padding[0],
            o.padding[1],
            o.dilation[0],
            o.dilation[1],
            o.output_padding[0],
            o.output_padding[1],
            o.groups,
            s,
        )
    })?;
    zero_size_conv("conv_transpose2d", input, weight, out)
}

/// 3-D transposed convolution of `input` (`N, D, H, W, C_in`) with `weight`
/// (`C_out, KD, KH, KW, C_in / groups`).
#[track_caller]
pub fn conv_transpose3d(
    input: &Array,
    weight: &Array,
    opts: ConvTransposeOptions<3>,
) -> Result<Array> {
    opts.check("conv_transpose3d")?;
    let o = opts;
    let out = stream_op(|res, s| unsafe {
        sys::mlx_conv_transpose3d(
            res,
            input.as_raw(),
            weight.as_raw(),
            o.stride[0],
            o.stride[1],
            o.stride[2],
            o.padding[0],
            o.padding[1],
            o.padding[2],
            o.dilation[0],
            o.dilation[1],
            o.dilation[2],
            o.output_padding[0],
            o.output_padding[1],
            o.output_padding[2],
            o.groups,
            s,
        )
    })?;
    zero_size_conv("conv_transpose3d", input, weight, out)
}

/// The Walsh–Hadamard transform along the last axis, times `scale` (default
/// `1 / sqrt(n)`, which makes it orthonormal). The last axis must be `m * 2^k` with `m`
/// in 1, 12, 20, 28.
#[track_caller]
pub fn hadamard_transform(a: &Array, scale: Option<f32>) -> Result<Array> {
    let scale = sys::mlx_optional_float {
        value: scale.unwrap_or(0.0),
        has_value: scale.is_some(),
    };
    stream_op(|res, s| unsafe { sys::mlx_hadamard_transform(res, a.as_raw(), scale, s) })
}
