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

use std::cell::Cell;

thread_local! {
    /// How many transforms this thread is inside ([`in_transform`]).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Whether this thread is inside a transform that mlx-rs started: [`vjp`], [`jvp`],
/// [`value_and_grad`] (so [`grad`] and `nn::value_and_grad`) or [`vmap`] is running a
/// function (MLX calls it on the calling thread).
///
/// The arrays such a function sees are traced: MLX differentiates or vectorizes the ops
/// applied to them. A value computed from them anywhere else — read on the host,
/// computed by other code, handed back to MLX as a new array — carries no derivative and
/// no batch axis, so a function with such a fast path (a product done outside MLX) takes
/// MLX's ops when this says yes. (A [`compile`]d function is traced with placeholder
/// inputs that cannot be evaluated, which such a path finds out by itself.)
///
/// ```
/// use mlx_rs::{transforms::{grad, in_transform}, Array};
/// assert!(!in_transform());
/// let f = |x: &[Array]| {
///     assert!(in_transform());
///     Ok(vec![x[0].square()?])
/// };
/// grad(f, &[0])?.call(&[Array::scalar(3.0f32)])?;
/// assert!(!in_transform());
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn in_transform() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Runs `f` (a call into an MLX transform) with [`in_transform`] saying yes.
pub(crate) fn transforming<R>(f: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let _ = DEPTH.try_with(|d| d.set(d.get() - 1));
        }
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _leave = Leave;
    f()
}
