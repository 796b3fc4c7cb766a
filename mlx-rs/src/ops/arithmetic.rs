//! Element-wise arithmetic (`+ - * /`, powers, remainders, maxima) and `matmul`.
//!
//! Binary ops broadcast their inputs with NumPy's rules and promote both to a common
//! dtype. The `std::ops` operators (`&a + &b`, `&a * 2.0`) call these and panic where
//! these return `Err`; see [`Scalar`](crate::Scalar).

use crate::raw::stream_vector_op;
use crate::{Array, Error, Result};
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
    /// The remainder of `a / b` with the sign of `b` (Python's `%`), element-wise.
    remainder => mlx_remainder;
    /// `floor(a / b)`, element-wise (integer division for integer inputs).
    floor_divide => mlx_floor_divide;
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

/// `(floor_divide(a, b), remainder(a, b))`, computed together.
#[track_caller]
pub fn divmod(a: &Array, b: &Array) -> Result<(Array, Array)> {
    let parts =
        stream_vector_op(|res, s| unsafe { sys::mlx_divmod(res, a.as_raw(), b.as_raw(), s) })?;
    let [quotient, remainder]: [Array; 2] = parts.try_into().map_err(|v: Vec<Array>| {
        Error::Shape(format!("divmod returned {} arrays instead of 2", v.len()))
    })?;
    Ok((quotient, remainder))
}

array_methods! {
    /// `(floor_divide(self, other), remainder(self, other))`: see [`divmod`].
    fn divmod(other: &Array) -> (Array, Array);
}
