//! [`Sgd`]: stochastic gradient descent with momentum, weight decay, dampening and
//! Nesterov momentum.

use super::state::{check_non_negative, Core};
use super::{LearningRate, Optimizer};
use crate::nn::ParamMap;
use crate::{Error, Result};

/// The options of [`Sgd`] besides the learning rate (Python's defaults: all off).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SgdOptions {
    /// The momentum strength μ (≥ 0; 0 is plain SGD).
    pub momentum: f64,
    /// The weight decay (an L2 penalty added to the gradient), ≥ 0.
    pub weight_decay: f64,
    /// Dampening τ of the momentum, in [0, 1].
    pub dampening: f64,
    /// Nesterov momentum (needs a momentum and no dampening).
    pub nesterov: bool,
}

/// Stochastic gradient descent: Python's `mlx.optimizers.SGD`.
///
/// With gradient `g` (plus `weight_decay · w` if set), momentum μ and dampening τ:
/// `v ← μ v + (1 − τ) g`, then `w ← w − λ v` (or `w ← w − λ (g + μ v)` with Nesterov).
/// Without momentum, `w ← w − λ g`. State: `<param>.v` (kept even without momentum, as
/// in Python).
///
/// ```
/// use mlx_rs::nn::{self, Linear, Module, UnaryModule};
/// use mlx_rs::optimizers::{Optimizer, Sgd, SgdOptions};
/// use mlx_rs::{ops, Dtype};
///
/// let mut model = Linear::new(3, 1, true)?;
/// let x = ops::ones(&[4, 3], Dtype::Float32)?;
/// let mut opt = Sgd::with_options(0.1, SgdOptions { momentum: 0.9, ..Default::default() })?;
/// let mut losses = Vec::new();
/// for _ in 0..5 {
///     let (loss, grads) = nn::value_and_grad(&mut model, |m| m.forward(&x)?.square()?.mean(false))?;
///     opt.update(&mut model, &grads)?;
///     losses.push(loss.item::<f32>()?);
/// }
/// assert!(losses[4] < losses[0]);
/// assert!(opt.state().contains_key("weight.v"));
/// // Nesterov momentum needs a momentum, as in Python:
/// assert!(Sgd::with_options(0.1, SgdOptions { nesterov: true, ..Default::default() }).is_err());
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sgd {
    options: SgdOptions,
    core: Core,
}

impl Sgd {
    /// Plain SGD with learning rate `learning_rate` (a number or a
    /// [`Schedule`](super::Schedule)).
    pub fn new(learning_rate: impl Into<LearningRate>) -> Result<Sgd> {
        Sgd::with_options(learning_rate, SgdOptions::default())
    }

    /// SGD with `options`; an error if an option is out of range (negative learning rate,
    /// momentum or weight decay, dampening outside [0, 1], Nesterov without momentum or
    /// with dampening).
    pub fn with_options(
        learning_rate: impl Into<LearningRate>,
        options: SgdOptions,
    ) -> Result<Sgd> {
        check_non_negative("SGD", "momentum", options.momentum)?;
        check_non_negative("SGD", "weight decay", options.weight_decay)?;
        if !(0.0..=1.0).contains(&options.dampening) {
            return Err(Error::InvalidArgument(format!(
                "SGD: the dampening must be in [0, 1], got {}",
                options.dampening
            )));
        }
        if options.nesterov && (options.momentum <= 0.0 || options.dampening != 0.0) {
            return Err(Error::InvalidArgument(
                "SGD: Nesterov momentum requires a momentum and zero dampening".into(),
            ));
        }
        Ok(Sgd {
            options,
            core: Core::new("SGD", learning_rate.into(), &["v"])?,
        })
    }

    /// The options.
    pub fn options(&self) -> &SgdOptions {
        &self.options
    }
}

impl Optimizer for Sgd {
    fn init(&mut self, params: &ParamMap) -> Result<()> {
        self.core.init(params)
    }

    fn apply_gradients(&mut self, grads: &ParamMap, params: &ParamMap) -> Result<ParamMap> {
        let o = self.options;
        self.core.apply(grads, params, |g, w, state, step| {
            let g = if o.weight_decay != 0.0 {
                g.add(&w.multiply_scalar(o.weight_decay)?)?
            } else {
                g.clone()
            };
            if o.momentum <= 0.0 {
                return w.subtract(&step.learning_rate.multiply(&g)?);
            }
            let v = state[0].multiply_scalar(o.momentum)?;
            let v = if o.dampening > 0.0 {
                v.add(&g.multiply_scalar(1.0 - o.dampening)?)?
            } else {
                v.add(&g)?
            };
            let update = if o.nesterov {
                g.add(&v.multiply_scalar(o.momentum)?)?
            } else {
                v.clone()
            };
            state[0] = v;
            w.subtract(&step.learning_rate.multiply(&update)?)
        })
    }

    fn state(&self) -> ParamMap {
        self.core.state()
    }

    fn set_state(&mut self, state: &ParamMap) -> Result<()> {
        self.core.set_state(state)
    }
}
