//! [`LoraLinear`]: a linear layer plus a trained low-rank update, as mlx-lm's
//! `tuner/lora.py` `LoRALinear`.

use crate::error::Result;
use mlx_rs::nn::{self, MaybeQuantized, Module, Param, UnaryModule};
use mlx_rs::{random, Array};

use super::check_rank;

/// A linear layer (dense or quantized, frozen) plus a low-rank update:
/// `y = linear(x) + scale · (dropout(x) · A) · B`, the update cast to `x`'s dtype —
/// mlx-lm's `LoRALinear`, with its parameter names (`linear.weight`, `lora_a` `[in, r]`,
/// `lora_b` `[r, out]`), so adapters move between the two as they are.
///
/// Dropout applies in training mode only ([`Module::train`]); a layer is made in training
/// mode, as in Python.
///
/// ```
/// use mlx_lm::tuner::LoraLinear;
/// use mlx_rs::nn::{Linear, UnaryModule};
/// use mlx_rs::{ops, Dtype};
/// let lora = LoraLinear::from_base(Linear::new(16, 8, false)?.into(), 4, 0.0, 20.0)?;
/// let x = ops::ones(&[2, 16], Dtype::Float32)?;
/// // `lora_b` starts at zero: the layer computes what its base computes.
/// let base = lora.linear.forward(&x)?;
/// assert_eq!(lora.forward(&x)?.to_vec::<f32>()?, base.to_vec::<f32>()?);
/// # Ok::<(), mlx_lm::Error>(())
/// ```
#[derive(Clone, Module)]
pub struct LoraLinear {
    /// The base layer (its parameters frozen by [`LoraLinear::from_base`]).
    pub linear: MaybeQuantized<nn::Linear>,
    /// Dropout on the update's input (training mode only).
    pub dropout: nn::Dropout,
    /// `[input_dims, rank]`.
    pub lora_a: Param,
    /// `[rank, output_dims]`.
    pub lora_b: Param,
    /// The factor of the update.
    #[module(skip)]
    pub scale: f32,
}

/// The input and output sizes of a (maybe quantized) linear layer.
pub(crate) fn dims(linear: &MaybeQuantized<nn::Linear>) -> (i32, i32) {
    match linear {
        MaybeQuantized::Dense(l) => (l.input_dims(), l.output_dims()),
        MaybeQuantized::Quantized(q) => (q.input_dims(), q.output_dims()),
    }
}

/// The dense weight `[out, in]` of a (maybe quantized) linear layer.
pub(crate) fn dense_weight(linear: &MaybeQuantized<nn::Linear>) -> Result<Array> {
    Ok(match linear {
        MaybeQuantized::Dense(l) => l.weight.value().clone(),
        MaybeQuantized::Quantized(q) => q.dequantized_weight()?,
    })
}

/// The bias of a (maybe quantized) linear layer.
pub(crate) fn bias(linear: &MaybeQuantized<nn::Linear>) -> Option<&Param> {
    match linear {
        MaybeQuantized::Dense(l) => l.bias.as_ref(),
        MaybeQuantized::Quantized(q) => q.bias.as_ref(),
    }
}

/// `weight` (and `bias`) as a layer of `like`'s kind: dense, or quantized again with
/// `like`'s options unless `dequantize` — how a fused layer is stored, as mlx-lm's `fuse`.
pub(crate) fn rebuild(
    like: &MaybeQuantized<nn::Linear>,
    weight: Array,
    dequantize: bool,
) -> Result<MaybeQuantized<nn::Linear>> {
    let fused = nn::Linear::from_weights(weight, bias(like).map(|b| b.value().clone()))?;
    Ok(match like {
        MaybeQuantized::Quantized(q) if !dequantize => {
            MaybeQuantized::Quantized(nn::QuantizedLinear::from_linear(&fused, &q.options)?)
        }
        _ => MaybeQuantized::Dense(fused),
    })
}

/// `lora_a` initialised as mlx-lm does: uniform in ±1/√input_dims, `[input_dims, rank]`.
pub(crate) fn init_a(input_dims: i32, rank: i32) -> Result<Param> {
    let bound = 1.0 / (input_dims as f32).sqrt();
    Ok(Param::new(random::uniform_range(
        -bound..bound,
        &[input_dims, rank],
        None,
    )?))
}

/// `scale · (Bᵀ · Aᵀ)`: the update of the weight `[out, in]` that a low-rank pair makes.
pub(crate) fn weight_delta(lora_a: &Array, lora_b: &Array, scale: f32) -> Result<Array> {
    let bt = lora_b.transpose()?.multiply_scalar(scale)?;
    Ok(bt.matmul(&lora_a.transpose()?)?)
}

impl LoraLinear {
    /// Wraps `linear` with a fresh update of rank `rank` (`lora_a` random, `lora_b` zero:
    /// the layer starts as its base), as `LoRALinear.from_base`; the base's parameters are
    /// frozen (only the update trains).
    ///
    /// # Errors
    /// A rank below 1, a dropout probability outside `[0, 1)`.
    pub fn from_base(
        mut linear: MaybeQuantized<nn::Linear>,
        rank: i32,
        dropout: f32,
        scale: f32,
    ) -> Result<LoraLinear> {
        check_rank(rank)?;
        let (input_dims, output_dims) = dims(&linear);
        linear.freeze()?;
        Ok(LoraLinear {
            linear,
            dropout: nn::Dropout::new(dropout)?,
            lora_a: init_a(input_dims, rank)?,
            lora_b: Param::new(mlx_rs::ops::zeros(
                &[rank, output_dims],
                mlx_rs::Dtype::Float32,
            )?),
            scale,
        })
    }

    /// The update's part of the output for `x`, before the base's: `scale ·
    /// (dropout(x) · A) · B`, cast to `x`'s dtype.
    pub fn update(&self, x: &Array) -> Result<Array> {
        let z = self
            .dropout
            .forward(x)?
            .matmul(&self.lora_a)?
            .matmul(&self.lora_b)?;
        Ok(z.multiply_scalar(self.scale)?.astype(x.dtype())?)
    }

    /// The base layer with the update merged into its weight (`W + scale · Bᵀ Aᵀ`, in the
    /// weight's dtype), quantized again as the base was unless `dequantize` —
    /// `LoRALinear.fuse`.
    pub fn fuse(&self, dequantize: bool) -> Result<MaybeQuantized<nn::Linear>> {
        let w = dense_weight(&self.linear)?;
        let delta = weight_delta(&self.lora_a, &self.lora_b, self.scale)?.astype(w.dtype())?;
        rebuild(&self.linear, w.add(&delta)?, dequantize)
    }
}

impl UnaryModule for LoraLinear {
    fn forward(&self, x: &Array) -> mlx_rs::Result<Array> {
        let y = self.linear.forward(x)?;
        y.add(&self.update(x)?)
    }
}
