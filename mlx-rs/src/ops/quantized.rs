//! Quantization and quantized / gathered / masked / segmented matrix products.

use super::bounds;
use super::empty::or_empty;
use crate::error::Error;
use crate::raw::{stream_op, stream_vector_op};
use crate::{Array, Dtype, Result};
use mlx_sys as sys;
use std::ffi::CStr;

/// How [`quantize`] packs values (MLX's quantization modes).
///
/// | mode | group sizes | bits | scales | biases |
/// | --- | --- | --- | --- | --- |
/// | `Affine` | 32, **64**, 128 | 2, 3, **4**, 5, 6, 8 | input dtype | yes |
/// | `Mxfp4` | **32** | **4** | e8m0 | no |
/// | `Mxfp8` | **32** | **8** | e8m0 | no |
/// | `Nvfp4` | **16** | **4** | e4m3 | no |
///
/// (Bold: the default when `group_size` / `bits` are `None`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QuantizationMode {
    /// Integers with a scale and a bias per group.
    #[default]
    Affine,
    /// OCP microscaling FP4 (E2M1 values, E8M0 scales).
    Mxfp4,
    /// OCP microscaling FP8 (E4M3 values, E8M0 scales).
    Mxfp8,
    /// NVIDIA FP4 (E2M1 values, E4M3 scales, optional global scale).
    Nvfp4,
}

impl QuantizationMode {
    /// MLX's name for the mode (`"affine"`, `"mxfp4"`, `"mxfp8"`, `"nvfp4"`).
    pub fn name(self) -> &'static str {
        self.c_name().to_str().expect("ASCII")
    }

    fn c_name(self) -> &'static CStr {
        match self {
            QuantizationMode::Affine => c"affine",
            QuantizationMode::Mxfp4 => c"mxfp4",
            QuantizationMode::Mxfp8 => c"mxfp8",
            QuantizationMode::Nvfp4 => c"nvfp4",
        }
    }
}

/// Group size, bits and mode of a quantization; `None` takes the mode's default.
///
/// ```
/// use mlx_rs::ops::{QuantizeOptions, QuantizationMode};
/// let q4 = QuantizeOptions { group_size: Some(32), bits: Some(4), ..Default::default() };
/// assert_eq!(q4.mode, QuantizationMode::Affine);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QuantizeOptions {
    /// Number of consecutive elements along the last axis that share a scale.
    pub group_size: Option<i32>,
    /// Bits per quantized element.
    pub bits: Option<i32>,
    /// The quantization mode (default [`QuantizationMode::Affine`]).
    pub mode: QuantizationMode,
}

impl QuantizeOptions {
    /// The options of `mode` with its default group size and bits.
    pub fn mode(mode: QuantizationMode) -> Self {
        QuantizeOptions {
            mode,
            ..Default::default()
        }
    }

