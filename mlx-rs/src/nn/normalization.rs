//! [`RmsNorm`] and [`LayerNorm`], over the last axis, through the fused kernels of
//! [`fast`](crate::fast).
//!
//! ```
//! use mlx_rs::nn::{LayerNorm, LayerNormOptions, RmsNorm, UnaryModule};
//! use mlx_rs::Array;
//! let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[1, 4])?;
//! let rms = RmsNorm::new(4, 1e-5)?; // weight: ones
//! let y = rms.forward(&x)?.to_vec::<f32>()?;
//! let r = (30.0f32 / 4.0 + 1e-5).sqrt();
//! assert!((y[3] - 4.0 / r).abs() < 1e-5);
//!
//! let ln = LayerNorm::new(4)?; // weight ones, bias zeros: mean 0, variance 1
//! let y = ln.forward(&x)?.to_vec::<f32>()?;
//! assert!(y.iter().sum::<f32>().abs() < 1e-5);
//! let plain = LayerNorm::with_options(4, LayerNormOptions { affine: false, ..Default::default() })?;
//! assert!(plain.weight.is_none());
//! assert!(ln.forward(&Array::from_slice(&[1.0f32, 2.0], &[1, 2])?).is_err()); // 2 ≠ 4
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use super::linear::check_last_dim;
use super::module::UnaryModule;
use super::param::Param;
use crate::{fast, ops, Array, Dtype, Error, Result};

fn check_eps(layer: &str, eps: f32) -> Result<()> {
    if eps > 0.0 && eps.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{layer}: eps must be positive, got {eps}"
        )))
    }
}

fn check_dims(layer: &str, dims: i32) -> Result<()> {
    if dims > 0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{layer}: dims must be positive, got {dims}"
        )))
    }
}

/// Root-mean-square normalization, `x / √(mean(x²) + eps) · weight`, over the last axis
/// (Python's `mlx.nn.RMSNorm`; `weight` starts at ones).
#[derive(Debug, Clone, super::Module)]
pub struct RmsNorm {
    /// `[dims]`.
    pub weight: Param,
    /// Added to the mean square (Python's default is `1e-5`).
    pub eps: f32,
}

impl RmsNorm {
    /// A layer over `dims` features.
    pub fn new(dims: i32, eps: f32) -> Result<RmsNorm> {
        check_dims("RmsNorm", dims)?;
        check_eps("RmsNorm", eps)?;
        Ok(RmsNorm {
            weight: Param::new(ops::ones(&[dims], Dtype::Float32)?),
            eps,
        })
    }

    /// A layer with the given weight (`[dims]`).
    pub fn from_weights(weight: Array, eps: f32) -> Result<RmsNorm> {
        check_eps("RmsNorm", eps)?;
        if weight.ndim() != 1 {
            return Err(Error::Shape(format!(
                "RmsNorm: the weight must be [dims], got {:?}",
                weight.shape()
            )));
        }
        Ok(RmsNorm {
            weight: Param::new(weight),
            eps,
        })
    }

    /// The number of features.
    pub fn dims(&self) -> i32 {
        self.weight.shape()[0]
    }
}

impl UnaryModule for RmsNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        check_last_dim("RmsNorm", x, self.dims())?;
        fast::rms_norm(x, Some(&self.weight), self.eps)
    }
}

/// Options of [`LayerNorm`]; the default is Python's (eps `1e-5`, weight and bias).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNormOptions {
    /// Added to the variance.
    pub eps: f32,
    /// Whether the layer has a learned weight (and, if `bias`, a bias).
    pub affine: bool,
    /// Whether an affine layer has a bias.
    pub bias: bool,
}

impl Default for LayerNormOptions {
    fn default() -> Self {
        LayerNormOptions {
            eps: 1e-5,
            affine: true,
            bias: true,
        }
    }
}

/// Layer normalization, `(x − mean) / √(var + eps) · weight + bias`, over the last axis
/// (Python's `mlx.nn.LayerNorm`; `weight` starts at ones and `bias` at zeros).
#[derive(Debug, Clone, super::Module)]
pub struct LayerNorm {
    /// `[dims]`, if the layer is affine.
    pub weight: Option<Param>,
    /// `[dims]`, if the layer is affine with a bias.
    pub bias: Option<Param>,
    /// Added to the variance.
    pub eps: f32,
    /// The number of features.
    pub dims: i32,
}

impl LayerNorm {
    /// An affine layer with a bias over `dims` features (Python's defaults).
    pub fn new(dims: i32) -> Result<LayerNorm> {
        LayerNorm::with_options(dims, LayerNormOptions::default())
    }

    /// A layer over `dims` features.
    pub fn with_options(dims: i32, options: LayerNormOptions) -> Result<LayerNorm> {
        check_dims("LayerNorm", dims)?;
        check_eps("LayerNorm", options.eps)?;
        let weight = if options.affine {
            Some(Param::new(ops::ones(&[dims], Dtype::Float32)?))
        } else {
            None
        };
        let bias = if options.affine && options.bias {
            Some(Param::new(ops::zeros(&[dims], Dtype::Float32)?))
        } else {
            None
        };
        Ok(LayerNorm {
            weight,
            bias,
            eps: options.eps,
            dims,
        })
    }
}

impl UnaryModule for LayerNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        check_last_dim("LayerNorm", x, self.dims)?;
        fast::layer_norm(x, self.weight.as_deref(), self.bias.as_deref(), self.eps)
    }
}
