//! Optimizers that train a [`Module`] from its gradients: Python's `mlx.optimizers`.
//!
//! - [`Optimizer`]: the trait (`update` a model from the gradients of
//!   [`nn::value_and_grad`](crate::nn::value_and_grad), or `apply_gradients` to a
//!   [`ParamMap`]); its whole state is arrays ([`Optimizer::state`]), so it saves and
//!   loads with [`io`](crate::io) and runs inside [`compile`](crate::transforms::compile).
//! - [`Sgd`] (momentum, weight decay, dampening, Nesterov), [`Adam`], [`AdamW`],
//!   [`Lion`]: each with an options struct that has Python's defaults.
//! - Learning-rate [`Schedule`]s: [`cosine_decay`], [`linear_schedule`], [`step_decay`],
//!   [`exponential_decay`], [`join_schedules`].
//! - [`clip_grad_norm`].
//!
//! A training loop:
//!
//! ```
//! use mlx_rs::nn::{self, Linear, Module, UnaryModule};
//! use mlx_rs::optimizers::{cosine_decay, join_schedules, linear_schedule, AdamW, Optimizer};
//! use mlx_rs::{ops, random, Dtype};
//!
//! let mut model = Linear::new(4, 1, true)?;
//! let x = random::normal(&[16, 4], Dtype::Float32, 0.0, 1.0, None)?;
//! let y = x.sum_axes(&[1], true)?; // learn y = x₀ + x₁ + x₂ + x₃
//! let lr = join_schedules(vec![linear_schedule(0.0, 0.1, 10)?, cosine_decay(0.1, 90, 0.0)?], &[10])?;
//! let mut opt = AdamW::new(lr)?;
//! let mut first = None;
//! for _ in 0..100 {
//!     let (loss, grads) = nn::value_and_grad(&mut model, |m| {
//!         m.forward(&x)?.subtract(&y)?.square()?.mean(false)
//!     })?;
//!     opt.update(&mut model, &grads)?;
//!     let mut all: Vec<_> = model.parameters()?.into_values().collect();
//!     all.extend(opt.state().into_values());
//!     mlx_rs::eval(&all)?;
//!     first.get_or_insert(loss.item::<f32>()?);
//! }
//! let loss = model.forward(&x)?.subtract(&y)?.square()?.mean(false)?.item::<f32>()?;
//! assert!(loss < first.unwrap() / 10.0);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # Checks
//!
//! Options out of range are an error when the optimizer is made (a negative learning
//! rate, betas outside [0, 1), a negative momentum, Nesterov without momentum, …).
//! Gradients must match the parameters exactly (same keys, shapes and dtypes): otherwise
//! the update is an error that names the key, and neither the model nor the optimizer
//! changes.
//!
//! # Compiling a training step
//!
//! Pass the model's parameters and the optimizer's state *in* to the compiled function
//! and return the new ones (captured arrays would be frozen at the first trace; see
//! [`transforms`](crate::transforms#captured-arrays-are-constants)). Call
//! [`Optimizer::init`] first so that the state has all its arrays.
//!
//! ```
//! use mlx_rs::nn::{self, Linear, Module, ParamMap, UnaryModule, UpdateMode};
//! use mlx_rs::optimizers::{Optimizer, Sgd, SgdOptions};
//! use mlx_rs::transforms::compile_with_state;
//! use mlx_rs::{ops, Array, Dtype};
//! use std::cell::RefCell;
//!
//! let model = RefCell::new(Linear::new(3, 1, true)?);
//! let opt = RefCell::new(Sgd::with_options(0.1, SgdOptions { momentum: 0.9, ..Default::default() })?);
//! opt.borrow_mut().init(&model.borrow().trainable_parameters()?)?;
//! let param_keys: Vec<String> = model.borrow().parameters()?.into_keys().collect();
//! let state_keys: Vec<String> = opt.borrow().state().into_keys().collect();
//! let zip = |keys: &[String], values: &[Array]| -> ParamMap {
//!     keys.iter().cloned().zip(values.iter().cloned()).collect()
//! };
//!
//! // state = parameters then optimizer state; inputs = [x]; returns [loss, state...]
//! let step = compile_with_state(|state: &[Array], inputs: &[Array]| {
//!     let (m, o) = (&mut *model.borrow_mut(), &mut *opt.borrow_mut());
//!     m.update(&zip(&param_keys, &state[..param_keys.len()]), UpdateMode::Strict)?;
//!     o.set_state(&zip(&state_keys, &state[param_keys.len()..]))?;
//!     let (loss, grads) = nn::value_and_grad(m, |m| m.forward(&inputs[0])?.square()?.mean(false))?;
//!     o.update(m, &grads)?;
//!     let mut out = vec![loss];
//!     out.extend(m.parameters()?.into_values());
//!     out.extend(o.state().into_values());
//!     Ok(out)
//! }, false)?;
//!
//! let x = ops::ones(&[4, 3], Dtype::Float32)?;
//! let mut state: Vec<Array> = model.borrow().parameters()?.into_values().collect();
//! state.extend(opt.borrow().state().into_values());
//! let mut losses = Vec::new();
//! for _ in 0..3 {
//!     let mut out = step.call(&state, &[&x])?;
//!     state = out.split_off(1);
//!     losses.push(out[0].item::<f32>()?);
//! }
//! assert!(losses[2] < losses[0]);
//! assert_eq!(state.len(), param_keys.len() + state_keys.len());
//! // put the trained values back into the model and the optimizer
//! model.borrow_mut().update(&zip(&param_keys, &state[..param_keys.len()]), UpdateMode::Strict)?;
//! opt.borrow_mut().set_state(&zip(&state_keys, &state[param_keys.len()..]))?;
//! assert_eq!(opt.borrow().state()["step"].item::<u64>()?, 3);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