    /// Fails unless the group size and bits, where given, are positive: MLX divides by
    /// both before it checks them (a group size of 0 killed the process with SIGFPE).
    fn check(&self, op: &str) -> Result<()> {
        for (what, v) in [("group_size", self.group_size), ("bits", self.bits)] {
            if let Some(v) = v.filter(|&v| v <= 0) {
                return Err(Error::InvalidArgument(format!(
                    "{op}: {what} must be positive, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// The group size and bits these options mean: the given ones, else the mode's
    /// defaults (affine 64/4, mxfp4 32/4, mxfp8 32/8, nvfp4 16/4).
    pub fn resolved(&self) -> (i32, i32) {
        let (g, b) = match self.mode {
            QuantizationMode::Affine => (64, 4),
            QuantizationMode::Mxfp4 => (32, 4),
            QuantizationMode::Mxfp8 => (32, 8),
            QuantizationMode::Nvfp4 => (16, 4),
        };
        (self.group_size.unwrap_or(g), self.bits.unwrap_or(b))
    }

    fn raw_group_size(&self) -> sys::mlx_optional_int {
        optional_int(self.group_size)
    }

    fn raw_bits(&self) -> sys::mlx_optional_int {
        optional_int(self.bits)
    }
}

/// The parts of a quantized matrix, as [`quantize`] returns them.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The packed values (`uint32`).
    pub w: Array,
    /// One scale per group: the input dtype (affine), or `uint8` holding e8m0 / e4m3
    /// bits (the floating-point modes).
    pub scales: Array,
    /// One bias per group (affine mode only).
    pub biases: Option<Array>,
}

/// The two optional index arrays of the gathered matrix products ([`gather_mm`],
/// [`gather_qmm`], [`gather_qqmm`]): flat indices into the batch axes of the left and
/// right operands.
///
/// MLX does not check index values (an index past the batch reads outside the array).
/// They are bounded lazily, as for every index array (see `docs/bad-input.md`): negative
/// values count from the end of the batch, values past either end are clamped to it, and
/// an empty batch with a non-empty index array is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatherIndices<'a> {
    /// Indices into the batch of the left operand (`None`: all, in order).
    pub lhs: Option<&'a Array>,
    /// Indices into the batch of the right operand (`None`: all, in order).
    pub rhs: Option<&'a Array>,
    /// Whether the indices are sorted (allows a faster kernel).
    pub sorted: bool,
}

/// The number of matrices in the batch of `x` (the product of all but its last two axes;
/// 1 for a matrix or vector).
fn batch_size(x: &Array) -> i64 {
    let n = x.ndim();
    x.shape()[..n.saturating_sub(2)]
        .iter()
        .map(|&d| d as i64)
        .product()
}

impl GatherIndices<'_> {
    /// The index arrays bounded to the batches of `lhs` and `rhs` as reads (see
    /// `ops::bounds`): negative values count from the end, values past either end are
    /// clamped to it, so that MLX never reads a matrix outside the batch.
    fn bounded(&self, op: &str, lhs: &Array, rhs: &Array) -> Result<[Option<Array>; 2]> {
        let one = |idx: Option<&Array>, x: &Array| {
            idx.map(|i| bounds::read_index(i, batch_size(x), 1, op))
                .transpose()
        };
        Ok([one(self.lhs, lhs)?, one(self.rhs, rhs)?])
    }
}

/// `segments` of [`segmented_mm`] clamped to `[0, K]` for `a` of shape `[M, K]`, so that
/// no segment reaches past the inner axis; unchanged where MLX will reject the arguments.
fn bound_segments(a: &Array, segments: &Array) -> Result<Array> {
    if a.ndim() != 2 || !segments.dtype().is_integer() {
        return Ok(segments.clone());
    }
    let k = a.shape()[1] as i64;
    let unsigned = matches!(
        segments.dtype(),
        Dtype::Uint8 | Dtype::Uint16 | Dtype::Uint32 | Dtype::Uint64
    );
    if unsigned {
        let seg = segments.astype(Dtype::Uint64)?;
        return seg.minimum(&Array::scalar(k as u64));
    }
    let seg = segments.astype(Dtype::Int64)?;
    crate::ops::clip(&seg, Some(&Array::scalar(0i64)), Some(&Array::scalar(k)))
}

fn optional_int(v: Option<i32>) -> sys::mlx_optional_int {
    sys::mlx_optional_int {
        value: v.unwrap_or(0),
        has_value: v.is_some(),
    }
}

fn optional_dtype(v: Option<Dtype>) -> sys::mlx_optional_dtype {
    sys::mlx_optional_dtype {
        value: v.unwrap_or(Dtype::Float32).to_raw(),
        has_value: v.is_some(),
    }
}

/// The raw handle of an optional array: a null handle (which mlx-c reads as "absent")
/// for `None`.
fn raw_or_null(a: Option<&Array>) -> sys::mlx_array {
    a.map_or(
        sys::mlx_array {
            ctx: std::ptr::null_mut(),
        },
        Array::as_raw,
    )
}

/// Quantizes `w` (at least 2-D, last axis divisible by the group size) along its last
/// axis.
///
/// `global_scale` is an optional `float32` scale for the `Nvfp4` mode.
///
/// ```
/// use mlx_rs::{ops, Array};
/// let w = ops::linspace(-1.0, 1.0, 128, mlx_rs::Dtype::Float32)?.reshape(&[2, 64])?;
/// let q = ops::quantize(&w, None, ops::QuantizeOptions::default())?;
/// assert_eq!(q.scales.shape(), &[2, 1]);
/// let back = ops::dequantize(&q.w, &q.scales, q.biases.as_ref(), None, None, Default::default())?;
/// assert_eq!(back.shape(), &[2, 64]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn quantize(
    w: &Array,
    global_scale: Option<&Array>,
    opts: QuantizeOptions,
) -> Result<Quantized> {
    opts.check("quantize")?;
    let mut parts = stream_vector_op(|res, s| unsafe {
        sys::mlx_quantize(
            res,
            w.as_raw(),
            opts.raw_group_size(),
            opts.raw_bits(),
            opts.mode.c_name().as_ptr(),
            raw_or_null(global_scale),
            s,
        )
    })?
    .into_iter();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(w), Some(scales), biases) => Ok(Quantized { w, scales, biases }),
        _ => Err(Error::InvalidArgument(
            "quantize: MLX returned fewer than two arrays".into(),
        )),
    }
}

