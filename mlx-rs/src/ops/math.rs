//! Element-wise math: exponentials, logs, trigonometry, rounding, special functions.

use crate::raw::stream_op;
use crate::{Array, Result};
use mlx_sys as sys;

unary_ops! {
    /// Absolute value, element-wise (the magnitude for complex inputs).
    abs => mlx_abs;
    /// `e^a`, element-wise.
    exp => mlx_exp;
    /// `e^a - 1`, element-wise, accurate for small `a`.
    expm1 => mlx_expm1;
    /// Natural logarithm, element-wise.
    log => mlx_log;
    /// Base-10 logarithm, element-wise.
    log10 => mlx_log10;
    /// Base-2 logarithm, element-wise.
    log2 => mlx_log2;
    /// `log(1 + a)`, element-wise, accurate for small `a`.
    log1p => mlx_log1p;
    /// Sine (radians), element-wise.
    sin => mlx_sin;
    /// Cosine (radians), element-wise.
    cos => mlx_cos;
    /// Tangent (radians), element-wise.
    tan => mlx_tan;
    /// Hyperbolic sine, element-wise.
    sinh => mlx_sinh;
    /// Hyperbolic cosine, element-wise.
    cosh => mlx_cosh;
    /// Hyperbolic tangent, element-wise.
    tanh => mlx_tanh;
    /// Inverse sine (radians), element-wise.
    arcsin => mlx_arcsin;
    /// Inverse cosine (radians), element-wise.
    arccos => mlx_arccos;
    /// Inverse tangent (radians), element-wise.
    arctan => mlx_arctan;
    /// Inverse hyperbolic sine, element-wise.
    arcsinh => mlx_arcsinh;
    /// Inverse hyperbolic cosine, element-wise.
    arccosh => mlx_arccosh;
    /// Inverse hyperbolic tangent, element-wise.
    arctanh => mlx_arctanh;
    /// Radians to degrees, element-wise.
    degrees => mlx_degrees;
    /// Degrees to radians, element-wise.
    radians => mlx_radians;
    /// The smallest integer not below `a`, element-wise (same dtype).
    ceil => mlx_ceil;
    /// The largest integer not above `a`, element-wise (same dtype).
    floor => mlx_floor;
    /// `a` rounded toward zero, element-wise (same dtype).
    trunc => mlx_trunc;
    /// The Gauss error function, element-wise.
    erf => mlx_erf;
    /// The inverse of [`erf`], element-wise.
    erfinv => mlx_erfinv;
    /// The logistic function `1 / (1 + e^-a)`, element-wise.
    sigmoid => mlx_sigmoid;
    /// `-1`, `0` or `1` by the sign of `a`, element-wise.
    sign => mlx_sign;
    /// `1 / a`, element-wise.
    reciprocal => mlx_reciprocal;
    /// `1 / sqrt(a)`, element-wise.
    rsqrt => mlx_rsqrt;
    /// The real part, element-wise (the values themselves for real inputs).
    real => mlx_real;
    /// The imaginary part, element-wise (zeros for real inputs).
    imag => mlx_imag;
    /// The complex conjugate, element-wise (the values themselves for real inputs).
    conjugate => mlx_conjugate;
    /// The same values, with gradients blocked: transforms treat the result as a constant.
    stop_gradient => mlx_stop_gradient;
}

/// `a` rounded to `decimals` decimal places, halves to even (`decimals` may be negative:
/// `-1` rounds to tens). Integer inputs are returned unchanged when `decimals >= 0`.
#[track_caller]
pub fn round(a: &Array, decimals: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_round(res, a.as_raw(), decimals, s) })
}

/// `a` limited to `[a_min, a_max]`, element-wise with broadcasting; `None` leaves that
/// side open.
///
/// Fails if both bounds are `None`.
#[track_caller]
pub fn clip(a: &Array, a_min: Option<&Array>, a_max: Option<&Array>) -> Result<Array> {
    // mlx-c reads a handle with a null `ctx` as "no bound".
    let raw_or_null = |x: Option<&Array>| {
        x.map_or(
            sys::mlx_array {
                ctx: std::ptr::null_mut(),
            },
            Array::as_raw,
        )
    };
    let (lo, hi) = (raw_or_null(a_min), raw_or_null(a_max));
    stream_op(|res, s| unsafe { sys::mlx_clip(res, a.as_raw(), lo, hi, s) })
}

/// `a` with NaN replaced by `nan`, `+inf` by `posinf` and `-inf` by `neginf`
/// (`None`: the largest / lowest finite value of `a`'s dtype). Non-floating inputs are
/// returned unchanged.
#[track_caller]
pub fn nan_to_num(a: &Array, nan: f32, posinf: Option<f32>, neginf: Option<f32>) -> Result<Array> {
    let optional = |v: Option<f32>| sys::mlx_optional_float {
        value: v.unwrap_or(0.0),
        has_value: v.is_some(),
    };
    let (pos, neg) = (optional(posinf), optional(neginf));
    stream_op(|res, s| unsafe { sys::mlx_nan_to_num(res, a.as_raw(), nan, pos, neg, s) })
}

array_methods! {
    /// `self` rounded to `decimals` decimal places: see [`round`].
    fn round(decimals: i32);
    /// `self` limited to `[a_min, a_max]`: see [`clip`].
    fn clip(a_min: Option<&Array>, a_max: Option<&Array>);
    /// `self` with NaN and infinities replaced: see [`nan_to_num`].
    fn nan_to_num(nan: f32, posinf: Option<f32>, neginf: Option<f32>);
}
