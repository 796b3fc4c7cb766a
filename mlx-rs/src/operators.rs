//! `std::ops` operators (`+ - * / %`, unary `-`) for [`Array`]s and Rust scalars, and the
//! fallible `*_scalar` methods they share the scalar typing with.
//!
//! The rules (what panics, how scalars are typed) are documented once, on [`Scalar`];
//! each impl repeats the one-line panic condition and names its fallible form.

use crate::dtype::Element;
use crate::{ops, Array, Dtype, Error, Result};
use half::{bf16, f16};
use num_complex::Complex32;
use std::ops::{Add, Div, Mul, Neg, Rem, Sub};

mod sealed {
    /// A scalar's value before it is given a dtype.
    #[derive(Clone, Copy, Debug)]
    pub enum Value {
        Int(i64),
        Float(f64),
    }

    pub trait Sealed: Copy {
        fn value(self) -> Value;
    }
}
use sealed::Value;

/// A Rust number that combines with an [`Array`]: `f32`, `f64`, `i32`, `i64`.
///
/// # Operators
///
/// `+ - * / %` are implemented between `Array` and `&Array` in any mix, and between an
/// array (owned or borrowed) and a `Scalar` on either side (`&a + 1.0`, `2.0 * &a`,
/// `&a % 3`); unary `-` for `Array` and `&Array`. They are lazy like every op and call
/// [`ops::add`], [`ops::subtract`], [`ops::multiply`], [`ops::divide`],
/// [`ops::remainder`] and [`ops::negative`].
///
/// # Panics
///
/// Operators cannot return `Result`, so where the op would return `Err` they panic with
/// that error's message (MLX's own, e.g. `[broadcast_shapes] Shapes (2,3) and (4) cannot
/// be broadcast.`, followed by the caller's location). That happens when:
/// - the shapes do not broadcast;
/// - MLX rejects the dtype (e.g. `-` of a `bool` array);
/// - an integer scalar does not fit an integer array's dtype (`&u8_array + 300`).
///
/// Failures found only at evaluation (e.g. a device out of memory) surface when the
/// result is read, as `Err`, not as a panic. To handle errors, use the fallible forms:
/// [`ops::add`] / [`Array::add`] for two arrays and [`Array::add_scalar`] (and the other
/// `*_scalar` methods) for an array and a scalar. Where `std::ops::Add` (or `Sub`, …) is
/// imported, Rust resolves `a.add(&b)` on an *owned* `a` to the panicking operator
/// method; there, write `ops::add(&a, &b)`.
///
/// # Scalar typing
///
/// Scalars are *weakly typed*, as in Python MLX: they do not widen the array's dtype.
/// - A float scalar with a floating or complex array takes the array's dtype (a
///   `bfloat16` array plus `1.0` stays `bfloat16`); with an integer or `bool` array the
///   result is `float32`.
/// - An integer scalar with a floating, complex or integer array takes the array's dtype
///   (`int8` stays `int8`; it is an error if the value does not fit); with a `bool`
///   array it is `int32`.
///
/// Division of integers is true division and gives `float32` (`&int_array / 2`).
///
/// With the scalar on the left there is one impl per scalar type, so an unsuffixed literal
/// there needs a suffix when the result's type must be known at once:
/// `(2.0f32 * &a).dtype()` (with the array on the left, `(&a * 2.0).dtype()` works).
///
/// ```
/// use mlx_rs::{Array, Dtype};
/// let a = Array::from_slice(&[1.0f32, 2.0], &[2])?.astype(Dtype::Bfloat16)?;
/// assert_eq!((&a * 2.0 + 1.0).dtype(), Dtype::Bfloat16);
/// let i = Array::from_slice(&[1i32, 2], &[2])?;
/// assert_eq!((&i + 0.5).to_vec::<f32>()?, vec![1.5, 2.5]);
/// assert!(a.add(&Array::from_slice(&[1.0f32; 3], &[3])?).is_err()); // fallible form
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub trait Scalar: sealed::Sealed {}

