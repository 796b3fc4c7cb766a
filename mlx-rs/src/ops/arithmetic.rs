//! Element-wise arithmetic (`+ - * /`, powers, remainders, maxima) and `matmul`.
//!
//! Binary ops broadcast their inputs with NumPy's rules and promote both to a common
//! dtype. The `std::ops` operators (`&a + &b`, `&a * 2.0`) call these and panic where
//! these return `Err`; see [`Scalar`](crate::Scalar).
//!
//! Integer division never traps: see [`floor_divide`].

use super::comparison::r#where;
use crate::raw::{stream_op, stream_vector_op};
use crate::{Array, Dtype, Error, Result};
use mlx_sys as sys;

binary_ops! {
    /// `a + b`, element-wise with broadcasting.
    add => mlx_add;
    /// `a - b`, element-wise with broadcasting.
    subtract => mlx_subtract;
    /// `a * b`, element-wise with broadcasting.
    multiply => mlx_multiply;
    /// `a / b`, element-wise with broadcasting (true division: integer inputs give a
    /// floating result).
    divide => mlx_divide;
    /// Matrix product with NumPy's broadcasting rules for batch dimensions.
    matmul => mlx_matmul;
    /// `a` raised to the power `b`, element-wise with broadcasting.
    power => mlx_power;
    /// The larger of `a` and `b`, element-wise (NaN if either is NaN).
    maximum => mlx_maximum;
    /// The smaller of `a` and `b`, element-wise (NaN if either is NaN).
    minimum => mlx_minimum;
    /// `log(exp(a) + exp(b))`, element-wise, computed without overflow.
    logaddexp => mlx_logaddexp;
    /// The angle of the point `(b, a)`: `arctan(a / b)` in the right quadrant, in radians.
    arctan2 => mlx_arctan2;
}

unary_ops! {
    /// `-a`, element-wise.
    negative => mlx_negative;
    /// `+a`: the same values (a copy in the graph).
    positive => mlx_positive;
    /// `a * a`, element-wise.
    square => mlx_square;
    /// Square root, element-wise.
    sqrt => mlx_sqrt;
}

#[track_caller]
fn raw_floor_divide(a: &Array, b: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_floor_divide(res, a.as_raw(), b.as_raw(), s) })
}

/// MLX's remainder, for divisors known to be non-zero (no guard).
#[track_caller]
pub(crate) fn raw_remainder(a: &Array, b: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_remainder(res, a.as_raw(), b.as_raw(), s) })
}

/// A scalar `v` of the integer `dtype`.
fn int_scalar(v: i8, dtype: Dtype) -> Result<Array> {
    Array::scalar(v as i32).astype(dtype)
}

/// The divisor `b` made safe for integer division in `dtype`.
struct SafeDivisor {
    /// `a` as `dtype`.
    a: Array,
    /// `b` as `dtype` with 0 (and -1 for signed types) replaced by 1.
    b: Array,
    /// Where `b` is 0.
    zero: Array,
    /// Where `b` is -1 (signed types only).
    minus_one: Option<Array>,
    dtype: Dtype,
}

/// The parts of an integer division `a / b` in the promoted `dtype`, or `None` when
/// `dtype` is not an integer type (nothing can trap).
fn safe_divisor(a: &Array, b: &Array, dtype: Dtype) -> Result<Option<SafeDivisor>> {
    if !dtype.is_integer() {
        return Ok(None);
    }
    let (a, b) = (a.astype(dtype)?, b.astype(dtype)?);
    let one = int_scalar(1, dtype)?;
    let zero = b.equal(&int_scalar(0, dtype)?)?;
    let signed = matches!(
        dtype,
        Dtype::Int8 | Dtype::Int16 | Dtype::Int32 | Dtype::Int64
    );
    let (bad, minus_one) = if signed {
        let m1 = b.equal(&int_scalar(-1, dtype)?)?;
        (zero.logical_or(&m1)?, Some(m1))
    } else {
        (zero.clone(), None)
    };
    let b = r#where(&bad, &one, &b)?;
    Ok(Some(SafeDivisor {
        a,
        b,
        zero,
        minus_one,
        dtype,
    }))
}

