//! Neural-network layers and the module tree they live in: Python's `mlx.nn`.
//!
//! - [`Module`] (with `#[derive(Module)]`): a tree of named parameters ([`Param`]) and
//!   child modules; list, update with checks, freeze, train/eval, save and load.
//! - [`UnaryModule`]: one input, one output (`forward`).
//! - Layers: [`Linear`], [`QuantizedLinear`], [`Embedding`], [`QuantizedEmbedding`],
//!   [`RmsNorm`], [`LayerNorm`], [`Rope`], [`Conv1d`], [`Conv2d`], [`Dropout`],
//!   [`MultiHeadAttention`], and [`Sequential`] to chain them; swapping layers for their
//!   quantized forms in place with [`quantize`] ([`MaybeQuantized`]) and back with
//!   [`dequantize`].
//! - Activations ([`silu`], [`gelu`], [`relu`], [`swiglu`], …, compiled as in Python) and
//!   their layer forms ([`Relu`], [`Silu`], [`Gelu`], …).
//! - Losses: [`cross_entropy`], [`binary_cross_entropy`], [`mse_loss`], [`l1_loss`],
//!   [`nll_loss`].
//! - [`value_and_grad`]: the loss and its gradient with respect to a model's trainable
//!   parameters, for [`optimizers`](crate::optimizers).

mod activations;
mod attention;
mod containers;
mod convolution;
mod dropout;
mod embedding;
mod grad;
mod linear;
mod losses;
mod module;
mod normalization;
mod param;
mod quantize;
mod rope;

pub use activations::{
    gelu, gelu_approx, gelu_fast_approx, leaky_relu, relu, sigmoid, silu, softplus, swiglu, tanh,
    Gelu, GeluApprox, LeakyRelu, Relu, Sigmoid, Silu, Tanh,
};
pub use attention::{MultiHeadAttention, MultiHeadAttentionOptions};
pub use containers::Sequential;
pub use convolution::{Conv1d, Conv2d};
pub use dropout::Dropout;
pub use embedding::{Embedding, QuantizedEmbedding};
pub use grad::value_and_grad;
pub use linear::{Linear, QuantizedLinear};
pub use losses::{
    binary_cross_entropy, cross_entropy, l1_loss, mse_loss, nll_loss, BinaryCrossEntropyOptions,
    CrossEntropyOptions, Reduction,
};
/// Derives [`Module`] for a struct: every named field is part of the tree under its name
/// (see [`ModuleItem`]); `#[module(skip)]` leaves a field out, `#[module(rename = "key")]`
/// names it.
pub use mlx_rs_macros::Module;
pub use module::{
    Module, ModuleItem, ParamMap, QuantizeSlot, TrainingFlag, UnaryModule, UpdateMode,
    UpdateReport, Visitor, VisitorMut,
};
pub use normalization::{LayerNorm, LayerNormOptions, RmsNorm};
pub use param::{KeyPath, Param};
pub use quantize::{dequantize, quantize, MaybeQuantized, Quantizable};
pub use rope::Rope;