macro_rules! scalar {
    ($($t:ty => $variant:ident as $as:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn value(self) -> Value {
                Value::$variant(self as $as)
            }
        }
        impl Scalar for $t {}
    )*};
}
scalar!(f32 => Float as f64, f64 => Float as f64, i32 => Int as i64, i64 => Int as i64);

/// A 0-d array holding `value`, typed by the weak-typing rules for combining it with an
/// array of dtype `like` (see [`Scalar`]).
pub(crate) fn weak_scalar<T: Scalar>(value: T, like: Dtype) -> Result<Array> {
    match value.value() {
        Value::Float(x) => Ok(float_scalar(x, like)),
        Value::Int(x) => match like {
            Dtype::Bool | Dtype::Int32 => fit::<i32>(x, Dtype::Int32),
            Dtype::Int8 => fit::<i8>(x, like),
            Dtype::Int16 => fit::<i16>(x, like),
            Dtype::Int64 => fit::<i64>(x, like),
            Dtype::Uint8 => fit::<u8>(x, like),
            Dtype::Uint16 => fit::<u16>(x, like),
            Dtype::Uint32 => fit::<u32>(x, like),
            Dtype::Uint64 => fit::<u64>(x, like),
            _ => Ok(float_scalar(x as f64, like)),
        },
    }
}

fn float_scalar(x: f64, like: Dtype) -> Array {
    match like {
        Dtype::Float16 => Array::scalar(f16::from_f64(x)),
        Dtype::Bfloat16 => Array::scalar(bf16::from_f64(x)),
        Dtype::Float64 => Array::scalar(x),
        Dtype::Complex64 => Array::scalar(Complex32::new(x as f32, 0.0)),
        _ => Array::scalar(x as f32),
    }
}

fn fit<T: Element + TryFrom<i64>>(x: i64, dtype: Dtype) -> Result<Array> {
    T::try_from(x).map(Array::scalar).map_err(|_| {
        Error::InvalidArgument(format!(
            "converting {x} to {dtype} would result in overflow"
        ))
    })
}

