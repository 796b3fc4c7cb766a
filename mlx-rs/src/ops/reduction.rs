//! Reductions (sum, mean, max, …, with their `_axis`/`_axes` forms), arg-reductions,
//! cumulative scans, and softmax.
//!
//! Each reduction comes in three forms: over all elements (`sum`), along one axis
//! (`sum_axis`), and over several axes (`sum_axes`). Negative axes count from the end.
//! With `keepdims` the reduced axes stay in the result with size 1, so it broadcasts
//! against the input. A bad or repeated axis is an error.

use super::empty::or_empty;
use crate::raw::stream_op;
use crate::{Array, Dtype, Result};
use mlx_sys as sys;

fn optional_dtype(dtype: Option<Dtype>) -> sys::mlx_optional_dtype {
    sys::mlx_optional_dtype {
        value: dtype.unwrap_or(Dtype::Float32).to_raw(),
        has_value: dtype.is_some(),
    }
}

/// The sum of the elements.
#[track_caller]
pub fn sum(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_sum(res, a.as_raw(), keepdims, s) })
}

/// The sum of the elements along `axis`.
#[track_caller]
pub fn sum_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_sum_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The sum of the elements over `axes`.
#[track_caller]
pub fn sum_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_sum_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// The mean of the elements.
#[track_caller]
pub fn mean(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_mean(res, a.as_raw(), keepdims, s) })
}

/// The mean of the elements along `axis`.
#[track_caller]
pub fn mean_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_mean_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The mean of the elements over `axes`.
#[track_caller]
pub fn mean_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_mean_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// The largest element.
#[track_caller]
pub fn max(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_max(res, a.as_raw(), keepdims, s) })
}

/// The largest element along `axis`.
#[track_caller]
pub fn max_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_max_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The largest element over `axes`.
#[track_caller]
pub fn max_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_max_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// The smallest element.
#[track_caller]
pub fn min(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_min(res, a.as_raw(), keepdims, s) })
}

/// The smallest element along `axis`.
#[track_caller]
pub fn min_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_min_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The smallest element over `axes`.
#[track_caller]
pub fn min_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_min_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// The product of the elements.
#[track_caller]
pub fn prod(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_prod(res, a.as_raw(), keepdims, s) })
}

/// The product of the elements along `axis`.
#[track_caller]
pub fn prod_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_prod_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The product of the elements over `axes`.
#[track_caller]
pub fn prod_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_prod_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// Whether every element is true (non-zero), as `bool`.
#[track_caller]
pub fn all(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_all(res, a.as_raw(), keepdims, s) })
}

/// Whether every element is true (non-zero), as `bool` along `axis`.
#[track_caller]
pub fn all_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_all_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// Whether every element is true (non-zero), as `bool` over `axes`.
#[track_caller]
pub fn all_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_all_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// Whether some element is true (non-zero), as `bool`.
#[track_caller]
pub fn any(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_any(res, a.as_raw(), keepdims, s) })
}

/// Whether some element is true (non-zero), as `bool` along `axis`.
#[track_caller]
pub fn any_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_any_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// Whether some element is true (non-zero), as `bool` over `axes`.
#[track_caller]
pub fn any_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_any_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// `log(sum(exp(a)))` of the elements, computed without overflow.
#[track_caller]
pub fn logsumexp(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_logsumexp(res, a.as_raw(), keepdims, s) })
}

/// `log(sum(exp(a)))` of the elements, computed without overflow along `axis`.
#[track_caller]
pub fn logsumexp_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_logsumexp_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// `log(sum(exp(a)))` of the elements, computed without overflow over `axes`.
#[track_caller]
pub fn logsumexp_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_logsumexp_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// The number of non-zero elements.
#[track_caller]
pub fn count_nonzero(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_count_nonzero(res, a.as_raw(), keepdims, s) })
}

/// The number of non-zero elements along `axis`.
#[track_caller]
pub fn count_nonzero_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_count_nonzero_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The number of non-zero elements over `axes`.
#[track_caller]
pub fn count_nonzero_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_count_nonzero_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// The median of the elements.
#[track_caller]
pub fn median(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_median(res, a.as_raw(), keepdims, s) })
}

/// The median of the elements along `axis`.
#[track_caller]
pub fn median_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_median_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The median of the elements over `axes`.
#[track_caller]
pub fn median_axes(a: &Array, axes: &[i32], keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_median_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), keepdims, s)
    })
}

/// The variance of the elements.
///
/// `ddof` (delta degrees of freedom) sets the divisor to `N - ddof`: `0` for the
/// population value, `1` for the unbiased sample value.
#[track_caller]
pub fn var(a: &Array, keepdims: bool, ddof: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_var(res, a.as_raw(), keepdims, ddof, s) })
}

