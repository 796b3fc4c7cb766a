//! Element-wise comparisons, closeness tests, NaN/infinity tests, and `where`.
//!
//! Comparisons broadcast their inputs and return `bool` arrays.

use crate::raw::stream_op;
use crate::{Array, Result};
use mlx_sys as sys;

binary_ops! {
    /// `a == b`, element-wise with broadcasting.
    equal => mlx_equal;
    /// `a != b`, element-wise with broadcasting.
    not_equal => mlx_not_equal;
    /// `a < b`, element-wise with broadcasting.
    less => mlx_less;
    /// `a <= b`, element-wise with broadcasting.
    less_equal => mlx_less_equal;
    /// `a > b`, element-wise with broadcasting.
    greater => mlx_greater;
    /// `a >= b`, element-wise with broadcasting.
    greater_equal => mlx_greater_equal;
}

unary_ops! {
    /// Whether each element is NaN.
    isnan => mlx_isnan;
    /// Whether each element is `+inf` or `-inf`.
    isinf => mlx_isinf;
    /// Whether each element is neither infinite nor NaN.
    isfinite => mlx_isfinite;
    /// Whether each element is `-inf`.
    isneginf => mlx_isneginf;
    /// Whether each element is `+inf`.
    isposinf => mlx_isposinf;
}

/// Whether `|a - b| <= atol + rtol * |b|`, element-wise with broadcasting. Infinities are
/// close only to the same infinity; NaNs are close to each other only if `equal_nan`.
///
/// NumPy's defaults are `rtol = 1e-5`, `atol = 1e-8`, `equal_nan = false`.
#[track_caller]
pub fn isclose(a: &Array, b: &Array, rtol: f64, atol: f64, equal_nan: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_isclose(res, a.as_raw(), b.as_raw(), rtol, atol, equal_nan, s)
    })
}

/// Whether [`isclose`] holds for every element: a 0-d `bool` array.
#[track_caller]
pub fn allclose(a: &Array, b: &Array, rtol: f64, atol: f64, equal_nan: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_allclose(res, a.as_raw(), b.as_raw(), rtol, atol, equal_nan, s)
    })
}

/// Whether `a` and `b` have the same shape and equal values (dtypes may differ): a 0-d
/// `bool` array. NaNs count as equal only if `equal_nan`.
#[track_caller]
pub fn array_equal(a: &Array, b: &Array, equal_nan: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_array_equal(res, a.as_raw(), b.as_raw(), equal_nan, s) })
}

/// Picks `x` where `condition` is true and `y` elsewhere, element-wise with broadcasting
/// of all three. Called `r#where` because `where` is a Rust keyword.
#[track_caller]
pub fn r#where(condition: &Array, x: &Array, y: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_where(res, condition.as_raw(), x.as_raw(), y.as_raw(), s)
    })
}

array_methods! {
    /// Whether `self` is close to `other`, element-wise: see [`isclose`].
    fn isclose(other: &Array, rtol: f64, atol: f64, equal_nan: bool);
    /// Whether `self` is close to `other` everywhere: see [`allclose`].
    fn allclose(other: &Array, rtol: f64, atol: f64, equal_nan: bool);
    /// Whether `self` and `other` have the same shape and values: see [`array_equal`].
    fn array_equal(other: &Array, equal_nan: bool);
}
