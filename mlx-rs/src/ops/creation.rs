//! Arrays made from shapes, values and ranges: zeros, ones, full, eye, ranges, triangles,
//! grids, diagonals and signal windows.

use crate::error::Error;
use crate::raw::{stream_op, stream_vector_op, VectorArray};
use crate::{Array, Dtype, Result};
use mlx_sys as sys;

/// Fails with `Error::Shape` if any dimension of `shape` is negative.
pub(crate) fn check_dims(shape: &[i32]) -> Result<()> {
    match shape.iter().find(|&&d| d < 0) {
        Some(d) => Err(Error::Shape(format!(
            "negative dimension {d} in shape {shape:?}"
        ))),
        None => Ok(()),
    }
}

/// Fails with `Error::InvalidArgument` if the size argument `what` is negative.
pub(crate) fn check_size(what: &str, n: i32) -> Result<()> {
    if n < 0 {
        return Err(Error::InvalidArgument(format!(
            "{what} must be non-negative, got {n}"
        )));
    }
    Ok(())
}

/// An array of `shape` filled with zeros.
#[track_caller]
pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_zeros(res, shape.as_ptr(), shape.len(), dtype.to_raw(), s)
    })
}

/// An array of `shape` filled with ones.
#[track_caller]
pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_ones(res, shape.as_ptr(), shape.len(), dtype.to_raw(), s)
    })
}

/// Zeros with the shape and dtype of `a`.
#[track_caller]
pub fn zeros_like(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_zeros_like(res, a.as_raw(), s) })
}

/// Zeros with the shape of `a` and the given `dtype`.
#[track_caller]
pub fn zeros_like_dtype(a: &Array, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_zeros_like_dtype(res, a.as_raw(), dtype.to_raw(), s) })
}

/// Ones with the shape and dtype of `a`.
#[track_caller]
pub fn ones_like(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_ones_like(res, a.as_raw(), s) })
}

/// Ones with the shape of `a` and the given `dtype`.
#[track_caller]
pub fn ones_like_dtype(a: &Array, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_ones_like_dtype(res, a.as_raw(), dtype.to_raw(), s) })
}

/// An array of `shape` and `dtype` filled with `vals`, broadcast to `shape`.
///
/// ```
/// use mlx_rs::{ops, Array, Dtype};
/// let a = ops::full(&[2, 2], &Array::from(7i32), Dtype::Float32)?;
/// assert_eq!(a.to_vec::<f32>()?, vec![7.0; 4]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn full(shape: &[i32], vals: &Array, dtype: Dtype) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_full(
            res,
            shape.as_ptr(),
            shape.len(),
            vals.as_raw(),
            dtype.to_raw(),
            s,
        )
    })
}

/// An array with the shape of `a`, filled with `vals` (broadcast) as `dtype`.
#[track_caller]
pub fn full_like(a: &Array, vals: &Array, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_full_like(res, a.as_raw(), vals.as_raw(), dtype.to_raw(), s)
    })
}

/// Values from `start` (inclusive) to `stop` (exclusive) in steps of `step`.
///
/// ```
/// use mlx_rs::{ops, Dtype};
/// let a = ops::arange(0.0, 5.0, 2.0, Dtype::Int32)?;
/// assert_eq!(a.to_vec::<i32>()?, vec![0, 2, 4]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_arange(res, start, stop, step, dtype.to_raw(), s) })
}

/// The `n × m` matrix with ones on diagonal `k` (0 the main one, positive above it).
#[track_caller]
pub fn eye(n: i32, m: i32, k: i32, dtype: Dtype) -> Result<Array> {
    check_size("eye: n", n)?;
    check_size("eye: m", m)?;
    stream_op(|res, s| unsafe { sys::mlx_eye(res, n, m, k, dtype.to_raw(), s) })
}

/// The `n × n` identity matrix.
#[track_caller]
pub fn identity(n: i32, dtype: Dtype) -> Result<Array> {
    check_size("identity: n", n)?;
    stream_op(|res, s| unsafe { sys::mlx_identity(res, n, dtype.to_raw(), s) })
}

/// `num` evenly spaced values from `start` to `stop`, both included.
#[track_caller]
pub fn linspace(start: f64, stop: f64, num: i32, dtype: Dtype) -> Result<Array> {
    check_size("linspace: num", num)?;
    stream_op(|res, s| unsafe { sys::mlx_linspace(res, start, stop, num, dtype.to_raw(), s) })
}

