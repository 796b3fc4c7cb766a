//! Gradients of a loss with respect to a module's trainable parameters.

use super::module::{swap_params, Module, ParamMap};
use crate::{transforms, Array, Error, Result};

/// Runs `loss(model)` and returns its value and its gradient with respect to every
/// trainable parameter of `model` (by dotted name) — Python's
/// `nn.value_and_grad(model, loss_fn)(model, ...)` in one call.
///
/// `loss` must return a scalar. Inputs are captured by the closure; frozen parameters
/// get no gradient. The model is left as it was (its parameters are swapped for MLX's
/// tracers during the call and restored, also on error).
///
/// ```
/// use mlx_rs::nn::{self, Linear, Module, UnaryModule};
/// use mlx_rs::{ops, Array, Dtype};
/// let mut model = Linear::new(3, 1, true)?;
/// let x = ops::ones(&[4, 3], Dtype::Float32)?;
/// let (loss, grads) = nn::value_and_grad(&mut model, |m| {
///     m.forward(&x)?.square()?.mean(false)
/// })?;
/// assert_eq!(loss.shape(), &[] as &[i32]);
/// assert_eq!(grads["weight"].shape(), &[1, 3]);
/// assert_eq!(grads.len(), 2);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn value_and_grad<M: Module + ?Sized>(
    model: &mut M,
    mut loss: impl FnMut(&M) -> Result<Array>,
) -> Result<(Array, ParamMap)> {
    let (names, values): (Vec<String>, Vec<Array>) =
        model.trainable_parameters()?.into_iter().unzip();
    if names.is_empty() {
        return Err(Error::InvalidArgument(
            "value_and_grad: the model has no trainable parameters (all frozen?)".into(),
        ));
    }
    let argnums: Vec<i32> = (0..names.len() as i32).collect();
    let result = {
        let m = &mut *model;
        let names = &names;
        let f = move |args: &[Array]| -> Result<Vec<Array>> {
            swap_params(m, names, args)?;
            Ok(vec![loss(m)?])
        };
        transforms::value_and_grad(f, &argnums).and_then(|vg| vg.call(&values))
    };
    swap_params(model, &names, &values)?;
    let (mut value, grads) = result?;
    if value.is_empty() || grads.len() != names.len() {
        return Err(Error::InvalidArgument(
            "value_and_grad: MLX returned no value or too few gradients".into(),
        ));
    }
    Ok((value.swap_remove(0), names.into_iter().zip(grads).collect()))
}
