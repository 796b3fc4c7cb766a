//! Random number generation with explicit or global keys.
//!
//! MLX uses counter-based random numbers (threefry): a *key* is a `uint32` array of shape
//! `[2]`, and a sampler given the same key, shape and dtype returns the same values on
//! every run, binding and device. Every sampler here takes `key: Option<&Array>`:
//!
//! - `Some(&k)`: use `k` (deterministic). Make keys with [`key`], derive fresh ones
//!   with [`split`] / [`split_num`].
//! - `None`: draw from MLX's global key, which [`seed`] resets and every such call
//!   advances (like NumPy's global generator).
//!
//! ```
//! use mlx_rs::{random, Dtype};
//! let k = random::key(42)?;
//! let a = random::uniform_range(0.0..1.0, &[3], Some(&k))?;
//! let b = random::uniform_range(0.0..1.0, &[3], Some(&k))?;
//! assert_eq!(a.to_vec::<f32>()?, b.to_vec::<f32>()?);
//! let (k1, _k2) = random::split(&k)?;
//! let n = random::normal(&[2, 2], Dtype::Float32, 0.0, 1.0, Some(&k1))?;
//! assert_eq!(n.shape(), &[2, 2]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use crate::ops::creation::{check_dims, check_size};
use crate::ops::empty::or_empty;
use crate::raw::{array_op, status, stream_op, stream_pair_op};
use crate::{Array, Dtype, Error, Result};
use mlx_sys as sys;
use std::ops::Range;

/// The raw handle for an optional key: a null handle asks MLX for its global key.
fn raw_opt(a: Option<&Array>) -> sys::mlx_array {
    match a {
        Some(a) => a.as_raw(),
        None => sys::mlx_array {
            ctx: std::ptr::null_mut(),
        },
    }
}

/// A PRNG key (a `uint32` array of shape `[2]`) made from `seed`.
#[track_caller]
pub fn key(seed: u64) -> Result<Array> {
    array_op(|res| unsafe { sys::mlx_random_key(res, seed) })
}

/// Resets MLX's global key from `seed` (used by samplers called with `key: None`).
#[track_caller]
pub fn seed(seed: u64) -> Result<()> {
    status(|| unsafe { sys::mlx_random_seed(seed) })
}

/// Splits `key` into two new, independent keys.
#[track_caller]
pub fn split(key: &Array) -> Result<(Array, Array)> {
    stream_pair_op(|r0, r1, s| unsafe { sys::mlx_random_split(r0, r1, key.as_raw(), s) })
}

/// Splits `key` into `num` new keys, stacked into a `[num, 2]` array.
#[track_caller]
pub fn split_num(key: &Array, num: i32) -> Result<Array> {
    check_size("split_num: num", num)?;
    stream_op(|res, s| unsafe { sys::mlx_random_split_num(res, key.as_raw(), num, s) })
}

/// Samples uniformly from `[low, high)` (broadcast to `shape`) as `dtype` (a real
/// floating-point type).
///
/// `low` and `high` are arrays so that bounds can vary per element; for scalar bounds
/// see [`uniform_range`].
#[track_caller]
pub fn uniform(
    low: &Array,
    high: &Array,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_uniform(
            res,
            low.as_raw(),
            high.as_raw(),
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_opt(key),
            s,
        )
    })
}

/// Samples `float32` values uniformly from `range` (`start` inclusive, `end` exclusive).
///
/// Fails with [`Error::InvalidArgument`] if the range is empty or not finite.
#[track_caller]
pub fn uniform_range(range: Range<f32>, shape: &[i32], key: Option<&Array>) -> Result<Array> {
    if !(range.start.is_finite() && range.end.is_finite() && range.start < range.end) {
        return Err(Error::InvalidArgument(format!(
            "uniform_range needs a finite, non-empty range, got {range:?}"
        )));
    }
    uniform(
        &Array::scalar(range.start),
        &Array::scalar(range.end),
        shape,
        Dtype::Float32,
        key,
    )
}

/// Samples from a normal distribution with mean `loc` and standard deviation `scale`,
/// as `dtype` (a floating-point or complex type).
#[track_caller]
pub fn normal(
    shape: &[i32],
    dtype: Dtype,
    loc: f32,
    scale: f32,
    key: Option<&Array>,
) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_normal(
            res,
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            loc,
            scale,
            raw_opt(key),
            s,
        )
    })
}

/// Samples `float32` values from the standard normal distribution (mean 0, std 1).
#[track_caller]
pub fn standard_normal(shape: &[i32], key: Option<&Array>) -> Result<Array> {
    normal(shape, Dtype::Float32, 0.0, 1.0, key)
}

/// Samples from a normal distribution whose mean `loc` and standard deviation `scale`
/// are arrays broadcast to `shape` (`None`: mean 0 / std 1).
#[track_caller]
pub fn normal_broadcast(
    shape: &[i32],
    dtype: Dtype,
    loc: Option<&Array>,
    scale: Option<&Array>,
    key: Option<&Array>,
) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_normal_broadcast(
            res,
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_opt(loc),
            raw_opt(scale),
            raw_opt(key),
            s,
        )
    })
}

