//! [`Dropout`].

use super::module::{TrainingFlag, UnaryModule};
use crate::{random, Array, Error, Result};

/// Zeroes each element with probability `p` in training and scales the rest by
/// `1 / (1 − p)`; the identity in evaluation (Python's `mlx.nn.Dropout`). Draws from the
/// global random state ([`random::seed`]).
///
/// The layer starts in training mode, as in Python; [`Module::eval`](super::Module::eval)
/// and [`Module::train`](super::Module::train) on any module that holds it switch it.
///
/// ```
/// use mlx_rs::nn::{Dropout, Module, UnaryModule};
/// use mlx_rs::{ops, Dtype};
/// let mut drop = Dropout::new(0.5)?;
/// let x = ops::ones(&[1000], Dtype::Float32)?;
/// let y = drop.forward(&x)?.to_vec::<f32>()?;
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0)); // kept values are scaled by 2
/// drop.eval()?;
/// assert_eq!(drop.forward(&x)?.to_vec::<f32>()?, vec![1.0; 1000]);
/// assert!(Dropout::new(1.0).is_err()); // p must be in [0, 1)
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone, Copy, super::Module)]
pub struct Dropout {
    /// The probability of zeroing an element, in `[0, 1)`.
    p: f32,
    /// Training (`true`) or evaluation mode.
    pub training: TrainingFlag,
}

impl Dropout {
    /// A dropout layer zeroing with probability `p` (in `[0, 1)`; Python's default is
    /// `0.5`), in training mode.
    pub fn new(p: f32) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::InvalidArgument(format!(
                "Dropout: the probability {p} is not in [0, 1)"
            )));
        }
        Ok(Dropout {
            p,
            training: TrainingFlag::default(),
        })
    }

    /// The probability of zeroing an element.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl UnaryModule for Dropout {
    fn forward(&self, x: &Array) -> Result<Array> {
        if self.p == 0.0 || !self.training.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let mask = random::bernoulli(&Array::scalar(keep), x.shape(), None)?;
        mask.multiply(x)?.multiply_scalar(1.0 / keep as f64)
    }
}
