//! Operations on arrays, as free functions and as [`Array`] methods.
//!
//! Every op is lazy (it adds a node to the graph), runs on the thread's current stream
//! (see [`with_stream`](crate::with_stream)), and returns `Result`: MLX's complaints about
//! shapes, axes and dtypes come back as [`Error::Mlx`](crate::Error::Mlx).
//!
//! # Inputs MLX would crash on
//!
//! MLX's kernels trust some inputs that its checks let through; the ops here make each
//! such case a defined result or an `Err` (the full list, with what each case gives, is
//! `docs/bad-input.md`):
//!
//! - index values outside their axis are bounded lazily (see [`take`]);
//! - integer division by zero gives 0, and `MIN / -1` wraps (see [`floor_divide`]);
//! - zero-size inputs give the empty (or all-zero) result their shapes define where MLX's
//!   kernels would divide by zero: sorts, scans, the `linalg` factorisations, quantized,
//!   gathered and segmented products, convolutions (a kernel of size 0 is an error);
//! - shapes are checked where they enter: a dimension below 0 (other than one `-1` to
//!   infer in [`reshape`] and [`unflatten`]) is an error that names it.

use crate::raw::stream_op;
use crate::{Array, Dtype, Result};
use mlx_sys as sys;

/// Defines free functions over one array plus the matching `Array` methods.
macro_rules! unary_ops {
    ($($(#[$doc:meta])* $name:ident => $ffi:ident;)*) => {
        $(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(a: &$crate::Array) -> $crate::Result<$crate::Array> {
                $crate::raw::stream_op(|res, s| unsafe { mlx_sys::$ffi(res, a.as_raw(), s) })
            }
        )*
        impl $crate::Array {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $name(&self) -> $crate::Result<$crate::Array> {
                    $name(self)
                }
            )*
        }
    };
}

/// Defines free functions over two arrays plus the matching `Array` methods.
macro_rules! binary_ops {
    ($($(#[$doc:meta])* $name:ident => $ffi:ident;)*) => {
        $(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(a: &$crate::Array, b: &$crate::Array) -> $crate::Result<$crate::Array> {
                $crate::raw::stream_op(|res, s| unsafe { mlx_sys::$ffi(res, a.as_raw(), b.as_raw(), s) })
            }
        )*
        impl $crate::Array {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $name(&self, other: &$crate::Array) -> $crate::Result<$crate::Array> {
                    $name(self, other)
                }
            )*
        }
    };
}

/// Defines `Array` methods that call the free function of the same name with `self` as
/// its first argument (`fn sum_axis(axis: i32, keepdims: bool);` gives
/// `a.sum_axis(axis, keepdims)` calling `sum_axis(&a, axis, keepdims)`). The return type is
/// `Result<Array>` unless given (`-> (Array, Array)` gives `Result<(Array, Array)>`).
macro_rules! array_methods {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        impl $crate::Array {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $name(&self, $($arg: $ty),*) -> array_methods!(@ret $($ret)?) {
                    $name(self, $($arg),*)
                }
            )*
        }
    };
    (@ret) => { $crate::Result<$crate::Array> };
    (@ret $ret:ty) => { $crate::Result<$ret> };
}

mod arithmetic;
mod bounds;
mod comparison;
mod conv;
pub(crate) mod creation;
pub(crate) mod empty;
mod indexing;
mod logical;
mod math;
mod products;
mod quantized;
mod reduction;
mod shape;
mod sort;

pub use arithmetic::*;
pub use comparison::*;
pub use conv::*;
pub use creation::*;
pub use indexing::*;
pub use logical::*;
pub use math::*;
pub use products::*;
pub use quantized::*;
pub use reduction::*;
pub use shape::*;
pub use sort::*;

/// The same values as `dtype` (lazy).
#[track_caller]
pub fn astype(a: &Array, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_astype(res, a.as_raw(), dtype.to_raw(), s) })
}

/// A dense copy of `a` (row-major, or column-major when `allow_col_major` and `a` already
/// is); returns `a`'s data unchanged when it is already dense.
#[track_caller]
pub fn contiguous(a: &Array, allow_col_major: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_contiguous(res, a.as_raw(), allow_col_major, s) })
}
