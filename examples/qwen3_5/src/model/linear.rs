//! Dense or MLX-quantized linear layers and embeddings.

use crate::config::QuantParams;
use crate::error::Result;
use mlx_rs::{ops, Array, Dtype};

/// Quantized weights: packed `uint32` rows with one scale and bias per group.
#[derive(Clone)]
pub struct Quantized {
    /// `[out, in · bits / 32]`, `uint32`.
    pub weight: Array,
    /// `[out, in / group_size]`.
    pub scales: Array,
    /// `[out, in / group_size]`.
    pub biases: Array,
    /// Group size and bit width.
    pub params: QuantParams,
}

impl Quantized {
    /// `x @ Wᵀ` with the packed weight.
    fn matmul_t(&self, x: &Array) -> Result<Array> {
        Ok(ops::quantized_matmul(
            x,
            &self.weight,
            &self.scales,
            Some(&self.biases),
            true,
            self.options(),
        )?)
    }

    /// The float rows `ids` of the weight (`[.., in]`).
    fn rows(&self, ids: &Array) -> Result<Array> {
        let w = ops::take_axis(&self.weight, ids, 0)?;
        let s = ops::take_axis(&self.scales, ids, 0)?;
        let b = ops::take_axis(&self.biases, ids, 0)?;
        Ok(ops::dequantize(
            &w,
            &s,
            Some(&b),
            None,
            None,
            self.options(),
        )?)
    }

    fn options(&self) -> ops::QuantizeOptions {
        ops::QuantizeOptions {
            group_size: Some(self.params.group_size),
            bits: Some(self.params.bits),
            mode: ops::QuantizationMode::Affine,
        }
    }
}

/// A bias-free linear layer `y = x Wᵀ`, dense or quantized.
#[derive(Clone)]
pub enum Linear {
    /// Float weight `[out, in]`.
    Dense(Array),
    /// MLX affine-quantized weight.
    Quantized(Quantized),
}

impl Linear {
    /// Applies the layer to the last axis of `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Linear::Dense(w) => Ok(ops::matmul(x, &ops::transpose(w)?)?),
            Linear::Quantized(q) => q.matmul_t(x),
        }
    }
}

/// A token embedding `[vocab, hidden]`, dense or quantized; it doubles as the output
/// head when the embeddings are tied.
#[derive(Clone)]
pub struct Embedding {
    /// The table.
    pub table: Linear,
}

impl Embedding {
    /// The rows for `ids` (any shape), with a trailing `hidden` axis.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        match &self.table {
            Linear::Dense(w) => Ok(ops::take_axis(w, ids, 0)?),
            Linear::Quantized(q) => q.rows(ids),
        }
    }

    /// `x @ tableᵀ`: logits over the vocabulary (tied output head).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        self.table.forward(x)
    }

    /// The dtype activations take when they start from this table.
    pub fn dtype(&self) -> Dtype {
        match &self.table {
            Linear::Dense(w) => w.dtype(),
            Linear::Quantized(q) => q.scales.dtype(),
        }
    }
}
