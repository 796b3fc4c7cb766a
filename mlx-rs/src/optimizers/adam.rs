//! [`Adam`] and [`AdamW`] (Adam with decoupled weight decay).

use super::state::{blend, check_betas, check_non_negative, one_minus, Core, StepInfo};
use super::{LearningRate, Optimizer};
use crate::nn::ParamMap;
use crate::{Array, Dtype, Result};

/// The options of [`Adam`] besides the learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamOptions {
    /// `(β₁, β₂)`, the decay rates of the running averages of the gradient and of its
    /// square, each in [0, 1). Default `(0.9, 0.999)`.
    pub betas: (f64, f64),
    /// ε, added to the denominator (≥ 0). Default `1e-8`.
    pub eps: f64,
    /// Divide the averages by `1 − βᵗ` (bias correction). Default `false`, as in MLX.
    pub bias_correction: bool,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            betas: (0.9, 0.999),
            eps: 1e-8,
            bias_correction: false,
        }
    }
}

/// The options of [`AdamW`] besides the learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWOptions {
    /// `(β₁, β₂)`, each in [0, 1). Default `(0.9, 0.999)`.
    pub betas: (f64, f64),
    /// ε, added to the denominator (≥ 0). Default `1e-8`.
    pub eps: f64,
    /// The decoupled weight decay λ (≥ 0). Default `0.01`.
    pub weight_decay: f64,
    /// Bias correction, as [`AdamOptions::bias_correction`]. Default `false`.
    pub bias_correction: bool,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        AdamWOptions {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
            bias_correction: false,
        }
    }
}

/// The Adam optimizer (Kingma & Ba, 2015): Python's `mlx.optimizers.Adam`.
///
/// `m ← β₁ m + (1 − β₁) g`, `v ← β₂ v + (1 − β₂) g²`, `w ← w − λ m / (√v + ε)`; with
/// bias correction, `w ← w − λ/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε)` at step `t` (1 at the
/// first update). State: `<param>.m`, `<param>.v`.
///
/// ```
/// use mlx_rs::nn::{self, Linear, Module, UnaryModule};
/// use mlx_rs::optimizers::{Adam, AdamOptions, Optimizer};
/// use mlx_rs::{ops, Dtype};
///
/// let mut model = Linear::new(3, 1, true)?;
/// let x = ops::ones(&[4, 3], Dtype::Float32)?;
/// let mut opt = Adam::with_options(1e-2, AdamOptions { bias_correction: true, ..Default::default() })?;
/// let before = model.weight.value().clone();
/// let (_, grads) = nn::value_and_grad(&mut model, |m| m.forward(&x)?.square()?.mean(false))?;
/// opt.update(&mut model, &grads)?;
/// // with bias correction the first step moves every weight by about the learning rate
/// let moved = before.subtract(model.weight.value())?.abs()?.max(false)?.item::<f32>()?;
/// assert!((moved - 1e-2).abs() < 1e-4);
/// assert_eq!(opt.state()["step"].item::<u64>()?, 1);
/// assert!(Adam::with_options(1e-2, AdamOptions { betas: (0.9, 1.0), ..Default::default() }).is_err());
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Adam {
    options: AdamOptions,
    core: Core,
}

impl Adam {
    /// Adam with learning rate `learning_rate` (a number or a
    /// [`Schedule`](super::Schedule)) and the default options.
    pub fn new(learning_rate: impl Into<LearningRate>) -> Result<Adam> {
        Adam::with_options(learning_rate, AdamOptions::default())
    }

    /// Adam with `options`; an error if a beta is outside [0, 1) or the learning rate or
    /// ε is negative.
    pub fn with_options(
        learning_rate: impl Into<LearningRate>,
        options: AdamOptions,
    ) -> Result<Adam> {
        check_betas("Adam", options.betas)?;
        check_non_negative("Adam", "eps", options.eps)?;
        Ok(Adam {
            options,
            core: Core::new("Adam", learning_rate.into(), &["m", "v"])?,
        })
    }

    /// The options.
    pub fn options(&self) -> &AdamOptions {
        &self.options
    }
}

