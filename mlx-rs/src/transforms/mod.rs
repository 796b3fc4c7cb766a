//! Function transformations: gradients ([`grad`], [`value_and_grad`], [`vjp`], [`jvp`]),
//! vectorization ([`vmap`]), compilation ([`compile`]), checkpointing and functions with
//! user-defined derivatives ([`custom_vjp`], [`CustomFunction`]).
//!
//! A transformed function is a function of arrays: `FnMut(&[Array]) -> Result<Vec<Array>>`
//! (or a [`Closure`] made from one). Transforms return [`Closure`]s, so they compose:
//!
//! ```
//! use mlx_rs::{transforms::grad, Array};
//! // f(x) = x³ summed; f'(x) = 3x²; f''(x) = 6x
//! let cube = |x: &[Array]| -> mlx_rs::Result<Vec<Array>> {
//!     let y = x[0].multiply(&x[0])?.multiply(&x[0])?;
//!     Ok(vec![y])
//! };
//! let d2 = grad(grad(cube, &[0])?, &[0])?;
//! let x = Array::from_slice(&[2.0f32], &[])?;
//! assert_eq!(d2.call(&[x])?[0].item::<f32>()?, 12.0);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! A panic or an `Err` inside a function that MLX calls comes back out of the transform
//! call (the panic resumes there; the error is returned unchanged): see [`closure`].
//!
//! # Errors of other crates inside transformed functions
//!
//! The functions return `mlx_rs::Result`. A crate with its own error type (a model's)
//! implements `From<its error> for mlx_rs::Error`, wrapping it in
//! [`Error::External`](crate::Error::External) with [`Error::external`](crate::Error::external);
//! then `?` on its own results works inside the closure, and the error comes back out of
//! the transform as itself ([`Error::downcast_external`](crate::Error::downcast_external)).
//! The example at [`Error::external`](crate::Error::external) shows both directions.
//!
//! # Captured arrays are constants
//!
//! MLX traces a compiled function once per input signature (shapes and dtypes; only the
//! number of dimensions when `shapeless`), with placeholder *inputs*. Any array the
//! function reaches some other way — captured by the closure, read from a `RefCell`, a
//! global — is baked into the traced graph as a constant: later calls keep using the
//! value it had at the first trace, even if you replace it. Pass everything that can
//! change as an argument: model parameters, optimizer state, random keys. To keep the
//! call site readable when there is a lot of it, use [`compile_with_state`], which takes
//! the state arrays and the inputs as two separate lists.

pub mod closure;
mod compile;
mod custom;
mod grad;
mod vmap;

pub use closure::{Closure, IntoClosure, KwargsClosure, ValueAndGrad};
pub use compile::{
    compile, compile_clear_cache, compile_erase, compile_with_id, compile_with_state,
    disable_compile, enable_compile, set_compile_mode, CompileMode, CompiledWithState,
};
pub use custom::{checkpoint, custom_vjp, CustomFunction};
pub use custom::{JvpFn, VjpFn, VmapFn};
pub use grad::{grad, jvp, value_and_grad, vjp};
pub use vmap::vmap;