/// The variance along `axis`.
///
/// `ddof` (delta degrees of freedom) sets the divisor to `N - ddof`: `0` for the
/// population value, `1` for the unbiased sample value.
#[track_caller]
pub fn var_axis(a: &Array, axis: i32, keepdims: bool, ddof: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_var_axis(res, a.as_raw(), axis, keepdims, ddof, s) })
}

/// The variance over `axes`.
///
/// `ddof` (delta degrees of freedom) sets the divisor to `N - ddof`: `0` for the
/// population value, `1` for the unbiased sample value.
#[track_caller]
pub fn var_axes(a: &Array, axes: &[i32], keepdims: bool, ddof: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_var_axes(
            res,
            a.as_raw(),
            axes.as_ptr(),
            axes.len(),
            keepdims,
            ddof,
            s,
        )
    })
}

/// The standard deviation of the elements.
///
/// `ddof` (delta degrees of freedom) sets the divisor to `N - ddof`: `0` for the
/// population value, `1` for the unbiased sample value.
#[track_caller]
pub fn std(a: &Array, keepdims: bool, ddof: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_std(res, a.as_raw(), keepdims, ddof, s) })
}

/// The standard deviation along `axis`.
///
/// `ddof` (delta degrees of freedom) sets the divisor to `N - ddof`: `0` for the
/// population value, `1` for the unbiased sample value.
#[track_caller]
pub fn std_axis(a: &Array, axis: i32, keepdims: bool, ddof: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_std_axis(res, a.as_raw(), axis, keepdims, ddof, s) })
}

/// The standard deviation over `axes`.
///
/// `ddof` (delta degrees of freedom) sets the divisor to `N - ddof`: `0` for the
/// population value, `1` for the unbiased sample value.
#[track_caller]
pub fn std_axes(a: &Array, axes: &[i32], keepdims: bool, ddof: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_std_axes(
            res,
            a.as_raw(),
            axes.as_ptr(),
            axes.len(),
            keepdims,
            ddof,
            s,
        )
    })
}

/// The index of the largest element of the flattened array (`uint32`); the first one on ties.
#[track_caller]
pub fn argmax(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_argmax(res, a.as_raw(), keepdims, s) })
}

/// The indices of the largest elements along `axis` (`uint32`); the first one on ties.
#[track_caller]
pub fn argmax_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_argmax_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The index of the smallest element of the flattened array (`uint32`); the first one on ties.
#[track_caller]
pub fn argmin(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_argmin(res, a.as_raw(), keepdims, s) })
}

/// The indices of the smallest elements along `axis` (`uint32`); the first one on ties.
#[track_caller]
pub fn argmin_axis(a: &Array, axis: i32, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_argmin_axis(res, a.as_raw(), axis, keepdims, s) })
}

/// The running sum of the flattened array.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
/// `dtype` sets the accumulation and result dtype (`None` keeps the input dtype,
/// except that [`cumsum`] of `bool` gives `int32`).
#[track_caller]
pub fn cumsum(a: &Array, reverse: bool, inclusive: bool, dtype: Option<Dtype>) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_cumsum(
            res,
            a.as_raw(),
            reverse,
            inclusive,
            optional_dtype(dtype),
            s,
        )
    })?)
}

/// The running sum along `axis`.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
/// `dtype` sets the accumulation and result dtype (`None` keeps the input dtype,
/// except that [`cumsum`] of `bool` gives `int32`).
#[track_caller]
pub fn cumsum_axis(
    a: &Array,
    axis: i32,
    reverse: bool,
    inclusive: bool,
    dtype: Option<Dtype>,
) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_cumsum_axis(
            res,
            a.as_raw(),
            axis,
            reverse,
            inclusive,
            optional_dtype(dtype),
            s,
        )
    })?)
}

/// The running product of the flattened array.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
/// `dtype` sets the accumulation and result dtype (`None` keeps the input dtype,
/// except that [`cumsum`] of `bool` gives `int32`).
#[track_caller]
pub fn cumprod(a: &Array, reverse: bool, inclusive: bool, dtype: Option<Dtype>) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_cumprod(
            res,
            a.as_raw(),
            reverse,
            inclusive,
            optional_dtype(dtype),
            s,
        )
    })?)
}

/// The running product along `axis`.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
/// `dtype` sets the accumulation and result dtype (`None` keeps the input dtype,
/// except that [`cumsum`] of `bool` gives `int32`).
#[track_caller]
pub fn cumprod_axis(
    a: &Array,
    axis: i32,
    reverse: bool,
    inclusive: bool,
    dtype: Option<Dtype>,
) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_cumprod_axis(
            res,
            a.as_raw(),
            axis,
            reverse,
            inclusive,
            optional_dtype(dtype),
            s,
        )
    })?)
}

