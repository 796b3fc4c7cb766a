//! Loss functions, as Python's `mlx.nn.losses`: [`cross_entropy`],
//! [`binary_cross_entropy`], [`mse_loss`], [`l1_loss`], [`nll_loss`].
//!
//! Each computes a loss per element (or per sample) and then reduces it as its
//! [`Reduction`] says. Python's defaults differ by loss (`cross_entropy` and `nll_loss`
//! reduce nothing, the others take the mean); here the reduction is always spelled out.
//!
//! ```
//! use mlx_rs::nn::{self, CrossEntropyOptions, Reduction};
//! use mlx_rs::Array;
//! let logits = Array::from_slice(&[2.0f32, 0.0, 0.0, 0.0, 3.0, 0.0], &[2, 3])?;
//! let targets = Array::from_slice(&[0i32, 1], &[2])?;
//! let per_sample = nn::cross_entropy(&logits, &targets, CrossEntropyOptions::default())?;
//! assert_eq!(per_sample.shape(), &[2]);
//! let opts = CrossEntropyOptions { reduction: Reduction::Mean, label_smoothing: 0.1, ..Default::default() };
//! assert_eq!(nn::cross_entropy(&logits, &targets, opts)?.ndim(), 0);
//!
//! let (pred, want) = (Array::from_slice(&[1.0f32, 2.0], &[2])?, Array::from_slice(&[1.0f32, 4.0], &[2])?);
//! assert_eq!(nn::mse_loss(&pred, &want, Reduction::Mean)?.item::<f32>()?, 2.0);
//! assert!(nn::mse_loss(&pred, &logits, Reduction::Mean).is_err()); // shapes differ
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use crate::operators::weak_scalar;
use crate::{Array, Error, Result};

/// How a loss reduces its per-element values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// No reduction: the loss per element (Python's `"none"`).
    #[default]
    None,
    /// The mean over all elements.
    Mean,
    /// The sum over all elements.
    Sum,
}

impl Reduction {
    /// Applies the reduction to `loss`.
    pub fn apply(self, loss: Array) -> Result<Array> {
        match self {
            Reduction::None => Ok(loss),
            Reduction::Mean => loss.mean(false),
            Reduction::Sum => loss.sum(false),
        }
    }
}

/// Options of [`cross_entropy`]; the default is Python's (class axis `-1`, no smoothing,
/// no weights, no reduction).
#[derive(Debug, Clone, Copy)]
pub struct CrossEntropyOptions<'a> {
    /// Weights of the per-sample losses, of the loss's shape (the targets' shape for class
    /// indices).
    pub weights: Option<&'a Array>,
    /// The class axis of the logits.
    pub axis: i32,
    /// Label smoothing in `[0, 1)`.
    pub label_smoothing: f32,
    /// The reduction.
    pub reduction: Reduction,
}

impl Default for CrossEntropyOptions<'_> {
    fn default() -> Self {
        CrossEntropyOptions {
            weights: None,
            axis: -1,
            label_smoothing: 0.0,
            reduction: Reduction::None,
        }
    }
}

/// The axis `axis` of an array of `ndim` dimensions, counted from the front.
fn normalize_axis(what: &str, axis: i32, ndim: usize) -> Result<usize> {
    let n = ndim as i32;
    let a = if axis < 0 { axis + n } else { axis };
    if (0..n).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Error::InvalidArgument(format!(
            "{what}: axis {axis} is out of range for an input of {ndim} dimensions"
        )))
    }
}

fn check_same_shape(what: &str, a: &str, x: &Array, b: &str, y: &Array) -> Result<()> {
    if x.shape() == y.shape() {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{what}: {a} shape {:?} does not match {b} shape {:?}",
            x.shape(),
            y.shape()
        )))
    }
}

fn apply_weights(what: &str, loss: Array, weights: Option<&Array>) -> Result<Array> {
    match weights {
        None => Ok(loss),
        Some(w) => {
            check_same_shape(what, "weights", w, "loss", &loss)?;
            loss.multiply(w)
        }
    }
}

