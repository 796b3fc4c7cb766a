//! Function transformations: gradients ([`grad`], [`value_and_grad`], [`vjp`], [`jvp`]),
//! vectorization ([`vmap`]), compilation ([`compile`]), checkpointing and functions with
//! user-defined derivatives ([`custom_vjp`], [`CustomFunction`]).
//!
//! A transformed function is a function of arrays: `FnMut(&[Array]) -> Result<Vec<Array>>`
//! (or a [`Closure`] made from one). Transforms return [`Closure`]s, so they compose:
//!
//! ```
//! use mlx_rs::{transforms::{grad, IntoClosure}, Array};
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

pub mod closure;
mod compile;
mod custom;
mod grad;
mod vmap;

pub use closure::{Closure, IntoClosure, JvpFn, KwargsClosure, ValueAndGrad, VjpFn, VmapFn};
pub use compile::{
    compile, compile_clear_cache, compile_erase, compile_with_id, compile_with_state,
    disable_compile, enable_compile, set_compile_mode, CompileMode, CompiledWithState,
};
pub use custom::{checkpoint, custom_vjp, CustomFunction};
pub use grad::{grad, jvp, value_and_grad, vjp};
pub use vmap::vmap;
