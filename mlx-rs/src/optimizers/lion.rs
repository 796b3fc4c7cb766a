//! [`Lion`]: sign-of-momentum updates.

use super::state::{blend, check_betas, check_non_negative, one_minus, Core};
use super::{LearningRate, Optimizer};
use crate::nn::ParamMap;
use crate::Result;

/// The options of [`Lion`] besides the learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LionOptions {
    /// `(β₁, β₂)`: the blend of momentum and gradient that gives the update direction,
    /// and the decay of the momentum; each in [0, 1). Default `(0.9, 0.99)`.
    pub betas: (f64, f64),
    /// The decoupled weight decay λ (≥ 0). Default `0`.
    pub weight_decay: f64,
}

impl Default for LionOptions {
    fn default() -> Self {
        LionOptions {
            betas: (0.9, 0.99),
            weight_decay: 0.0,
        }
    }
}

/// The Lion optimizer (Chen et al., 2023): Python's `mlx.optimizers.Lion`.
///
/// `c = β₁ m + (1 − β₁) g`, `m ← β₂ m + (1 − β₂) g`, `w ← w (1 − η λ) − η sign(c)`.
/// Every weight moves by exactly the learning rate (before decay), so Lion wants a
/// learning rate 3–10× smaller than AdamW's. State: `<param>.m`.
///
/// ```
/// use mlx_rs::nn::ParamMap;
/// use mlx_rs::optimizers::{Lion, Optimizer};
/// use mlx_rs::Array;
///
/// let mut opt = Lion::new(0.01)?;
/// let params = ParamMap::from([("w".to_string(), Array::from_slice(&[1.0f32, 1.0], &[2])?)]);
/// let grads = ParamMap::from([("w".to_string(), Array::from_slice(&[3.0f32, -1e-3], &[2])?)]);
/// let new = opt.apply_gradients(&grads, &params)?;
/// let w = new["w"].to_vec::<f32>()?; // each weight moved by 0.01, against the gradient's sign
/// assert!((w[0] - 0.99).abs() < 1e-6 && (w[1] - 1.01).abs() < 1e-6);
/// assert!(Lion::new(-0.01).is_err());
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lion {
    options: LionOptions,
    core: Core,
}

impl Lion {
    /// Lion with learning rate `learning_rate` (a number or a
    /// [`Schedule`](super::Schedule)) and the default options.
    pub fn new(learning_rate: impl Into<LearningRate>) -> Result<Lion> {
        Lion::with_options(learning_rate, LionOptions::default())
    }

    /// Lion with `options`; an error if a beta is outside [0, 1) or the learning rate or
    /// weight decay is negative.
    pub fn with_options(
        learning_rate: impl Into<LearningRate>,
        options: LionOptions,
    ) -> Result<Lion> {
        check_betas("Lion", options.betas)?;
        check_non_negative("Lion", "weight decay", options.weight_decay)?;
        Ok(Lion {
            options,
            core: Core::new("Lion", learning_rate.into(), &["m"])?,
        })
    }

    /// The options.
    pub fn options(&self) -> &LionOptions {
        &self.options
    }
}

impl Optimizer for Lion {
    fn init(&mut self, params: &ParamMap) -> Result<()> {
        self.core.init(params)
    }

    fn apply_gradients(&mut self, grads: &ParamMap, params: &ParamMap) -> Result<ParamMap> {
        let o = self.options;
        self.core.apply(grads, params, |g, w, state, step| {
            let (b1, b2) = o.betas;
            let lr = step.learning_rate;
            let direction = blend(&state[0], g, b1)?;
            state[0] = blend(&state[0], g, b2)?;
            let w = if o.weight_decay > 0.0 {
                one_minus(&lr.multiply_scalar(o.weight_decay)?)?.multiply(w)?
            } else {
                w.clone()
            };
            w.subtract(&lr.multiply(&direction.sign()?)?)
        })
    }

    fn state(&self) -> ParamMap {
        self.core.state()
    }

    fn set_state(&mut self, state: &ParamMap) -> Result<()> {
        self.core.set_state(state)
    }
}
