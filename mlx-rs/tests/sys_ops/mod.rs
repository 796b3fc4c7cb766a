//! STOPGAP for the transform / fast / kernel tests: ops that live in other branches of the
//! op set (sum, mean, exp, sin, …), called straight through `mlx_sys`. Once the op set is
//! merged, replace each `sys_ops::x(..)` with `mlx_rs::ops::x(..)` and delete this file.
#![allow(dead_code)]

use mlx_rs::{Array, Error, Result};
use mlx_sys as sys;
use std::ffi::c_int;

/// Runs `f` with the raw default stream of the default device.
fn on_default_stream(
    f: impl FnOnce(*mut sys::mlx_array, sys::mlx_stream) -> c_int,
) -> Result<Array> {
    mlx_rs::install_error_handler();
    // SAFETY: fresh handles, filled by mlx-c and freed below (the array is owned by the
    // returned Array).
    unsafe {
        let mut dev = sys::mlx_device_new();
        let mut s = sys::mlx_stream_new();
        sys::mlx_get_default_device(&mut dev);
        sys::mlx_get_default_stream(&mut s, dev);
        let mut res = sys::mlx_array_new();
        let code = f(&mut res, s);
        sys::mlx_stream_free(s);
        sys::mlx_device_free(dev);
        let out = Array::from_raw_handle(res);
        if code != 0 {
            return Err(Error::InvalidArgument("an mlx_sys op failed".into()));
        }
        Ok(out)
    }
}

type Unary = unsafe extern "C" fn(*mut sys::mlx_array, sys::mlx_array, sys::mlx_stream) -> c_int;

fn unary(f: Unary, a: &Array) -> Result<Array> {
    on_default_stream(|res, s| unsafe { f(res, a.as_raw_handle(), s) })
}

pub fn sin(a: &Array) -> Result<Array> {
    unary(sys::mlx_sin, a)
}
pub fn cos(a: &Array) -> Result<Array> {
    unary(sys::mlx_cos, a)
}
pub fn exp(a: &Array) -> Result<Array> {
    unary(sys::mlx_exp, a)
}
pub fn log(a: &Array) -> Result<Array> {
    unary(sys::mlx_log, a)
}
pub fn tanh(a: &Array) -> Result<Array> {
    unary(sys::mlx_tanh, a)
}
pub fn sigmoid(a: &Array) -> Result<Array> {
    unary(sys::mlx_sigmoid, a)
}

/// Sum of all elements.
pub fn sum(a: &Array) -> Result<Array> {
    on_default_stream(|res, s| unsafe { sys::mlx_sum(res, a.as_raw_handle(), false, s) })
}

/// Mean of all elements.
pub fn mean(a: &Array) -> Result<Array> {
    on_default_stream(|res, s| unsafe { sys::mlx_mean(res, a.as_raw_handle(), false, s) })
}

/// Sum over one axis.
pub fn sum_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    on_default_stream(|res, s| unsafe {
        sys::mlx_sum_axis(res, a.as_raw_handle(), axis, keepdims, s)
    })
}

/// Mean over one axis.
pub fn mean_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    on_default_stream(|res, s| unsafe {
        sys::mlx_mean_axis(res, a.as_raw_handle(), axis, keepdims, s)
    })
}

/// Softmax over one axis (computed precisely).
pub fn softmax_axis(a: &Array, axis: i32) -> Result<Array> {
    on_default_stream(|res, s| unsafe {
        sys::mlx_softmax_axis(res, a.as_raw_handle(), axis, true, s)
    })
}

/// log(sum(exp(a))) over one axis.
pub fn logsumexp_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    on_default_stream(|res, s| unsafe {
        sys::mlx_logsumexp_axis(res, a.as_raw_handle(), axis, keepdims, s)
    })
}

pub fn reshape(a: &Array, shape: &[i32]) -> Result<Array> {
    on_default_stream(|res, s| unsafe {
        sys::mlx_reshape(res, a.as_raw_handle(), shape.as_ptr(), shape.len(), s)
    })
}

/// Swaps the last two axes.
pub fn swap_last(a: &Array) -> Result<Array> {
    let n = a.ndim() as i32;
    on_default_stream(|res, s| unsafe {
        sys::mlx_swapaxes(res, a.as_raw_handle(), n - 2, n - 1, s)
    })
}

/// Repeats `a` `repeats` times along `axis`.
pub fn repeat(a: &Array, repeats: i32, axis: i32) -> Result<Array> {
    on_default_stream(|res, s| unsafe {
        sys::mlx_repeat_axis(res, a.as_raw_handle(), repeats, axis, s)
    })
}

/// Elements along the last axis picked by integer `indices` (same shape but the last axis).
pub fn take_along_last(a: &Array, indices: &Array) -> Result<Array> {
    on_default_stream(|res, s| unsafe {
        sys::mlx_take_along_axis(res, a.as_raw_handle(), indices.as_raw_handle(), -1, s)
    })
}

pub fn expand_dims(a: &Array, axis: i32) -> Result<Array> {
    on_default_stream(|res, s| unsafe { sys::mlx_expand_dims(res, a.as_raw_handle(), axis, s) })
}

/// `cond ? a : b`.
pub fn where_(cond: &Array, a: &Array, b: &Array) -> Result<Array> {
    on_default_stream(|res, s| unsafe {
        sys::mlx_where(
            res,
            cond.as_raw_handle(),
            a.as_raw_handle(),
            b.as_raw_handle(),
            s,
        )
    })
}

/// The lower triangle (k-th diagonal and below) of a matrix; the rest zero.
pub fn tril(a: &Array, k: i32) -> Result<Array> {
    on_default_stream(|res, s| unsafe { sys::mlx_tril(res, a.as_raw_handle(), k, s) })
}

/// A new array of `shape` filled with `value`.
pub fn full(shape: &[i32], value: f32) -> Result<Array> {
    let v = Array::from_slice(&[value], &[])?;
    on_default_stream(|res, s| unsafe {
        sys::mlx_full(
            res,
            shape.as_ptr(),
            shape.len(),
            v.as_raw_handle(),
            sys::MLX_FLOAT32,
            s,
        )
    })
}

/// Concatenates along the last axis.
pub fn concat_last(parts: &[&Array]) -> Result<Array> {
    let raws: Vec<sys::mlx_array> = parts.iter().map(|a| a.as_raw_handle()).collect();
    // SAFETY: a vector of live handles, freed after the call.
    let v = unsafe { sys::mlx_vector_array_new_data(raws.as_ptr(), raws.len()) };
    let out = on_default_stream(|res, s| unsafe { sys::mlx_concatenate_axis(res, v, -1, s) });
    unsafe { sys::mlx_vector_array_free(v) };
    out
}
