//! Arrays made from shapes and ranges.

use crate::raw::stream_op;
use crate::{Array, Dtype, Result};
use std::ffi::c_int;

/// An array of `shape` filled with zeros.
#[track_caller]
pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe {
        mlx_sys::mlx_zeros(res, shape.as_ptr(), shape.len(), dtype.to_raw(), s)
    })
}

/// An array of `shape` filled with ones.
#[track_caller]
pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe {
        mlx_sys::mlx_ones(res, shape.as_ptr(), shape.len(), dtype.to_raw(), s)
    })
}

/// Values from `start` (inclusive) to `stop` (exclusive) in steps of `step`.
#[track_caller]
pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe { mlx_sys::mlx_arange(res, start, stop, step, dtype.to_raw(), s) })
}

/// The `n × m` matrix with ones on diagonal `k`.
#[track_caller]
pub fn eye(n: i32, m: i32, k: i32, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe {
        mlx_sys::mlx_eye(res, n as c_int, m as c_int, k as c_int, dtype.to_raw(), s)
    })
}
