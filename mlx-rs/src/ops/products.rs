//! Products beyond `matmul`: inner, outer, Kronecker, tensor contractions, `einsum`.

use crate::raw::{stream_op, VectorArray};
use crate::{Array, Error, Result};
use mlx_sys as sys;
use std::ffi::CString;

binary_ops! {
    /// The inner product: `a · b` for 1-d inputs, else the sum over the last axes of both.
    inner => mlx_inner;
    /// The outer product of `a` and `b`, flattened to 1-d first: shape `[a.size(), b.size()]`.
    outer => mlx_outer;
    /// The Kronecker product of `a` and `b`.
    kron => mlx_kron;
}

/// `alpha * (a @ b) + beta * c`, fused (`c` broadcasts to the product's shape).
#[track_caller]
pub fn addmm(c: &Array, a: &Array, b: &Array, alpha: f32, beta: f32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_addmm(res, c.as_raw(), a.as_raw(), b.as_raw(), alpha, beta, s)
    })
}

/// Sums the products of `a` and `b` over the axes `axes_a` of `a` paired with `axes_b` of
/// `b`; the other axes of `a` then of `b` make the result.
///
/// Fails if the two lists differ in length or paired axes differ in size.
#[track_caller]
pub fn tensordot(a: &Array, b: &Array, axes_a: &[i32], axes_b: &[i32]) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_tensordot(
            res,
            a.as_raw(),
            b.as_raw(),
            axes_a.as_ptr(),
            axes_a.len(),
            axes_b.as_ptr(),
            axes_b.len(),
            s,
        )
    })
}

/// Sums the products of the last `axis` axes of `a` with the first `axis` axes of `b`
/// (`0`: outer product, `1`: matrix product of 2-d inputs).
#[track_caller]
pub fn tensordot_axis(a: &Array, b: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_tensordot_axis(res, a.as_raw(), b.as_raw(), axis, s) })
}

/// The dot product of `a` and `b` along `axis` (after broadcasting), conjugating `a`
/// when complex.
#[track_caller]
pub fn vecdot(a: &Array, b: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_vecdot(res, a.as_raw(), b.as_raw(), axis, s) })
}

/// Einstein summation over `operands` as described by `subscripts` (NumPy's notation,
/// e.g. `"ij,jk->ik"`).
///
/// Fails if `subscripts` contains a NUL byte, does not parse, or does not fit the
/// operands.
#[track_caller]
pub fn einsum<A: AsRef<Array>>(subscripts: &str, operands: &[A]) -> Result<Array> {
    let subscripts = CString::new(subscripts).map_err(|_| {
        Error::InvalidArgument(format!(
            "einsum subscripts contain a NUL byte: {subscripts:?}"
        ))
    })?;
    let operands = VectorArray::from_arrays(operands);
    // SAFETY: `subscripts` is a NUL-terminated string alive for the call; mlx copies it.
    stream_op(|res, s| unsafe { sys::mlx_einsum(res, subscripts.as_ptr(), operands.0, s) })
}

array_methods! {
    /// `alpha * (a @ b) + beta * self`: see [`addmm`].
    fn addmm(a: &Array, b: &Array, alpha: f32, beta: f32);
    /// The contraction of `self` and `other` over paired axes: see [`tensordot`].
    fn tensordot(other: &Array, axes_a: &[i32], axes_b: &[i32]);
    /// The contraction of `self`'s last `axis` axes with `other`'s first: see
    /// [`tensordot_axis`].
    fn tensordot_axis(other: &Array, axis: i32);
    /// The dot product of `self` and `other` along `axis`: see [`vecdot`].
    fn vecdot(other: &Array, axis: i32);
}
