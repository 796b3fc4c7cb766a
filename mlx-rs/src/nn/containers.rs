//! [`Sequential`]: layers applied one after the other.

use super::module::UnaryModule;
use crate::{Array, Result};
use std::fmt;

/// Layers applied in order, each to the output of the one before (Python's
/// `mlx.nn.Sequential`). Parameters are named `layers.<index>.<name>` as in Python, so
/// checkpoints of Python `Sequential`s load as they are; layers without parameters
/// (activations) keep their index.
///
/// ```
/// use mlx_rs::nn::{Linear, Module, Relu, Sequential, UnaryModule};
/// use mlx_rs::{ops, Dtype};
/// let mlp = Sequential::new()
///     .add(Linear::new(4, 8, true)?)
///     .add(Relu)
///     .add(Linear::new(8, 2, false)?);
/// let keys: Vec<String> = mlp.parameters()?.into_keys().collect();
/// assert_eq!(keys, ["layers.0.bias", "layers.0.weight", "layers.2.weight"]);
/// let y = mlp.forward(&ops::ones(&[3, 4], Dtype::Float32)?)?;
/// assert_eq!(y.shape(), &[3, 2]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Default, super::Module)]
pub struct Sequential {
    /// The layers, in order.
    pub layers: Vec<Box<dyn UnaryModule>>,
}

impl Sequential {
    /// No layers (the identity).
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends `layer` (builder form).
    // Not `std::ops::Add`: appending a layer is not addition, and the name reads as the
    // builders of other frameworks do (Keras' `Sequential.add`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl UnaryModule + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends `layer`.
    pub fn push(&mut self, layer: impl UnaryModule + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl fmt::Debug for Sequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

impl UnaryModule for Sequential {
    fn forward(&self, x: &Array) -> Result<Array> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }
}
