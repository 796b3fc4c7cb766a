//! [`Linear`] and [`QuantizedLinear`].

use super::module::{Module, UnaryModule, Visitor, VisitorMut};
use super::param::{KeyPath, Param};
use super::quantize::Quantizable;
use crate::ops::{self, QuantizeOptions};
use crate::{random, Array, Error, Result};

/// `y = x Wᵀ + b`: weight `[output_dims, input_dims]`, optional bias `[output_dims]`, as
/// Python's `mlx.nn.Linear` (same initialisation: uniform in ±√(1/input_dims)).
///
/// ```
/// use mlx_rs::nn::{Linear, UnaryModule};
/// use mlx_rs::{ops, Dtype};
/// let layer = Linear::new(3, 2, true)?;
/// let y = layer.forward(&ops::ones(&[5, 3], Dtype::Float32)?)?;
/// assert_eq!(y.shape(), &[5, 2]);
/// assert!(layer.forward(&ops::ones(&[5, 4], Dtype::Float32)?).is_err()); // 4 ≠ 3 inputs
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone, super::Module)]
pub struct Linear {
    /// `[output_dims, input_dims]`.
    pub weight: Param,
    /// `[output_dims]`, if the layer has a bias.
    pub bias: Option<Param>,
}

impl Linear {
    /// A randomly initialised layer (float32).
    pub fn new(input_dims: i32, output_dims: i32, bias: bool) -> Result<Linear> {
        if input_dims <= 0 || output_dims <= 0 {
            return Err(Error::InvalidArgument(format!(
                "Linear: dimensions must be positive, got {input_dims} → {output_dims}"
            )));
        }
        let scale = (1.0 / input_dims as f32).sqrt();
        let init = |shape: &[i32]| random::uniform_range(-scale..scale, shape, None);
        Ok(Linear {
            weight: Param::new(init(&[output_dims, input_dims])?),
            bias: if bias {
                Some(Param::new(init(&[output_dims])?))
            } else {
                None
            },
        })
    }

    /// A layer with the given weight (`[out, in]`) and bias (`[out]`).
    pub fn from_weights(weight: Array, bias: Option<Array>) -> Result<Linear> {
        if weight.ndim() != 2 {
            return Err(Error::Shape(format!(
                "Linear: the weight must be [output_dims, input_dims], got {:?}",
                weight.shape()
            )));
        }
        if let Some(b) = &bias {
            if b.shape() != [weight.shape()[0]] {
                return Err(Error::Shape(format!(
                    "Linear: the bias must be [{}], got {:?}",
                    weight.shape()[0],
                    b.shape()
                )));
            }
        }
        Ok(Linear {
            weight: Param::new(weight),
            bias: bias.map(Param::new),
        })
    }

    /// The input size.
    pub fn input_dims(&self) -> i32 {
        self.weight.shape()[1]
    }

    /// The output size.
    pub fn output_dims(&self) -> i32 {
        self.weight.shape()[0]
    }
}

pub(crate) fn check_last_dim(layer: &str, x: &Array, want: i32) -> Result<()> {
    match x.shape().last() {
        Some(&d) if d == want => Ok(()),
        _ => Err(Error::Shape(format!(
            "{layer}: the input's last axis must have size {want}, got shape {:?}",
            x.shape()
        ))),
    }
}

impl UnaryModule for Linear {
    fn forward(&self, x: &Array) -> Result<Array> {
        check_last_dim("Linear", x, self.input_dims())?;
        match &self.bias {
            Some(b) => ops::addmm(b, x, &self.weight.transpose()?, 1.0, 1.0),
            None => x.matmul(&self.weight.transpose()?),
        }
    }
}

impl Quantizable for Linear {
    type Quantized = QuantizedLinear;
    fn can_quantize(&self, options: &QuantizeOptions) -> bool {
        self.input_dims() % options.resolved().0 == 0
    }
    fn to_quantized(&self, options: &QuantizeOptions) -> Result<QuantizedLinear> {
        QuantizedLinear::from_linear(self, options)
    }
    fn from_quantized(q: &QuantizedLinear) -> Result<Linear> {
        let mut linear = Linear::from_weights(
            q.dequantized_weight()?,
            q.bias.as_ref().map(|b| b.value().clone()),
        )?;
        if let (Some(b), Some(qb)) = (&mut linear.bias, &q.bias) {
            b.set_frozen(qb.is_frozen());
        }
        Ok(linear)
    }
}