/// One Adam update of `w` (already decayed, for AdamW).
fn adam_single(
    o: &AdamOptions,
    g: &Array,
    w: &Array,
    state: &mut [Array],
    step: &StepInfo,
) -> Result<Array> {
    let (b1, b2) = o.betas;
    let lr = step.learning_rate;
    let m = blend(&state[0], g, b1)?;
    let v = blend(&state[1], &g.square()?, b2)?;
    let new = if o.bias_correction {
        let t = step.step.astype(Dtype::Float32)?;
        let decayed = |b: f64| Array::scalar(b as f32).power(&t);
        let c1 = lr.divide(&one_minus(&decayed(b1)?)?)?.astype(g.dtype())?;
        let c2 = one_minus(&decayed(b2)?)?.rsqrt()?.astype(g.dtype())?;
        let numerator = c1.multiply(&m)?;
        let denominator = v.sqrt()?.multiply(&c2)?.add_scalar(o.eps)?;
        w.subtract(&numerator.divide(&denominator)?)?
    } else {
        let step = lr.multiply(&m)?.divide(&v.sqrt()?.add_scalar(o.eps)?)?;
        w.subtract(&step)?
    };
    state[0] = m;
    state[1] = v;
    Ok(new)
}

impl Optimizer for Adam {
    fn init(&mut self, params: &ParamMap) -> Result<()> {
        self.core.init(params)
    }

    fn apply_gradients(&mut self, grads: &ParamMap, params: &ParamMap) -> Result<ParamMap> {
        let o = self.options;
        self.core.apply(grads, params, |g, w, state, step| {
            adam_single(&o, g, w, state, step)
        })
    }

    fn state(&self) -> ParamMap {
        self.core.state()
    }

    fn set_state(&mut self, state: &ParamMap) -> Result<()> {
        self.core.set_state(state)
    }
}

/// Adam with decoupled weight decay (Loshchilov & Hutter, 2019): Python's
/// `mlx.optimizers.AdamW`. Each update first shrinks the weights, `w ← w (1 − λ wd)`,
/// then applies [`Adam`]'s update. State: `<param>.m`, `<param>.v`.
///
/// ```
/// use mlx_rs::nn::ParamMap;
/// use mlx_rs::optimizers::{AdamW, AdamWOptions, Optimizer};
/// use mlx_rs::Array;
///
/// let mut opt = AdamW::with_options(0.1, AdamWOptions { weight_decay: 0.5, ..Default::default() })?;
/// let params = ParamMap::from([("w".to_string(), Array::from_slice(&[2.0f32], &[1])?)]);
/// let grads = ParamMap::from([("w".to_string(), Array::from_slice(&[0.0f32], &[1])?)]);
/// // a zero gradient leaves only the decay: 2 · (1 − 0.1 · 0.5)
/// let new = opt.apply_gradients(&grads, &params)?;
/// assert!((new["w"].item::<f32>()? - 1.9).abs() < 1e-6);
/// assert_eq!(AdamW::new(1e-3)?.options().weight_decay, 0.01);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AdamW {
    options: AdamWOptions,
    core: Core,
}

impl AdamW {
    /// AdamW with learning rate `learning_rate` (a number or a
    /// [`Schedule`](super::Schedule)) and the default options (weight decay 0.01).
    pub fn new(learning_rate: impl Into<LearningRate>) -> Result<AdamW> {
        AdamW::with_options(learning_rate, AdamWOptions::default())
    }

    /// AdamW with `options`; an error if a beta is outside [0, 1) or the learning rate,
    /// ε or the weight decay is negative.
    pub fn with_options(
        learning_rate: impl Into<LearningRate>,
        options: AdamWOptions,
    ) -> Result<AdamW> {
        check_betas("AdamW", options.betas)?;
        check_non_negative("AdamW", "eps", options.eps)?;
        check_non_negative("AdamW", "weight decay", options.weight_decay)?;
        Ok(AdamW {
            options,
            core: Core::new("AdamW", learning_rate.into(), &["m", "v"])?,
        })
    }

    /// The options.
    pub fn options(&self) -> &AdamWOptions {
        &self.options
    }
}

impl Optimizer for AdamW {
    fn init(&mut self, params: &ParamMap) -> Result<()> {
        self.core.init(params)
    }

    fn apply_gradients(&mut self, grads: &ParamMap, params: &ParamMap) -> Result<ParamMap> {
        let o = self.options;
        let adam = AdamOptions {
            betas: o.betas,
            eps: o.eps,
            bias_correction: o.bias_correction,
        };
        self.core.apply(grads, params, |g, w, state, step| {
            let shrink = one_minus(&step.learning_rate.multiply_scalar(o.weight_decay)?)?;
            adam_single(&adam, g, &w.multiply(&shrink)?, state, step)
        })
    }

    fn state(&self) -> ParamMap {
        self.core.state()
    }

    fn set_state(&mut self, state: &ParamMap) -> Result<()> {
        self.core.set_state(state)
    }
}