/// The running maximum of the flattened array.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
#[track_caller]
pub fn cummax(a: &Array, reverse: bool, inclusive: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_cummax(res, a.as_raw(), reverse, inclusive, s)
    })?)
}

/// The running maximum along `axis`.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
#[track_caller]
pub fn cummax_axis(a: &Array, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_cummax_axis(res, a.as_raw(), axis, reverse, inclusive, s)
    })?)
}

/// The running minimum of the flattened array.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
#[track_caller]
pub fn cummin(a: &Array, reverse: bool, inclusive: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_cummin(res, a.as_raw(), reverse, inclusive, s)
    })?)
}

/// The running minimum along `axis`.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
#[track_caller]
pub fn cummin_axis(a: &Array, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_cummin_axis(res, a.as_raw(), axis, reverse, inclusive, s)
    })?)
}

/// The running `log(sum(exp(a)))` of the flattened array.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
#[track_caller]
pub fn logcumsumexp(a: &Array, reverse: bool, inclusive: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_logcumsumexp(res, a.as_raw(), reverse, inclusive, s)
    })?)
}

/// The running `log(sum(exp(a)))` along `axis`.
///
/// `reverse` scans from the end; without `inclusive` each output excludes its own
/// element (it starts from the identity).
#[track_caller]
pub fn logcumsumexp_axis(a: &Array, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_logcumsumexp_axis(res, a.as_raw(), axis, reverse, inclusive, s)
    })?)
}

/// `exp(a) / sum(exp(a))` over all elements.
///
/// With `precise`, half-precision inputs are computed in `float32` (the result keeps
/// the input dtype).
#[track_caller]
pub fn softmax(a: &Array, precise: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_softmax(res, a.as_raw(), precise, s) })
}

/// `exp(a) / sum(exp(a))` along `axis`.
///
/// With `precise`, half-precision inputs are computed in `float32` (the result keeps
/// the input dtype).
#[track_caller]
pub fn softmax_axis(a: &Array, axis: i32, precise: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_softmax_axis(res, a.as_raw(), axis, precise, s) })
}

/// `exp(a) / sum(exp(a))` over `axes`.
///
/// With `precise`, half-precision inputs are computed in `float32` (the result keeps
/// the input dtype).
#[track_caller]
pub fn softmax_axes(a: &Array, axes: &[i32], precise: bool) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_softmax_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), precise, s)
    })
}

