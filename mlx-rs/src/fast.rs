//! Fused kernels: [`rms_norm`], [`layer_norm`], [`rope`], [`scaled_dot_product_attention`],
//! [`cross_entropy`], and custom GPU kernels written in CUDA or Metal
//! ([`KernelBuilder`]).
//!
//! Each op computes what the composition of the basic ops would, in one kernel where the
//! backend has one (and falls back to the composition where it has not).

mod kernel;

pub use kernel::{CudaKernel, KernelBuilder, KernelConfig, MetalKernel, TemplateArg};

use crate::raw::stream_op;
use crate::{Array, Error, Result};
use mlx_sys as sys;

/// The handle of an optional array argument (a null handle means "absent" to mlx-c).
fn opt(a: Option<&Array>) -> sys::mlx_array {
    a.map_or(
        sys::mlx_array_ {
            ctx: std::ptr::null_mut(),
        },
        Array::as_raw,
    )
}

fn opt_float(v: Option<f32>) -> sys::mlx_optional_float {
    sys::mlx_optional_float {
        value: v.unwrap_or(0.0),
        has_value: v.is_some(),
    }
}

/// Root-mean-square normalization over the last axis:
/// `x / sqrt(mean(x², -1) + eps) * weight`.
///
/// `weight` (shape `[last dim]`) is optional.
#[track_caller]
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_fast_rms_norm(res, x.as_raw(), opt(weight), eps, s) })
}

/// Layer normalization over the last axis:
/// `(x - mean) / sqrt(var + eps) * weight + bias`.
///
/// `weight` and `bias` (shape `[last dim]`) are optional.
#[track_caller]
pub fn layer_norm(
    x: &Array,
    weight: Option<&Array>,
    bias: Option<&Array>,
    eps: f32,
) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_fast_layer_norm(res, x.as_raw(), opt(weight), opt(bias), eps, s)
    })
}

/// Options of [`rope`] and [`rope_dynamic`]. The default is Python's: the two halves
/// rotated (not traditional), base `10000`, scale `1`, no explicit frequencies.
///
/// ```
/// use mlx_rs::fast::RopeOptions;
/// // Qwen-style: a larger base, the rest default
/// let o = RopeOptions { base: Some(1e7), ..Default::default() };
/// assert_eq!((o.base, o.scale, o.traditional), (Some(1e7), 1.0, false));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RopeOptions<'a> {
    /// Rotate consecutive pairs of features (`true`) instead of the two halves (`false`,
    /// the usual choice).
    pub traditional: bool,
    /// The base of the frequencies `base^(−2i/dims)`; `None` means `10000` unless
    /// [`freqs`](Self::freqs) is given. Giving both is an error.
    pub base: Option<f32>,
    /// Multiplies the positions (default `1`).
    pub scale: f32,
    /// Explicit frequencies (shape `[dims / 2]`) instead of a base.
    pub freqs: Option<&'a Array>,
}

impl RopeOptions<'_> {
    /// The base used when neither `base` nor `freqs` is given (Python's default).
    pub const DEFAULT_BASE: f32 = 10000.0;

    /// The base and frequencies mlx-c takes: exactly one of them.
    fn base_or_freqs(&self) -> Result<(sys::mlx_optional_float, sys::mlx_array)> {
        match (self.base, self.freqs) {
            (Some(_), Some(_)) => Err(Error::InvalidArgument(
                "rope: give either a base or explicit frequencies, not both".into(),
            )),
            (base, None) => Ok((
                opt_float(Some(base.unwrap_or(Self::DEFAULT_BASE))),
                opt(None),
            )),
            (None, freqs) => Ok((opt_float(None), opt(freqs))),
        }
    }
}

impl Default for RopeOptions<'_> {
    fn default() -> Self {
        RopeOptions {
            traditional: false,
            base: None,
            scale: 1.0,
            freqs: None,
        }
    }
}

/// Rotary positional encoding of `x` (shape `[B, *, T, D]`), positions along `T`
/// starting at `offset`.
///
/// `dims` leading features of `D` are rotated (the rest pass through); `options` sets
/// the layout, base (or explicit frequencies) and position scale: see [`RopeOptions`].
/// Fails if both a base and frequencies are given.
///
/// ```
/// use mlx_rs::{fast::{self, RopeOptions}, ops, Dtype};
/// let x = ops::ones(&[1, 2, 3, 8], Dtype::Float32)?; // [batch, heads, positions, features]
/// let y = fast::rope(&x, 8, 5, RopeOptions { base: Some(1e7), ..Default::default() })?;
/// assert_eq!(y.shape(), x.shape());
/// let plain = fast::rope(&x, 8, 0, RopeOptions::default())?; // base 10000, from 0
/// assert_eq!(&plain.to_vec::<f32>()?[..8], &[1.0; 8]); // position 0 is not rotated
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn rope(x: &Array, dims: i32, offset: i32, options: RopeOptions<'_>) -> Result<Array> {
    let (base, freqs) = options.base_or_freqs()?;
    stream_op(|res, s| unsafe {
        sys::mlx_fast_rope(
            res,
            x.as_raw(),
            dims,
            options.traditional,
            base,
            options.scale,
            offset,
            freqs,
            s,
        )
    })
}

