//! [`clip_grad_norm`]: rescaling gradients to a maximum global norm.

use crate::nn::ParamMap;
use crate::{Array, Error, Result};

/// Scales all gradients down together so that their global L2 norm (over every array) is
/// at most `max_norm`, and returns them with the norm they had: Python's
/// `mlx.optimizers.clip_grad_norm`.
///
/// The scale is `min(max_norm / (norm + 1e-6), 1)`, so gradients under the limit are
/// unchanged (multiplied by 1). Lazy: nothing is evaluated, so it works inside a compiled
/// step. An error if `max_norm` is negative or not finite.
///
/// ```
/// use mlx_rs::nn::ParamMap;
/// use mlx_rs::optimizers::clip_grad_norm;
/// use mlx_rs::Array;
///
/// let grads = ParamMap::from([
///     ("w1".to_string(), Array::from_slice(&[3.0f32, 0.0], &[2])?),
///     ("w2".to_string(), Array::from_slice(&[4.0f32], &[1])?),
/// ]);
/// let (clipped, norm) = clip_grad_norm(&grads, 1.0)?;
/// assert_eq!(norm.item::<f32>()?, 5.0);
/// let w2 = clipped["w2"].item::<f32>()?;
/// assert!((w2 - 0.8).abs() < 1e-6); // 4 / 5
/// assert!(clip_grad_norm(&grads, -1.0).is_err());
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn clip_grad_norm(grads: &ParamMap, max_norm: f64) -> Result<(ParamMap, Array)> {
    if !(max_norm.is_finite() && max_norm >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "clip_grad_norm: max_norm must be finite and ≥ 0, got {max_norm}"
        )));
    }
    let mut squared: Option<Array> = None;
    for g in grads.values() {
        let s = g.square()?.sum(false)?;
        squared = Some(match squared {
            Some(acc) => acc.add(&s)?,
            None => s,
        });
    }
    let Some(squared) = squared else {
        return Ok((ParamMap::new(), Array::scalar(0.0f32)));
    };
    let norm = squared.sqrt()?;
    let scale = Array::scalar(max_norm as f32)
        .astype(norm.dtype())?
        .divide(&norm.add_scalar(1e-6)?)?
        .minimum(&Array::scalar(1.0f32).astype(norm.dtype())?)?;
    let clipped = grads
        .iter()
        .map(|(k, g)| Ok((k.clone(), g.multiply(&scale)?)))
        .collect::<Result<ParamMap>>()?;
    Ok((clipped, norm))
}