array_methods! {
    /// The sum of the elements (see [`sum`]).
    fn sum(keepdims: bool);
    /// The sum of the elements along `axis` (see [`sum_axis`]).
    fn sum_axis(axis: i32, keepdims: bool);
    /// The sum of the elements over `axes` (see [`sum_axes`]).
    fn sum_axes(axes: &[i32], keepdims: bool);
    /// The mean of the elements (see [`mean`]).
    fn mean(keepdims: bool);
    /// The mean of the elements along `axis` (see [`mean_axis`]).
    fn mean_axis(axis: i32, keepdims: bool);
    /// The mean of the elements over `axes` (see [`mean_axes`]).
    fn mean_axes(axes: &[i32], keepdims: bool);
    /// The largest element (see [`max`]).
    fn max(keepdims: bool);
    /// The largest element along `axis` (see [`max_axis`]).
    fn max_axis(axis: i32, keepdims: bool);
    /// The largest element over `axes` (see [`max_axes`]).
    fn max_axes(axes: &[i32], keepdims: bool);
    /// The smallest element (see [`min`]).
    fn min(keepdims: bool);
    /// The smallest element along `axis` (see [`min_axis`]).
    fn min_axis(axis: i32, keepdims: bool);
    /// The smallest element over `axes` (see [`min_axes`]).
    fn min_axes(axes: &[i32], keepdims: bool);
    /// The product of the elements (see [`prod`]).
    fn prod(keepdims: bool);
    /// The product of the elements along `axis` (see [`prod_axis`]).
    fn prod_axis(axis: i32, keepdims: bool);
    /// The product of the elements over `axes` (see [`prod_axes`]).
    fn prod_axes(axes: &[i32], keepdims: bool);
    /// Whether every element is true (non-zero), as `bool` (see [`all`]).
    fn all(keepdims: bool);
    /// Whether every element is true (non-zero), as `bool` along `axis` (see [`all_axis`]).
    fn all_axis(axis: i32, keepdims: bool);
    /// Whether every element is true (non-zero), as `bool` over `axes` (see [`all_axes`]).
    fn all_axes(axes: &[i32], keepdims: bool);
    /// Whether some element is true (non-zero), as `bool` (see [`any`]).
    fn any(keepdims: bool);
    /// Whether some element is true (non-zero), as `bool` along `axis` (see [`any_axis`]).
    fn any_axis(axis: i32, keepdims: bool);
    /// Whether some element is true (non-zero), as `bool` over `axes` (see [`any_axes`]).
    fn any_axes(axes: &[i32], keepdims: bool);
    /// `log(sum(exp(a)))` of the elements, computed without overflow (see [`logsumexp`]).
    fn logsumexp(keepdims: bool);
    /// `log(sum(exp(a)))` of the elements, computed without overflow along `axis` (see [`logsumexp_axis`]).
    fn logsumexp_axis(axis: i32, keepdims: bool);
    /// `log(sum(exp(a)))` of the elements, computed without overflow over `axes` (see [`logsumexp_axes`]).
    fn logsumexp_axes(axes: &[i32], keepdims: bool);
    /// The number of non-zero elements (see [`count_nonzero`]).
    fn count_nonzero(keepdims: bool);
    /// The number of non-zero elements along `axis` (see [`count_nonzero_axis`]).
    fn count_nonzero_axis(axis: i32, keepdims: bool);
    /// The number of non-zero elements over `axes` (see [`count_nonzero_axes`]).
    fn count_nonzero_axes(axes: &[i32], keepdims: bool);
    /// The median of the elements (see [`median`]).
    fn median(keepdims: bool);
    /// The median of the elements along `axis` (see [`median_axis`]).
    fn median_axis(axis: i32, keepdims: bool);
    /// The median of the elements over `axes` (see [`median_axes`]).
    fn median_axes(axes: &[i32], keepdims: bool);
    /// The variance of the elements (see [`var`]).
    fn var(keepdims: bool, ddof: i32);
    /// The variance along `axis` (see [`var_axis`]).
    fn var_axis(axis: i32, keepdims: bool, ddof: i32);
    /// The variance over `axes` (see [`var_axes`]).
    fn var_axes(axes: &[i32], keepdims: bool, ddof: i32);
    /// The standard deviation of the elements (see [`std`](fn@std)).
    fn std(keepdims: bool, ddof: i32);
    /// The standard deviation along `axis` (see [`std_axis`]).
    fn std_axis(axis: i32, keepdims: bool, ddof: i32);
    /// The standard deviation over `axes` (see [`std_axes`]).
    fn std_axes(axes: &[i32], keepdims: bool, ddof: i32);
    /// The flat index of the largest element (see [`argmax`]).
    fn argmax(keepdims: bool);
    /// The indices of the largest elements along `axis` (see [`argmax_axis`]).
    fn argmax_axis(axis: i32, keepdims: bool);
    /// The flat index of the smallest element (see [`argmin`]).
    fn argmin(keepdims: bool);
    /// The indices of the smallest elements along `axis` (see [`argmin_axis`]).
    fn argmin_axis(axis: i32, keepdims: bool);
    /// The running sum of the flattened array (see [`cumsum`]).
    fn cumsum(reverse: bool, inclusive: bool, dtype: Option<Dtype>);
    /// The running sum along `axis` (see [`cumsum_axis`]).
    fn cumsum_axis(axis: i32, reverse: bool, inclusive: bool, dtype: Option<Dtype>);
    /// The running product of the flattened array (see [`cumprod`]).
    fn cumprod(reverse: bool, inclusive: bool, dtype: Option<Dtype>);
    /// The running product along `axis` (see [`cumprod_axis`]).
    fn cumprod_axis(axis: i32, reverse: bool, inclusive: bool, dtype: Option<Dtype>);
    /// The running maximum of the flattened array (see [`cummax`]).
    fn cummax(reverse: bool, inclusive: bool);
    /// The running maximum along `axis` (see [`cummax_axis`]).
    fn cummax_axis(axis: i32, reverse: bool, inclusive: bool);
    /// The running minimum of the flattened array (see [`cummin`]).
    fn cummin(reverse: bool, inclusive: bool);
    /// The running minimum along `axis` (see [`cummin_axis`]).
    fn cummin_axis(axis: i32, reverse: bool, inclusive: bool);
    /// The running `log(sum(exp(a)))` of the flattened array (see [`logcumsumexp`]).
    fn logcumsumexp(reverse: bool, inclusive: bool);
    /// The running `log(sum(exp(a)))` along `axis` (see [`logcumsumexp_axis`]).
    fn logcumsumexp_axis(axis: i32, reverse: bool, inclusive: bool);
    /// Softmax over all elements (see [`softmax`]).
    fn softmax(precise: bool);
    /// Softmax along `axis` (see [`softmax_axis`]).
    fn softmax_axis(axis: i32, precise: bool);
    /// Softmax over `axes` (see [`softmax_axes`]).
    fn softmax_axes(axes: &[i32], precise: bool);
}