/// The floating-point matrix that [`quantize`] packed, as `dtype` (default: the scales'
/// dtype). The options must be those used to quantize.
#[track_caller]
pub fn dequantize(
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    global_scale: Option<&Array>,
    dtype: Option<Dtype>,
    opts: QuantizeOptions,
) -> Result<Array> {
    opts.check("dequantize")?;
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_dequantize(
            res,
            w.as_raw(),
            scales.as_raw(),
            raw_or_null(biases),
            opts.raw_group_size(),
            opts.raw_bits(),
            opts.mode.c_name().as_ptr(),
            raw_or_null(global_scale),
            optional_dtype(dtype),
            s,
        )
    })?)
}

/// `x @ dequantize(w).T` (with `transpose`, the usual layout of linear layers) or
/// `x @ dequantize(w)`, without materialising the dequantized matrix.
#[track_caller]
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    transpose: bool,
    opts: QuantizeOptions,
) -> Result<Array> {
    opts.check("quantized_matmul")?;
    if cuda_single_group_qmm(x, w, transpose, &opts)? {
        let dense = dequantize(w, scales, biases, None, Some(x.dtype()), opts)?;
        return x.matmul(&dense.transpose()?);
    }
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_quantized_matmul(
            res,
            x.as_raw(),
            w.as_raw(),
            scales.as_raw(),
            raw_or_null(biases),
            transpose,
            opts.raw_group_size(),
            opts.raw_bits(),
            opts.mode.c_name().as_ptr(),
            s,
        )
    })?)
}

/// Whether `quantized_matmul` would hit MLX 0.32.2's CUDA matrix-matrix kernel with the
/// whole reduction axis in one group (`K == group_size`) and more than one row of `x`:
/// that kernel returns garbage there (measured on an H200 with Python MLX too: K = 128,
/// group 128, 4 and 8 bits, 2 and 8 rows; one row, or K = 256, is right). Such products
/// go through `dequantize` and a dense matmul instead (they are small: one group).
fn cuda_single_group_qmm(
    x: &Array,
    w: &Array,
    transpose: bool,
    opts: &QuantizeOptions,
) -> Result<bool> {
    static CUDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !transpose || cfg!(target_os = "macos") {
        return Ok(false);
    }
    let (group, bits) = opts.resolved();
    let k = w
        .shape()
        .last()
        .map_or(0, |&packed| packed as i64 * 32 / bits as i64);
    if k != group as i64 || x.shape().last() != Some(&group) || x.size() as i64 <= k {
        return Ok(false);
    }
    if !*CUDA.get_or_init(|| crate::Device::gpu().is_available()) {
        return Ok(false);
    }
    Ok(crate::current_stream()?.device()?.kind()? == crate::DeviceType::Gpu)
}

/// [`quantized_matmul`] with the batch of `x` and of the quantized `w` first gathered by
/// `indices` (used by mixture-of-experts layers).
#[track_caller]
pub fn gather_qmm(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    indices: GatherIndices<'_>,
    transpose: bool,
    opts: QuantizeOptions,
) -> Result<Array> {
    opts.check("gather_qmm")?;
    let [lhs, rhs] = indices.bounded("gather_qmm", x, w)?;
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_gather_qmm(
            res,
            x.as_raw(),
            w.as_raw(),
            scales.as_raw(),
            raw_or_null(biases),
            raw_or_null(lhs.as_ref()),
            raw_or_null(rhs.as_ref()),
            transpose,
            opts.raw_group_size(),
            opts.raw_bits(),
            opts.mode.c_name().as_ptr(),
            indices.sorted,
            s,
        )
    })?)
}