/// `num` evenly spaced values from `start` to `stop`; `stop` is included only when
/// `endpoint` is true.
#[track_caller]
pub fn linspace_endpoint(
    start: f64,
    stop: f64,
    num: i32,
    endpoint: bool,
    dtype: Dtype,
) -> Result<Array> {
    check_size("linspace: num", num)?;
    stream_op(|res, s| unsafe {
        sys::mlx_linspace_endpoint(res, start, stop, num, endpoint, dtype.to_raw(), s)
    })
}

/// The `n × m` matrix with ones at and below diagonal `k`, zeros above.
#[track_caller]
pub fn tri(n: i32, m: i32, k: i32, dtype: Dtype) -> Result<Array> {
    check_size("tri: n", n)?;
    check_size("tri: m", m)?;
    stream_op(|res, s| unsafe { sys::mlx_tri(res, n, m, k, dtype.to_raw(), s) })
}

/// `x` with the elements above diagonal `k` of its last two axes set to zero.
#[track_caller]
pub fn tril(x: &Array, k: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_tril(res, x.as_raw(), k, s) })
}

/// `x` with the elements below diagonal `k` of its last two axes set to zero.
#[track_caller]
pub fn triu(x: &Array, k: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_triu(res, x.as_raw(), k, s) })
}

/// Coordinate grids from 1-D coordinate arrays.
///
/// `indexing` is `"xy"` (Cartesian, the first two outputs' axes swapped) or `"ij"`
/// (matrix); `sparse` returns broadcastable arrays instead of full grids.
#[track_caller]
pub fn meshgrid<A: AsRef<Array>>(arrays: &[A], sparse: bool, indexing: &str) -> Result<Vec<Array>> {
    let v = VectorArray::from_arrays(arrays);
    let indexing = c_string(indexing)?;
    stream_vector_op(|res, s| unsafe { sys::mlx_meshgrid(res, v.0, sparse, indexing.as_ptr(), s) })
}

/// The Bartlett (triangular) window of `m` points.
#[track_caller]
pub fn bartlett(m: i32) -> Result<Array> {
    check_size("window length", m)?;
    stream_op(|res, s| unsafe { sys::mlx_bartlett(res, m, s) })
}

/// The Blackman window of `m` points.
#[track_caller]
pub fn blackman(m: i32) -> Result<Array> {
    check_size("window length", m)?;
    stream_op(|res, s| unsafe { sys::mlx_blackman(res, m, s) })
}

/// The Hamming window of `m` points.
#[track_caller]
pub fn hamming(m: i32) -> Result<Array> {
    check_size("window length", m)?;
    stream_op(|res, s| unsafe { sys::mlx_hamming(res, m, s) })
}

/// The Hanning window of `m` points.
#[track_caller]
pub fn hanning(m: i32) -> Result<Array> {
    check_size("window length", m)?;
    stream_op(|res, s| unsafe { sys::mlx_hanning(res, m, s) })
}

/// For a 1-D `a`, the square matrix with `a` on diagonal `k`; for a 2-D `a`, its
/// diagonal `k` as a 1-D array.
#[track_caller]
pub fn diag(a: &Array, k: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_diag(res, a.as_raw(), k, s) })
}

/// The diagonal `offset` of the 2-D sub-arrays spanned by `axis1` and `axis2`; that
/// diagonal becomes the last axis of the result.
#[track_caller]
pub fn diagonal(a: &Array, offset: i32, axis1: i32, axis2: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_diagonal(res, a.as_raw(), offset, axis1, axis2, s) })
}

/// The sum of the main diagonal of a 2-D array.
#[track_caller]
pub fn trace(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_trace(res, a.as_raw(), s) })
}

/// Sums of diagonal `offset` of the sub-arrays spanned by `axis1` and `axis2`, as `dtype`.
#[track_caller]
pub fn trace_axes(a: &Array, offset: i32, axis1: i32, axis2: i32, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_trace_axes(res, a.as_raw(), offset, axis1, axis2, dtype.to_raw(), s)
    })
}

/// A C string for an mlx-c `const char*` argument; NUL bytes inside are an error.
pub(crate) fn c_string(s: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(s)
        .map_err(|_| Error::InvalidArgument(format!("string contains a NUL byte: {s:?}")))
}

impl Array {
    /// The diagonal `offset` over `axis1` and `axis2` (see [`ops::diagonal`](crate::ops::diagonal)).
    #[track_caller]
    pub fn diagonal(&self, offset: i32, axis1: i32, axis2: i32) -> Result<Array> {
        diagonal(self, offset, axis1, axis2)
    }
}