/// Samples integers uniformly from `[low, high)` (arrays broadcast to `shape`) as
/// `dtype` (an integer type or bool).
///
/// Like MLX, bounds with `high <= low` are not rejected (every value is then `low`);
/// [`randint_range`] checks them.
#[track_caller]
pub fn randint(
    low: &Array,
    high: &Array,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_randint(
            res,
            low.as_raw(),
            high.as_raw(),
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_opt(key),
            s,
        )
    })
}

/// Samples `int32` values uniformly from `range` (`start` inclusive, `end` exclusive).
///
/// Fails with [`Error::InvalidArgument`] if the range is empty.
#[track_caller]
pub fn randint_range(range: Range<i32>, shape: &[i32], key: Option<&Array>) -> Result<Array> {
    if range.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "randint_range needs a non-empty range, got {range:?}"
        )));
    }
    randint(
        &Array::scalar(range.start),
        &Array::scalar(range.end),
        shape,
        Dtype::Int32,
        key,
    )
}

/// Samples booleans that are `true` with probability `p` (an array broadcast to `shape`).
#[track_caller]
pub fn bernoulli(p: &Array, shape: &[i32], key: Option<&Array>) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_bernoulli(
            res,
            p.as_raw(),
            shape.as_ptr(),
            shape.len(),
            raw_opt(key),
            s,
        )
    })
}

/// Samples from a normal distribution truncated to `[lower, upper]` (arrays broadcast
/// to `shape`) as `dtype`.
#[track_caller]
pub fn truncated_normal(
    lower: &Array,
    upper: &Array,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_truncated_normal(
            res,
            lower.as_raw(),
            upper.as_raw(),
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_opt(key),
            s,
        )
    })
}

/// Samples from the standard Gumbel distribution as `dtype` (a real floating-point type).
#[track_caller]
pub fn gumbel(shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_gumbel(
            res,
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_opt(key),
            s,
        )
    })
}

/// Samples one category index per distribution from unnormalised log-probabilities
/// `logits` along `axis` (the result drops that axis).
#[track_caller]
pub fn categorical(logits: &Array, axis: i32, key: Option<&Array>) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_random_categorical(res, logits.as_raw(), axis, raw_opt(key), s)
    })
}

/// Like [`categorical`], with the output shape given (it must broadcast with `logits`'
/// shape without `axis`).
#[track_caller]
pub fn categorical_shape(
    logits: &Array,
    axis: i32,
    shape: &[i32],
    key: Option<&Array>,
) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_categorical_shape(
            res,
            logits.as_raw(),
            axis,
            shape.as_ptr(),
            shape.len(),
            raw_opt(key),
            s,
        )
    })
}

/// Like [`categorical`], drawing `num_samples` samples per distribution (a new last axis).
#[track_caller]
pub fn categorical_num_samples(
    logits: &Array,
    axis: i32,
    num_samples: i32,
    key: Option<&Array>,
) -> Result<Array> {
    check_size("categorical_num_samples: num_samples", num_samples)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_categorical_num_samples(
            res,
            logits.as_raw(),
            axis,
            num_samples,
            raw_opt(key),
            s,
        )
    })
}

/// Samples from a Laplace distribution with location `loc` and scale `scale`, as
/// `dtype` (a real floating-point type).
#[track_caller]
pub fn laplace(
    shape: &[i32],
    dtype: Dtype,
    loc: f32,
    scale: f32,
    key: Option<&Array>,
) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_laplace(
            res,
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            loc,
            scale,
            raw_opt(key),
            s,
        )
    })
}

/// Samples from a multivariate normal distribution with mean `mean` (`[..., n]`) and
/// covariance `cov` (`[..., n, n]`); the result has shape `shape + [n]`.
///
/// MLX computes this with an SVD, which runs only on the CPU: call it inside
/// `with_stream(&Stream::cpu(), ..)` when the default device is a GPU.
#[track_caller]
pub fn multivariate_normal(
    mean: &Array,
    cov: &Array,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_random_multivariate_normal(
            res,
            mean.as_raw(),
            cov.as_raw(),
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_opt(key),
            s,
        )
    })
}

/// A random permutation of `x` along `axis`.
#[track_caller]
pub fn permutation(x: &Array, axis: i32, key: Option<&Array>) -> Result<Array> {
    let n = x.ndim() as i32;
    if axis < -n || axis >= n {
        // MLX indexes the shape without checking here; catch it before it does.
        return Err(Error::InvalidArgument(format!(
            "[permutation] axis {axis} is out of range for an array of {n} dimensions"
        )));
    }
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_random_permutation(res, x.as_raw(), axis, raw_opt(key), s)
    })?)
}

/// A random permutation of `0..n` (as `uint32`).
#[track_caller]
pub fn permutation_arange(n: i32, key: Option<&Array>) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_random_permutation_arange(res, n, raw_opt(key), s)
    })?)
}

/// Raw random bits: `width` bytes per element (1, 2 or 4 giving `uint8`, `uint16` or
/// `uint32`).
#[track_caller]
pub fn bits(shape: &[i32], width: i32, key: Option<&Array>) -> Result<Array> {
    check_dims(shape)?;
    if !matches!(width, 1 | 2 | 4) {
        return Err(Error::InvalidArgument(format!(
            "[bits] width must be 1, 2 or 4 bytes, got {width}"
        )));
    }
    stream_op(|res, s| unsafe {
        sys::mlx_random_bits(res, shape.as_ptr(), shape.len(), width, raw_opt(key), s)
    })
}
