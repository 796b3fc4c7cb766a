//! Neural-network layers and the module tree they live in: Python's `mlx.nn`.
//!
//! - [`Module`] (with `#[derive(Module)]`): a tree of named parameters ([`Param`]) and
//!   child modules; list, update with checks, freeze, train/eval, save and load.
//! - [`UnaryModule`]: one input, one output (`forward`).
//! - Layers: [`Linear`], [`QuantizedLinear`], and swapping layers for their quantized forms
//!   in place with [`quantize`] ([`MaybeQuantized`]).
//! - [`value_and_grad`]: the loss and its gradient with respect to a model's trainable
//!   parameters, for [`optimizers`](crate::optimizers).

mod grad;
mod linear;
mod module;
mod param;
mod quantize;

pub use grad::value_and_grad;
pub use linear::{Linear, QuantizedLinear};
/// Derives [`Module`] for a struct: every named field is part of the tree under its name
/// (see [`ModuleItem`]); `#[module(skip)]` leaves a field out, `#[module(rename = "key")]`
/// names it.
pub use mlx_rs_macros::Module;
pub use module::{
    Module, ModuleItem, ParamMap, QuantizeSlot, TrainingFlag, UnaryModule, UpdateMode,
    UpdateReport, Visitor, VisitorMut,
};
pub use param::{KeyPath, Param};
pub use quantize::{quantize, resolved as resolved_quantization, MaybeQuantized, Quantizable};