/// [`rope`] with the position offset given as an array: a scalar, or one offset per
/// batch element (shape `[B]`). Useful when the offset is itself computed (and in
/// compiled functions, where an `i32` would be baked in).
#[track_caller]
pub fn rope_dynamic(
    x: &Array,
    dims: i32,
    offset: &Array,
    options: RopeOptions<'_>,
) -> Result<Array> {
    let (base, freqs) = options.base_or_freqs()?;
    stream_op(|res, s| unsafe {
        sys::mlx_fast_rope_dynamic(
            res,
            x.as_raw(),
            dims,
            options.traditional,
            base,
            options.scale,
            offset.as_raw(),
            freqs,
            s,
        )
    })
}

/// The mask of [`scaled_dot_product_attention`].
#[derive(Debug, Clone, Copy, Default)]
pub enum AttentionMask<'a> {
    /// No mask.
    #[default]
    None,
    /// Causal: query `i` attends to keys up to its position, aligned so that the last
    /// query sees the last key.
    Causal,
    /// A boolean mask (`true` = attend) or an additive mask, broadcastable to
    /// `[B, N_q, T_q, T_kv]`.
    Array(&'a Array),
}

/// Options of [`scaled_dot_product_attention`]; an [`AttentionMask`] converts into them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionOptions<'a> {
    /// The mask.
    pub mask: AttentionMask<'a>,
    /// Attention sinks: one learned logit per query head (shape `[N_q]`), which takes part
    /// in the softmax but contributes no value.
    pub sinks: Option<&'a Array>,
    /// Use a fused kernel even where the heuristics would not, and fail where there is
    /// none.
    pub force_fused: bool,
}

impl<'a> From<AttentionMask<'a>> for AttentionOptions<'a> {
    fn from(mask: AttentionMask<'a>) -> Self {
        AttentionOptions {
            mask,
            ..Default::default()
        }
    }
}

/// Multi-head attention, `softmax(scale · Q Kᵀ + mask) V`, fused.
///
/// Shapes: `q` is `[B, N_q, T_q, D]`, `k` and `v` are `[B, N_kv, T_kv, D]` with `N_q` a
/// multiple of `N_kv` (grouped-query attention: do not repeat `k` and `v` yourself), and
/// `N_kv` at least 1. The softmax runs in float32 whatever the input precision.
///
/// ```
/// use mlx_rs::{fast::{scaled_dot_product_attention, AttentionMask}, Array};
/// let q = Array::from_slice(&[1.0f32, 0.0, 0.0, 1.0], &[1, 1, 2, 2])?;
/// let v = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2])?;
/// // causal: the first query sees only the first key
/// let out = scaled_dot_product_attention(&q, &q, &v, 1.0, AttentionMask::Causal)?;
/// assert_eq!(&out.to_vec::<f32>()?[..2], &[1.0, 2.0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn scaled_dot_product_attention<'a>(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    options: impl Into<AttentionOptions<'a>>,
) -> Result<Array> {
    let o = options.into();
    // MLX divides the query heads by the key heads before it checks them (SIGFPE at 0).
    if k.ndim() >= 3 && k.shape()[k.ndim() - 3] == 0 {
        return Err(crate::Error::InvalidArgument(format!(
            "scaled_dot_product_attention: the keys {:?} have 0 heads (axis -3); at least one \
             key/value head is needed",
            k.shape()
        )));
    }
    let (mode, mask): (&std::ffi::CStr, Option<&Array>) = match o.mask {
        AttentionMask::None => (c"", None),
        AttentionMask::Causal => (c"causal", None),
        AttentionMask::Array(m) => (c"array", Some(m)),
    };
    stream_op(|res, s| unsafe {
        sys::mlx_fast_scaled_dot_product_attention(
            res,
            q.as_raw(),
            k.as_raw(),
            v.as_raw(),
            scale,
            mode.as_ptr(),
            opt(mask),
            opt(o.sinks),
            o.force_fused,
            s,
        )
    })
}

/// Cross-entropy with class indices as targets: `logsumexp(logits, -1) -
/// logits[..., target]`, accumulated in float32.
///
/// `targets` has the shape of `logits` without the last axis, with values in
/// `[0, logits.shape[-1])`. The result is float32 with the shape of `targets`.
#[track_caller]
pub fn cross_entropy(logits: &Array, targets: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_fast_cross_entropy(res, logits.as_raw(), targets.as_raw(), s)
    })
}