/// A linear layer with a quantized weight (`mlx.nn.QuantizedLinear`): `weight` packed in
/// `uint32`, `scales` (and, in the affine mode, `biases`) per group of `group_size` inputs,
/// and the optional float `bias`. Every mode of [`ops::quantize`] works (affine 2–8 bits;
/// mxfp4, mxfp8, nvfp4).
///
/// As in Python, the quantized parameters stay frozen (they cannot be trained; LoRA-style
/// adapters train beside them); the float `bias` is trainable.
#[derive(Debug, Clone)]
pub struct QuantizedLinear {
    /// Packed weight, `[output_dims, input_dims * bits / 32]` (`uint32`).
    pub weight: Param,
    /// One scale per group.
    pub scales: Param,
    /// One bias per group (affine mode only).
    pub biases: Option<Param>,
    /// The layer's float bias, if any.
    pub bias: Option<Param>,
    /// Group size, bits and mode (resolved: never `None`).
    pub options: QuantizeOptions,
}

impl QuantizedLinear {
    /// Quantizes a [`Linear`] layer.
    pub fn from_linear(linear: &Linear, options: &QuantizeOptions) -> Result<QuantizedLinear> {
        let (weight, scales, biases, options) = quantized_parts(&linear.weight, options)?;
        Ok(QuantizedLinear {
            weight,
            scales,
            biases,
            // As in Python, the float bias stays trainable (only the packed parts freeze).
            bias: linear.bias.as_ref().map(|b| Param::new(b.value().clone())),
            options,
        })
    }

    /// The input size (unpacked).
    pub fn input_dims(&self) -> i32 {
        self.weight.shape()[1] * 32 / self.options.bits.unwrap_or(4)
    }

    /// The output size.
    pub fn output_dims(&self) -> i32 {
        self.weight.shape()[0]
    }

    /// The dense weight this layer multiplies by (`[output_dims, input_dims]`).
    pub fn dequantized_weight(&self) -> Result<Array> {
        ops::dequantize(
            &self.weight,
            &self.scales,
            self.biases.as_deref(),
            None,
            None,
            self.options,
        )
    }
}

impl Module for QuantizedLinear {
    fn visit(&self, path: &mut KeyPath, v: &mut dyn Visitor) -> Result<()> {
        visit_quantized(
            path,
            v,
            &self.weight,
            &self.scales,
            self.biases.as_ref(),
            self.bias.as_ref(),
        )
    }
    fn visit_mut(&mut self, path: &mut KeyPath, v: &mut dyn VisitorMut) -> Result<()> {
        visit_quantized_mut(
            path,
            v,
            &mut self.weight,
            &mut self.scales,
            self.biases.as_mut(),
            self.bias.as_mut(),
        )
    }
}

/// The frozen packed weight, scales and biases of `weight` quantized with `options`, and
/// the options resolved (group size and bits never `None`).
pub(crate) fn quantized_parts(
    weight: &Array,
    options: &QuantizeOptions,
) -> Result<(Param, Param, Option<Param>, QuantizeOptions)> {
    let (group_size, bits) = options.resolved();
    let options = QuantizeOptions {
        group_size: Some(group_size),
        bits: Some(bits),
        mode: options.mode,
    };
    let q = ops::quantize(weight, None, options)?;
    let frozen = |a: Array| {
        let mut p = Param::new(a);
        p.set_frozen(true);
        p
    };
    Ok((frozen(q.w), frozen(q.scales), q.biases.map(frozen), options))
}

/// The walk of a quantized layer: `weight`, `scales`, `biases` stay frozen whatever a
/// visitor does (as Python's `QuantizedLinear.unfreeze` keeps them), `bias` follows it.
pub(crate) fn visit_quantized(
    path: &mut KeyPath,
    v: &mut dyn Visitor,
    weight: &Param,
    scales: &Param,
    biases: Option<&Param>,
    bias: Option<&Param>,
) -> Result<()> {
    let items = [
        ("weight", Some(weight)),
        ("scales", Some(scales)),
        ("biases", biases),
        ("bias", bias),
    ];
    for (name, p) in items {
        if let Some(p) = p {
            path.push(name);
            let r = v.param(path.as_str(), p);
            path.pop();
            r?;
        }
    }
    Ok(())
}

pub(crate) fn visit_quantized_mut(
    path: &mut KeyPath,
    v: &mut dyn VisitorMut,
    weight: &mut Param,
    scales: &mut Param,
    biases: Option<&mut Param>,
    bias: Option<&mut Param>,
) -> Result<()> {
    let items = [
        ("weight", Some(weight), true),
        ("scales", Some(scales), true),
        ("biases", biases, true),
        ("bias", bias, false),
    ];
    for (name, p, always_frozen) in items {
        if let Some(p) = p {
            path.push(name);
            let r = v.param(path.as_str(), p);
            path.pop();
            if always_frozen {
                p.set_frozen(true);
            }
            r?;
        }
    }
    Ok(())
}

impl UnaryModule for QuantizedLinear {
    fn forward(&self, x: &Array) -> Result<Array> {
        check_last_dim("QuantizedLinear", x, self.input_dims())?;
        let y = ops::quantized_matmul(
            x,
            &self.weight,
            &self.scales,
            self.biases.as_deref(),
            true,
            self.options,
        )?;
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}
