//! [`DoraLinear`]: a linear layer with a low-rank update and a learned magnitude per
//! output, as mlx-lm's `tuner/dora.py` `DoRALinear`.

use crate::error::Result;
use mlx_rs::nn::{self, MaybeQuantized, Module, Param, UnaryModule};
use mlx_rs::{linalg, ops, Array, Dtype};

use super::check_rank;
use super::lora::{bias, dense_weight, dims, init_a, rebuild, weight_delta};

/// Weight-decomposed low-rank adaptation (DoRA): the LoRA output of the dense weight,
/// each output row rescaled to the learned magnitude `m` over the norm of the adapted
/// weight's row —
/// `y = (m / ‖W + scale · Bᵀ Aᵀ‖_row) · (x Wᵀ + scale · (dropout(x) A) B) + bias`, the norm
/// not differentiated (mlx-lm's `stop_gradient`). Parameter names as mlx-lm's
/// `DoRALinear`: `linear.*`, `lora_a` `[in, r]`, `lora_b` `[r, out]`, `m` `[out]`.
///
/// ```
/// use mlx_lm::tuner::DoraLinear;
/// use mlx_rs::nn::{Linear, UnaryModule};
/// use mlx_rs::{ops, Dtype};
/// let dora = DoraLinear::from_base(Linear::new(16, 8, false)?.into(), 4, 0.0, 2.0)?;
/// let x = ops::ones(&[2, 16], Dtype::Float32)?;
/// let (got, base) = (dora.forward(&x)?.to_vec::<f32>()?, dora.linear.forward(&x)?.to_vec::<f32>()?);
/// // `m` starts at the base's row norms and `lora_b` at zero: the base's output.
/// assert!(got.iter().zip(&base).all(|(a, b)| (a - b).abs() < 1e-5));
/// # Ok::<(), mlx_lm::Error>(())
/// ```
#[derive(Clone, Module)]
pub struct DoraLinear {
    /// The base layer (its parameters frozen by [`DoraLinear::from_base`]).
    pub linear: MaybeQuantized<nn::Linear>,
    /// Dropout on the update's input (training mode only).
    pub dropout: nn::Dropout,
    /// `[input_dims, rank]`.
    pub lora_a: Param,
    /// `[rank, output_dims]`.
    pub lora_b: Param,
    /// The magnitude of each output row, `[output_dims]` (float32 at first: the base
    /// weight's row norms).
    pub m: Param,
    /// The factor of the update.
    #[module(skip)]
    pub scale: f32,
}

impl DoraLinear {
    /// Wraps `linear` with a fresh update of rank `rank` and `m` set to the row norms of
    /// its (dequantized) weight, as `DoRALinear.from_base`; the base is frozen.
    ///
    /// # Errors
    /// A rank below 1, a dropout probability outside `[0, 1)`.
    pub fn from_base(
        mut linear: MaybeQuantized<nn::Linear>,
        rank: i32,
        dropout: f32,
        scale: f32,
    ) -> Result<DoraLinear> {
        check_rank(rank)?;
        let (input_dims, output_dims) = dims(&linear);
        let w = dense_weight(&linear)?.astype(Dtype::Float32)?;
        let m = linalg::norm_l2(&w, Some(&[1]), false)?;
        linear.freeze()?;
        Ok(DoraLinear {
            linear,
            dropout: nn::Dropout::new(dropout)?,
            lora_a: init_a(input_dims, rank)?,
            lora_b: Param::new(ops::zeros(&[rank, output_dims], Dtype::Float32)?),
            m: Param::new(m),
            scale,
        })
    }

    /// `m / ‖W + scale · Bᵀ Aᵀ‖` per output row, not differentiated: the factor each
    /// output row is multiplied by (before the bias).
    pub fn row_scale(&self) -> Result<Array> {
        let w = dense_weight(&self.linear)?;
        let adapted = w.add(&weight_delta(&self.lora_a, &self.lora_b, self.scale)?)?;
        let denom = linalg::norm_l2(&adapted, Some(&[1]), false)?.stop_gradient()?;
        Ok(self.m.divide(&denom)?)
    }

    /// The base layer with the update and magnitude merged into its weight
    /// (`m / ‖W'‖_row · W'` with `W' = W + scale · Bᵀ Aᵀ`), quantized again as the base was
    /// unless `dequantize` — `DoRALinear.fuse`.
    pub fn fuse(&self, dequantize: bool) -> Result<MaybeQuantized<nn::Linear>> {
        let w = dense_weight(&self.linear)?;
        let delta = weight_delta(&self.lora_a, &self.lora_b, self.scale)?.astype(w.dtype())?;
        let w = w.add(&delta)?;
        let norm_scale = self.m.divide(&linalg::norm_l2(&w, Some(&[1]), false)?)?;
        let fused = norm_scale.expand_dims(1)?.multiply(&w)?;
        rebuild(&self.linear, fused, dequantize)
    }
}

impl UnaryModule for DoraLinear {
    fn forward(&self, x: &Array) -> mlx_rs::Result<Array> {
        let w = dense_weight(&self.linear)?;
        let y = x.matmul(&w.transpose()?)?;
        let z = self
            .dropout
            .forward(x)?
            .matmul(&self.lora_a)?
            .matmul(&self.lora_b)?;
        let out = y.add(&z.multiply_scalar(self.scale)?.astype(x.dtype())?)?;
        let adapted = w.add(&weight_delta(&self.lora_a, &self.lora_b, self.scale)?)?;
        let denom = linalg::norm_l2(&adapted, Some(&[1]), false)?.stop_gradient()?;
        let out = self.m.divide(&denom)?.astype(x.dtype())?.multiply(&out)?;
        match bias(&self.linear) {
            Some(b) => out.add(b),
            None => Ok(out),
        }
    }
}