impl SafeDivisor {
    /// The quotient of `a` by the safe divisor, fixed up where the divisor was 0 or -1.
    fn quotient(&self, raw: Array) -> Result<Array> {
        let q = match &self.minus_one {
            Some(m1) => r#where(m1, &self.a.negative()?, &raw)?,
            None => raw,
        };
        r#where(&self.zero, &int_scalar(0, self.dtype)?, &q)
    }
}

/// `floor(a / b)`, element-wise with broadcasting (integer division for integer inputs).
///
/// # Integer division by zero and `MIN / -1`
///
/// These trap the CPU (SIGFPE) in MLX's kernels and give unspecified values on GPUs.
/// [`floor_divide`], [`remainder`], [`divmod`] and the `%` operator define every case
/// instead, as NumPy does (without its warning):
///
/// | case | `floor_divide` | `remainder` |
/// | --- | --- | --- |
/// | `x / 0` | `0` | `0` |
/// | `MIN / -1` (signed) | `MIN` (wraps, like `i32::wrapping_div`) | `0` |
///
/// This is done with a few lazy element-wise ops (zero and -1 divisors are replaced by
/// one, then the defined result is selected), so it also holds inside `compile` and
/// `vmap` and on every device. Floating-point and `bool` inputs are unchanged (`7.0 //
/// 0.0` is `inf`); [`divide`] is true division and never traps.
///
/// ```
/// use mlx_rs::{ops, Array};
/// let a = Array::from_slice(&[7i32, -7, i32::MIN], &[3])?;
/// let b = Array::from_slice(&[0i32, 0, -1], &[3])?;
/// assert_eq!(ops::floor_divide(&a, &b)?.to_vec::<i32>()?, vec![0, 0, i32::MIN]);
/// assert_eq!(ops::remainder(&a, &b)?.to_vec::<i32>()?, vec![0, 0, 0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn floor_divide(a: &Array, b: &Array) -> Result<Array> {
    let raw = raw_floor_divide(a, b)?;
    match safe_divisor(a, b, raw.dtype())? {
        None => Ok(raw),
        Some(d) => d.quotient(raw_floor_divide(&d.a, &d.b)?),
    }
}

/// The remainder of `a / b` with the sign of `b` (Python's `%`), element-wise with
/// broadcasting.
///
/// For integers, `x % 0` is 0 and `MIN % -1` is 0 (see [`floor_divide`]): never a trap.
#[track_caller]
pub fn remainder(a: &Array, b: &Array) -> Result<Array> {
    let raw = raw_remainder(a, b)?;
    match safe_divisor(a, b, raw.dtype())? {
        None => Ok(raw),
        // The safe divisor is 1 wherever `b` was 0 or -1, and `x % 1` is 0.
        Some(d) => raw_remainder(&d.a, &d.b),
    }
}

/// `(floor_divide(a, b), remainder(a, b))`, computed together.
///
/// Integer division by zero and `MIN / -1` give the values documented on
/// [`floor_divide`] and [`remainder`].
#[track_caller]
pub fn divmod(a: &Array, b: &Array) -> Result<(Array, Array)> {
    let (quotient, remainder) = raw_divmod(a, b)?;
    match safe_divisor(a, b, quotient.dtype())? {
        None => Ok((quotient, remainder)),
        Some(d) => {
            let (q, r) = raw_divmod(&d.a, &d.b)?;
            Ok((d.quotient(q)?, r))
        }
    }
}

#[track_caller]
fn raw_divmod(a: &Array, b: &Array) -> Result<(Array, Array)> {
    let parts =
        stream_vector_op(|res, s| unsafe { sys::mlx_divmod(res, a.as_raw(), b.as_raw(), s) })?;
    let [quotient, remainder]: [Array; 2] = parts.try_into().map_err(|v: Vec<Array>| {
        Error::Shape(format!("divmod returned {} arrays instead of 2", v.len()))
    })?;
    Ok((quotient, remainder))
}

array_methods! {
    /// `floor(self / other)`: see [`floor_divide`] (integer division by zero gives 0).
    fn floor_divide(other: &Array);
    /// `self % other` with Python's sign rule: see [`remainder`] (integer `x % 0` is 0).
    fn remainder(other: &Array);
    /// `(floor_divide(self, other), remainder(self, other))`: see [`divmod`].
    fn divmod(other: &Array) -> (Array, Array);
}