/// A matrix product with both operands quantized: `x` on the fly, `w` on the fly or
/// already (then `w_scales` are its scales). Modes `Nvfp4` and `Mxfp8` only; the
/// global scales apply to `Nvfp4`.
#[track_caller]
pub fn qqmm(
    x: &Array,
    w: &Array,
    w_scales: Option<&Array>,
    global_scale_x: Option<&Array>,
    global_scale_w: Option<&Array>,
    opts: QuantizeOptions,
) -> Result<Array> {
    opts.check("qqmm")?;
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_qqmm(
            res,
            x.as_raw(),
            w.as_raw(),
            raw_or_null(w_scales),
            opts.raw_group_size(),
            opts.raw_bits(),
            opts.mode.c_name().as_ptr(),
            raw_or_null(global_scale_x),
            raw_or_null(global_scale_w),
            s,
        )
    })?)
}

/// [`qqmm`] with the batches of `x` and `w` first gathered by `indices`.
#[track_caller]
pub fn gather_qqmm(
    x: &Array,
    w: &Array,
    scales_w: Option<&Array>,
    indices: GatherIndices<'_>,
    global_scale_x: Option<&Array>,
    global_scale_w: Option<&Array>,
    opts: QuantizeOptions,
) -> Result<Array> {
    opts.check("gather_qqmm")?;
    let [lhs, rhs] = indices.bounded("gather_qqmm", x, w)?;
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_gather_qqmm(
            res,
            x.as_raw(),
            w.as_raw(),
            raw_or_null(scales_w),
            raw_or_null(lhs.as_ref()),
            raw_or_null(rhs.as_ref()),
            opts.raw_group_size(),
            opts.raw_bits(),
            opts.mode.c_name().as_ptr(),
            raw_or_null(global_scale_x),
            raw_or_null(global_scale_w),
            indices.sorted,
            s,
        )
    })?)
}

/// `a @ b` where the batches (all but the last two axes) of `a` and `b` are first
/// gathered by `indices` (flat indices into the batch axes).
#[track_caller]
pub fn gather_mm(a: &Array, b: &Array, indices: GatherIndices<'_>) -> Result<Array> {
    let [lhs, rhs] = indices.bounded("gather_mm", a, b)?;
    // A matrix goes in as a batch of one, with the index MLX would give it (a scalar 0)
    // when it has none: the same result and shape. MLX 0.32's CUDA `gather_mm` walks the
    // batch axes of an operand that is not row-major with an unsigned `ndim - 3`, which
    // for a matrix runs past its shape ("SmallVector out of range"), e.g. for a weight
    // read through its transposed view. Without any index MLX multiplies plainly.
    let gathered = lhs.is_some() || rhs.is_some();
    let lift = |x: &Array, idx: Option<Array>| -> Result<(Array, Option<Array>)> {
        if !gathered || x.ndim() != 2 {
            return Ok((x.clone(), idx));
        }
        let idx = match idx {
            Some(i) => i,
            None => Array::from_slice(&[0u32], &[])?,
        };
        Ok((crate::ops::expand_dims(x, 0)?, Some(idx)))
    };
    let ((a, lhs), (b, rhs)) = (lift(a, lhs)?, lift(b, rhs)?);
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_gather_mm(
            res,
            a.as_raw(),
            b.as_raw(),
            raw_or_null(lhs.as_ref()),
            raw_or_null(rhs.as_ref()),
            indices.sorted,
            s,
        )
    })?)
}

/// `a @ b` with `block_size × block_size` blocks masked (`block_size` 32 or 64): the
/// masks have one entry per block of the output, of `a`, and of `b` respectively.
#[track_caller]
pub fn block_masked_mm(
    a: &Array,
    b: &Array,
    block_size: i32,
    mask_out: Option<&Array>,
    mask_lhs: Option<&Array>,
    mask_rhs: Option<&Array>,
) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_block_masked_mm(
            res,
            a.as_raw(),
            b.as_raw(),
            block_size,
            raw_or_null(mask_out),
            raw_or_null(mask_lhs),
            raw_or_null(mask_rhs),
            s,
        )
    })?)
}

/// For `a` (`M × K`) and `b` (`K × N`), one `M × N` product per segment of the inner
/// axis; `segments` holds `[start, end)` pairs (shape `..., 2`).
///
/// Segment bounds are clamped to `[0, K]` (lazily; MLX would read past the inner axis),
/// and a segment with `end <= start` gives a zero matrix.
#[track_caller]
pub fn segmented_mm(a: &Array, b: &Array, segments: &Array) -> Result<Array> {
    let segments = bound_segments(a, segments)?;
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_segmented_mm(res, a.as_raw(), b.as_raw(), segments.as_raw(), s)
    })?)
}
