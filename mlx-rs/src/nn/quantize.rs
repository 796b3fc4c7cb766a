//! Swapping layers for their quantized forms in place: [`MaybeQuantized`] and
//! [`quantize`], as Python's `mlx.nn.quantize`.

use super::module::{Module, QuantizeSlot, UnaryModule, Visitor, VisitorMut};
use super::param::KeyPath;
use crate::ops::QuantizeOptions;
use crate::{Array, Error, Result};
use std::fmt;

/// A layer that has a quantized form ([`Linear`](super::Linear) →
/// [`QuantizedLinear`](super::QuantizedLinear), [`Embedding`](super::Embedding) →
/// [`QuantizedEmbedding`](super::QuantizedEmbedding)).
pub trait Quantizable: Module {
    /// The quantized layer.
    type Quantized: Module;
    /// Whether the layer can be quantized with `options` (the weight's last axis is a
    /// multiple of the group size).
    fn can_quantize(&self, options: &QuantizeOptions) -> bool;
    /// The quantized form of the layer.
    fn to_quantized(&self, options: &QuantizeOptions) -> Result<Self::Quantized>;
    /// The dense layer a quantized one multiplies by (its weight dequantized), as mlx-lm's
    /// `dequantize_model` makes it. The default refuses.
    fn from_quantized(quantized: &Self::Quantized) -> Result<Self>
    where
        Self: Sized,
    {
        let _ = quantized;
        Err(Error::InvalidArgument(
            "this layer cannot be dequantized".into(),
        ))
    }
}

/// A field that holds a layer or its quantized form, so that [`quantize`] can swap it in
/// place. Model authors write `q_proj: MaybeQuantized<Linear>`; both forms have the same
/// call (`forward`).
pub enum MaybeQuantized<M: Quantizable> {
    /// The original (dense) layer.
    Dense(M),
    /// The quantized layer.
    Quantized(M::Quantized),
}

impl<M: Quantizable> MaybeQuantized<M> {
    /// Wraps a dense layer.
    pub fn new(layer: M) -> Self {
        MaybeQuantized::Dense(layer)
    }
}

impl<M: Quantizable> From<M> for MaybeQuantized<M> {
    fn from(layer: M) -> Self {
        MaybeQuantized::Dense(layer)
    }
}

impl<M: Quantizable + Clone> Clone for MaybeQuantized<M>
where
    M::Quantized: Clone,
{
    fn clone(&self) -> Self {
        match self {
            MaybeQuantized::Dense(m) => MaybeQuantized::Dense(m.clone()),
            MaybeQuantized::Quantized(q) => MaybeQuantized::Quantized(q.clone()),
        }
    }
}

impl<M: Quantizable + fmt::Debug> fmt::Debug for MaybeQuantized<M>
where
    M::Quantized: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaybeQuantized::Dense(m) => m.fmt(f),
            MaybeQuantized::Quantized(q) => q.fmt(f),
        }
    }
}

impl<M: Quantizable> QuantizeSlot for MaybeQuantized<M> {
    fn is_quantized(&self) -> bool {
        matches!(self, MaybeQuantized::Quantized(_))
    }
    fn can_quantize(&self, options: &QuantizeOptions) -> bool {
        match self {
            MaybeQuantized::Dense(m) => m.can_quantize(options),
            MaybeQuantized::Quantized(_) => false,
        }
    }
    fn quantize(&mut self, options: &QuantizeOptions) -> Result<()> {
        if let MaybeQuantized::Dense(m) = self {
            *self = MaybeQuantized::Quantized(m.to_quantized(options)?);
        }
        Ok(())
    }
    fn dequantize(&mut self) -> Result<()> {
        if let MaybeQuantized::Quantized(q) = self {
            *self = MaybeQuantized::Dense(M::from_quantized(q)?);
        }
        Ok(())
    }
}

impl<M: Quantizable> Module for MaybeQuantized<M> {
    fn visit(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()> {
        match self {
            MaybeQuantized::Dense(m) => m.visit(path, visitor),
            MaybeQuantized::Quantized(q) => q.visit(path, visitor),
        }
    }
    fn visit_mut(&mut self, path: &mut KeyPath, visitor: &mut dyn VisitorMut) -> Result<()> {
        visitor.quantizable(path.as_str(), self)?;
        match self {
            MaybeQuantized::Dense(m) => m.visit_mut(path, visitor),
            MaybeQuantized::Quantized(q) => q.visit_mut(path, visitor),
        }
    }
}

impl<M> UnaryModule for MaybeQuantized<M>
where
    M: Quantizable + UnaryModule,
    M::Quantized: UnaryModule,
{
    fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            MaybeQuantized::Dense(m) => m.forward(x),
            MaybeQuantized::Quantized(q) => q.forward(x),
        }
    }
}