/// Turns an op's `Err` into the operators' documented panic.
#[track_caller]
fn or_panic(result: Result<Array>) -> Array {
    match result {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

/// Array-with-scalar forms of the binary ops that return `Result` instead of panicking.
impl Array {
    /// `self + value`, with `value` typed as described on [`Scalar`].
    ///
    /// Fails if an integer `value` does not fit `self`'s integer dtype.
    #[track_caller]
    pub fn add_scalar<T: Scalar>(&self, value: T) -> Result<Array> {
        ops::add(self, &weak_scalar(value, self.dtype())?)
    }

    /// `self - value`, with `value` typed as described on [`Scalar`].
    ///
    /// Fails if an integer `value` does not fit `self`'s integer dtype.
    #[track_caller]
    pub fn subtract_scalar<T: Scalar>(&self, value: T) -> Result<Array> {
        ops::subtract(self, &weak_scalar(value, self.dtype())?)
    }

    /// `self * value`, with `value` typed as described on [`Scalar`].
    ///
    /// Fails if an integer `value` does not fit `self`'s integer dtype.
    #[track_caller]
    pub fn multiply_scalar<T: Scalar>(&self, value: T) -> Result<Array> {
        ops::multiply(self, &weak_scalar(value, self.dtype())?)
    }

    /// `self / value` (true division), with `value` typed as described on [`Scalar`].
    ///
    /// Fails if an integer `value` does not fit `self`'s integer dtype.
    #[track_caller]
    pub fn divide_scalar<T: Scalar>(&self, value: T) -> Result<Array> {
        ops::divide(self, &weak_scalar(value, self.dtype())?)
    }

    /// `self % value` (sign of `value`, like Python), with `value` typed as described on
    /// [`Scalar`].
    ///
    /// Fails if an integer `value` does not fit `self`'s integer dtype.
    #[track_caller]
    pub fn remainder_scalar<T: Scalar>(&self, value: T) -> Result<Array> {
        ops::remainder(self, &weak_scalar(value, self.dtype())?)
    }
}

/// Implements one binary operator for every mix of `Array` and `&Array`.
macro_rules! array_operator {
    ($Trait:ident, $method:ident, $op:ident) => {
        array_operator!(@impl $Trait, $method, $op, &Array, &Array);
        array_operator!(@impl $Trait, $method, $op, &Array, Array);
        array_operator!(@impl $Trait, $method, $op, Array, &Array);
        array_operator!(@impl $Trait, $method, $op, Array, Array);
    };
    (@impl $Trait:ident, $method:ident, $op:ident, $L:ty, $R:ty) => {
        #[doc = concat!("Calls [`ops::", stringify!($op), "`].")]
        ///
        /// # Panics
        ///
        /// With MLX's message where the op returns `Err` (e.g. shapes that do not
        /// broadcast): see [`Scalar`] for the rules and use
        #[doc = concat!("[`ops::", stringify!($op), "`] to get a `Result` instead.")]
        impl $Trait<$R> for $L {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: $R) -> Array {
                or_panic(ops::$op(&self, &rhs))
            }
        }
    };
}

/// Implements one binary operator between arrays and scalars: generic over [`Scalar`] with
/// the array on the left (so `(&a + 1.0).sum(false)` infers), per type with the scalar on
/// the left (the orphan rule allows no generic impl there).
macro_rules! scalar_operator {
    ($Trait:ident, $method:ident, $op:ident, $fallible:ident; $($S:ty),*) => {
        scalar_operator!(@array_lhs $Trait, $method, $fallible, &Array);
        scalar_operator!(@array_lhs $Trait, $method, $fallible, Array);
        $(
            scalar_operator!(@scalar_lhs $Trait, $method, $op, $S, &Array);
            scalar_operator!(@scalar_lhs $Trait, $method, $op, $S, Array);
        )*
    };
    (@array_lhs $Trait:ident, $method:ident, $fallible:ident, $A:ty) => {
        #[doc = concat!("Calls [`Array::", stringify!($fallible), "`]; the scalar is typed as described on [`Scalar`].")]
        ///
        /// # Panics
        ///
        /// Where that returns `Err` (an integer scalar that does not fit the array's
        /// integer dtype, or a dtype MLX rejects), with its message.
        impl<T: Scalar> $Trait<T> for $A {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: T) -> Array {
                or_panic(self.$fallible(rhs))
            }
        }
    };
    (@scalar_lhs $Trait:ident, $method:ident, $op:ident, $S:ty, $A:ty) => {
        #[doc = concat!("Calls [`ops::", stringify!($op), "`] with the scalar first, typed as described on [`Scalar`].")]
        ///
        /// # Panics
        ///
        /// Where that returns `Err` (an integer scalar that does not fit the array's
        /// integer dtype, or a dtype MLX rejects), with its message.
        impl $Trait<$A> for $S {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: $A) -> Array {
                let lhs = or_panic(weak_scalar(self, rhs.dtype()));
                or_panic(ops::$op(&lhs, &rhs))
            }
        }
    };
}

array_operator!(Add, add, add);
array_operator!(Sub, sub, subtract);
array_operator!(Mul, mul, multiply);
array_operator!(Div, div, divide);
array_operator!(Rem, rem, remainder);

scalar_operator!(Add, add, add, add_scalar; f32, f64, i32, i64);
scalar_operator!(Sub, sub, subtract, subtract_scalar; f32, f64, i32, i64);
scalar_operator!(Mul, mul, multiply, multiply_scalar; f32, f64, i32, i64);
scalar_operator!(Div, div, divide, divide_scalar; f32, f64, i32, i64);
scalar_operator!(Rem, rem, remainder, remainder_scalar; f32, f64, i32, i64);

/// Calls [`ops::negative`].
///
/// # Panics
///
/// With MLX's message where that returns `Err` (a `bool` array): see [`Scalar`].
impl Neg for &Array {
    type Output = Array;
    #[track_caller]
    fn neg(self) -> Array {
        or_panic(ops::negative(self))
    }
}

/// Calls [`ops::negative`].
///
/// # Panics
///
/// With MLX's message where that returns `Err` (a `bool` array): see [`Scalar`].
impl Neg for Array {
    type Output = Array;
    #[track_caller]
    fn neg(self) -> Array {
        or_panic(ops::negative(&self))
    }
}