mod adam;
mod clip;
mod lion;
mod schedules;
mod sgd;
mod state;

pub use adam::{Adam, AdamOptions, AdamW, AdamWOptions};
pub use clip::clip_grad_norm;
pub use lion::{Lion, LionOptions};
pub use schedules::{
    cosine_decay, exponential_decay, join_schedules, linear_schedule, step_decay, Schedule,
};
pub use sgd::{Sgd, SgdOptions};

use crate::nn::{Module, ParamMap, UpdateMode};
use crate::{Array, Error, Result};

/// A learning rate: a constant, or a [`Schedule`] evaluated at each update.
///
/// Optimizers take `impl Into<LearningRate>`: a number (`1e-3`) or a schedule.
#[derive(Debug, Clone)]
pub enum LearningRate {
    /// The same rate at every step.
    Constant(f64),
    /// A rate that depends on the step count.
    Schedule(Schedule),
}

impl From<f64> for LearningRate {
    fn from(lr: f64) -> Self {
        LearningRate::Constant(lr)
    }
}

impl From<f32> for LearningRate {
    fn from(lr: f32) -> Self {
        LearningRate::Constant(lr as f64)
    }
}

impl From<Schedule> for LearningRate {
    fn from(s: Schedule) -> Self {
        LearningRate::Schedule(s)
    }
}

/// An optimizer: turns gradients into new parameters, keeping its own state (step count,
/// learning rate, per-parameter averages) as arrays. Python's `mlx.optimizers.Optimizer`.
///
/// The state of a parameter is made (zeros) at the first update that sees it, as in
/// Python, or by [`Optimizer::init`]. The trait is object-safe: a `Box<dyn Optimizer>`
/// can hold any of them.
///
/// State round trip through a safetensors file (the keys are Python's
/// `tree_flatten(optimizer.state)`):
///
/// ```
/// use mlx_rs::nn::ParamMap;
/// use mlx_rs::optimizers::{Adam, Optimizer};
/// use mlx_rs::{io, Array};
///
/// let mut opt: Box<dyn Optimizer> = Box::new(Adam::new(1e-3)?);
/// let params = ParamMap::from([("layer.w".to_string(), Array::from_slice(&[1.0f32, 2.0], &[2])?)]);
/// let grads = ParamMap::from([("layer.w".to_string(), Array::from_slice(&[0.5f32, -0.5], &[2])?)]);
/// opt.apply_gradients(&grads, &params)?;
/// let keys: Vec<String> = opt.state().into_keys().collect();
/// assert_eq!(keys, ["layer.w.m", "layer.w.v", "learning_rate", "step"]);
///
/// let bytes = io::save_safetensors_writer(&opt.state(), [("format", "mlx")])?;
/// let mut resumed = Adam::new(1e-3)?;
/// resumed.set_state(&io::load_safetensors_reader(bytes)?.arrays.into_iter().collect())?;
/// assert_eq!(resumed.state()["step"].item::<u64>()?, 1);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub trait Optimizer {
    /// Makes the state of every parameter of `params` that has none yet (zeros); the
    /// first update does it too. Useful to have the full state before compiling a step.
    fn init(&mut self, params: &ParamMap) -> Result<()>;

    /// Applies one update: returns the new value of every parameter of `params` given
    /// its gradient in `grads`, and advances the state.
    ///
    /// `grads` and `params` must have the same keys, and each gradient the shape and
    /// dtype of its parameter; otherwise it is an error naming the key, and the state is
    /// unchanged.
    fn apply_gradients(&mut self, grads: &ParamMap, params: &ParamMap) -> Result<ParamMap>;

    /// The state as flat arrays: `step` (`uint64`), `learning_rate` (`float32`) and the
    /// arrays of each parameter (`<param>.m`, `<param>.v`, … as the optimizer keeps).
    fn state(&self) -> ParamMap;

    /// Replaces the state by one from [`Optimizer::state`] (e.g. loaded from a file).
    /// `step` and `learning_rate` are required; per-parameter arrays may be absent (they
    /// are made at the next update). Unknown keys are an error, and nothing changes on
    /// error. (A learning-rate schedule still sets the rate before each update.)
    fn set_state(&mut self, state: &ParamMap) -> Result<()>;

    /// Updates `model` from `grads` (the gradients of its trainable parameters, as
    /// [`nn::value_and_grad`](crate::nn::value_and_grad) returns them). On error (keys
    /// that are not the trainable parameters, another shape or dtype) neither the model
    /// nor the optimizer changes.
    fn update(&mut self, model: &mut dyn Module, grads: &ParamMap) -> Result<()> {
        let params = model.trainable_parameters()?;
        let saved = self.state();
        let new = self.apply_gradients(grads, &params)?;
        if let Err(e) = model.update(&new, UpdateMode::Partial) {
            self.set_state(&saved)?;
            return Err(e);
        }
        Ok(())
    }

    /// The learning rate of the last update (or of the first, before any).
    fn learning_rate(&self) -> Result<Array> {
        self.state()
            .remove("learning_rate")
            .ok_or_else(|| Error::InvalidArgument("the optimizer has no learning rate".into()))
    }
}