/// Quantizes, in place, every [`MaybeQuantized`] layer of `model` that can be quantized
/// with `options` and that `predicate` (given the layer's dotted path) accepts — Python's
/// `mlx.nn.quantize(model, group_size, bits, mode=..., class_predicate=...)`. Returns the
/// number of layers quantized.
///
/// Layers whose input size is not a multiple of the group size are left dense (as
/// mlx-lm's quantization predicate does; Python's `nn.quantize` raises on them); invalid
/// options (bits or group size the mode does not
/// support) are an error and leave the model unchanged.
///
/// ```
/// use mlx_rs::nn::{self, Linear, MaybeQuantized, Module, UnaryModule};
/// use mlx_rs::ops::QuantizeOptions;
///
/// #[derive(Module)]
/// struct Net {
///     up: MaybeQuantized<Linear>,
///     down: MaybeQuantized<Linear>,
/// }
/// let mut net = Net { up: Linear::new(64, 64, true)?.into(), down: Linear::new(64, 8, false)?.into() };
/// let opts = QuantizeOptions { bits: Some(4), group_size: Some(32), ..Default::default() };
/// let n = nn::quantize(&mut net, &opts, |path: &str| path != "down")?;
/// assert_eq!(n, 1);
/// assert!(net.parameters()?.contains_key("up.scales"));
/// let y = net.down.forward(&net.up.forward(&mlx_rs::ops::ones(&[2, 64], mlx_rs::Dtype::Float32)?)?)?;
/// assert_eq!(y.shape(), &[2, 8]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn quantize<M: Module + ?Sized>(
    model: &mut M,
    options: &QuantizeOptions,
    predicate: impl Fn(&str) -> bool,
) -> Result<usize> {
    check_options(options)?;
    struct Q<'a, P> {
        options: &'a QuantizeOptions,
        predicate: P,
        count: usize,
    }
    impl<P: Fn(&str) -> bool> VisitorMut for Q<'_, P> {
        fn quantizable(&mut self, path: &str, layer: &mut dyn QuantizeSlot) -> Result<()> {
            if !layer.is_quantized() && layer.can_quantize(self.options) && (self.predicate)(path) {
                layer.quantize(self.options).map_err(|e| {
                    Error::InvalidArgument(format!("quantize: layer `{path}`: {e}"))
                })?;
                self.count += 1;
            }
            Ok(())
        }
    }
    let mut q = Q {
        options,
        predicate,
        count: 0,
    };
    model.visit_mut(&mut KeyPath::new(), &mut q)?;
    Ok(q.count)
}

/// Replaces, in place, every quantized [`MaybeQuantized`] layer of `model` by its dense
/// form (the weight dequantized; a float bias kept) — mlx-lm's `dequantize_model`. Returns
/// the number of layers dequantized; an error names the layer that could not be.
///
/// ```
/// use mlx_rs::nn::{self, Linear, MaybeQuantized, Module, QuantizeSlot};
/// use mlx_rs::ops::QuantizeOptions;
/// #[derive(Module)]
/// struct Net { up: MaybeQuantized<Linear> }
/// let mut net = Net { up: Linear::new(64, 8, true)?.into() };
/// nn::quantize(&mut net, &QuantizeOptions::default(), |_| true)?;
/// assert_eq!(nn::dequantize(&mut net)?, 1);
/// assert!(!net.up.is_quantized());
/// assert_eq!(net.parameters()?["up.weight"].shape(), &[8, 64]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn dequantize<M: Module + ?Sized>(model: &mut M) -> Result<usize> {
    struct D(usize);
    impl VisitorMut for D {
        fn quantizable(&mut self, path: &str, layer: &mut dyn QuantizeSlot) -> Result<()> {
            if layer.is_quantized() {
                layer.dequantize().map_err(|e| {
                    Error::InvalidArgument(format!("dequantize: layer `{path}`: {e}"))
                })?;
                self.0 += 1;
            }
            Ok(())
        }
    }
    let mut d = D(0);
    model.visit_mut(&mut KeyPath::new(), &mut d)?;
    Ok(d.0)
}

/// The group sizes and bits each mode accepts (see [`QuantizationMode`](crate::ops::QuantizationMode)).
fn check_options(o: &QuantizeOptions) -> Result<()> {
    use crate::ops::QuantizationMode as M;
    let (groups, bits): (&[i32], &[i32]) = match o.mode {
        M::Affine => (&[32, 64, 128], &[2, 3, 4, 5, 6, 8]),
        M::Mxfp4 => (&[32], &[4]),
        M::Mxfp8 => (&[32], &[8]),
        M::Nvfp4 => (&[16], &[4]),
    };
    if let Some(g) = o.group_size.filter(|g| !groups.contains(g)) {
        return Err(Error::InvalidArgument(format!(
            "quantize: group size {g} is not one of {groups:?} for the {} mode",
            o.mode.name()
        )));
    }
    if let Some(b) = o.bits.filter(|b| !bits.contains(b)) {
        return Err(Error::InvalidArgument(format!(
            "quantize: {b} bits is not one of {bits:?} for the {} mode",
            o.mode.name()
        )));
    }
    Ok(())
}