/// The cross-entropy between `logits` and `targets` (Python's
/// `nn.losses.cross_entropy`).
///
/// `targets` are either class indices (an integer array: the logits' shape without the
/// class axis) or probabilities (the logits' shape). With label smoothing `s`, the loss is
/// `logsumexp(logits) − (1 − s) · score − s · mean(logits)`, as in Python.
pub fn cross_entropy(
    logits: &Array,
    targets: &Array,
    options: CrossEntropyOptions<'_>,
) -> Result<Array> {
    const WHAT: &str = "cross_entropy";
    let s = options.label_smoothing;
    if !(0.0..1.0).contains(&s) {
        return Err(Error::InvalidArgument(format!(
            "{WHAT}: label smoothing must be in [0, 1), got {s}"
        )));
    }
    let axis = normalize_axis(WHAT, options.axis, logits.ndim())?;
    let as_probs = targets.ndim() == logits.ndim();
    if as_probs {
        check_same_shape(WHAT, "targets", targets, "logits", logits)?;
    } else {
        let mut want = logits.shape().to_vec();
        want.remove(axis);
        if targets.shape() != want.as_slice() {
            return Err(Error::Shape(format!(
                "{WHAT}: class-index targets must have the logits' shape without axis {} \
                 ({want:?}), got {:?}",
                options.axis,
                targets.shape()
            )));
        }
        if !targets.dtype().is_integer() {
            return Err(Error::InvalidArgument(format!(
                "{WHAT}: class-index targets must be integers, got {:?} (probabilities must \
                 have the logits' shape)",
                targets.dtype()
            )));
        }
    }
    let axis = axis as i32;
    let logits = logits.subtract(&logits.max_axis(axis, true)?.stop_gradient()?)?;
    let score = if as_probs {
        logits.multiply(targets)?.sum_axis(axis, false)?
    } else {
        logits
            .take_along_axis(&targets.expand_dims(axis)?, axis)?
            .squeeze_axis(axis)?
    };
    let lse = logits.logsumexp_axis(axis, false)?;
    let loss = if s > 0.0 {
        let adjusted = score.multiply_scalar(1.0 - s as f64)?;
        let smoothed = logits
            .mean_axis(axis, false)?
            .negative()?
            .multiply_scalar(s as f64)?;
        lse.subtract(&adjusted)?.add(&smoothed)?
    } else {
        lse.subtract(&score)?
    };
    options
        .reduction
        .apply(apply_weights(WHAT, loss, options.weights)?)
}

/// Options of [`binary_cross_entropy`]; the default is Python's (logits, no weights,
/// mean).
#[derive(Debug, Clone, Copy)]
pub struct BinaryCrossEntropyOptions<'a> {
    /// Weights of the per-element losses (the inputs' shape).
    pub weights: Option<&'a Array>,
    /// Whether the inputs are logits (`true`) or probabilities in `[0, 1]`.
    pub with_logits: bool,
    /// The reduction.
    pub reduction: Reduction,
}

impl Default for BinaryCrossEntropyOptions<'_> {
    fn default() -> Self {
        BinaryCrossEntropyOptions {
            weights: None,
            with_logits: true,
            reduction: Reduction::Mean,
        }
    }
}

/// The binary cross-entropy between `inputs` (logits, or probabilities) and `targets` (in
/// `[0, 1]`, the inputs' shape), as Python's `nn.losses.binary_cross_entropy`. With
/// probabilities, the logarithms are clipped at −100 as in Python.
pub fn binary_cross_entropy(
    inputs: &Array,
    targets: &Array,
    options: BinaryCrossEntropyOptions<'_>,
) -> Result<Array> {
    const WHAT: &str = "binary_cross_entropy";
    check_same_shape(WHAT, "inputs", inputs, "targets", targets)?;
    let loss = if options.with_logits {
        // log(1 + e^x) - x·t
        weak_scalar(0.0, inputs.dtype())?
            .logaddexp(inputs)?
            .subtract(&inputs.multiply(targets)?)?
    } else {
        let floor = weak_scalar(-100.0, inputs.dtype())?;
        let log_p = inputs.log()?.clip(Some(&floor), None)?;
        let one_minus = weak_scalar(1.0, inputs.dtype())?.subtract(inputs)?;
        let log_q = one_minus.log()?.clip(Some(&floor), None)?;
        let one_minus_t = weak_scalar(1.0, targets.dtype())?.subtract(targets)?;
        targets
            .multiply(&log_p)?
            .add(&one_minus_t.multiply(&log_q)?)?
            .negative()?
    };
    options
        .reduction
        .apply(apply_weights(WHAT, loss, options.weights)?)
}

/// The squared error `(predictions − targets)²`, reduced (Python's default is
/// [`Reduction::Mean`]).
pub fn mse_loss(predictions: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    check_same_shape("mse_loss", "predictions", predictions, "targets", targets)?;
    reduction.apply(predictions.subtract(targets)?.square()?)
}

/// The absolute error `|predictions − targets|`, reduced (Python's default is
/// [`Reduction::Mean`]).
pub fn l1_loss(predictions: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    check_same_shape("l1_loss", "predictions", predictions, "targets", targets)?;
    reduction.apply(predictions.subtract(targets)?.abs()?)
}

/// The negative log-likelihood of class indices `targets` under log-probabilities `inputs`
/// along `axis` (Python's `nn.losses.nll_loss`; its default reduction is
/// [`Reduction::None`]).
pub fn nll_loss(inputs: &Array, targets: &Array, axis: i32, reduction: Reduction) -> Result<Array> {
    const WHAT: &str = "nll_loss";
    let ax = normalize_axis(WHAT, axis, inputs.ndim())?;
    let mut want = inputs.shape().to_vec();
    want.remove(ax);
    if targets.shape() != want.as_slice() || !targets.dtype().is_integer() {
        return Err(Error::Shape(format!(
            "{WHAT}: targets must be integer class indices of shape {want:?}, got {:?} {:?}",
            targets.dtype(),
            targets.shape()
        )));
    }
    let ax = ax as i32;
    let picked = inputs.take_along_axis(&targets.expand_dims(ax)?, ax)?;
    reduction.apply(picked.squeeze_axis(ax)?.negative()?)
}
