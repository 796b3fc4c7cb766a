//! [`Embedding`] and [`QuantizedEmbedding`].

use super::linear::{check_last_dim, quantized_parts, visit_quantized, visit_quantized_mut};
use super::module::{Module, UnaryModule, Visitor, VisitorMut};
use super::param::{KeyPath, Param};
use super::quantize::{MaybeQuantized, Quantizable};
use crate::ops::{self, QuantizeOptions};
use crate::{random, Array, Dtype, Error, Result};

/// A lookup table of `num_embeddings` vectors of size `dims`: `forward(ids)` returns the
/// rows `ids` of `weight` (Python's `mlx.nn.Embedding`, same initialisation: normal with
/// standard deviation √(1/dims)).
///
/// [`Embedding::as_linear`] multiplies by the transposed table, for language-model heads
/// tied to the input embedding.
///
/// Ids outside `[0, num_embeddings)` do not read outside the table (Python MLX reads out of
/// bounds): negative ids count from the end and the rest are clamped, as every index of
/// [`ops::take_axis`] is (see `docs/bad-input.md`).
///
/// ```
/// use mlx_rs::nn::{Embedding, UnaryModule};
/// use mlx_rs::{Array, Dtype};
/// let embed = Embedding::new(10, 4)?;
/// let ids = Array::from_slice(&[1i32, 7, 7], &[1, 3])?;
/// let h = embed.forward(&ids)?;
/// assert_eq!(h.shape(), &[1, 3, 4]);
/// assert_eq!(embed.as_linear(&h)?.shape(), &[1, 3, 10]); // tied head
/// assert!(embed.forward(&ids.astype(Dtype::Float32)?).is_err()); // ids must be integers
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone, super::Module)]
pub struct Embedding {
    /// `[num_embeddings, dims]`.
    pub weight: Param,
}

impl Embedding {
    /// A randomly initialised table (float32).
    pub fn new(num_embeddings: i32, dims: i32) -> Result<Embedding> {
        if num_embeddings <= 0 || dims <= 0 {
            return Err(Error::InvalidArgument(format!(
                "Embedding: sizes must be positive, got {num_embeddings} × {dims}"
            )));
        }
        let scale = (1.0 / dims as f32).sqrt();
        let weight = random::normal(&[num_embeddings, dims], Dtype::Float32, 0.0, scale, None)?;
        Ok(Embedding {
            weight: Param::new(weight),
        })
    }

    /// A table with the given weight (`[num_embeddings, dims]`).
    pub fn from_weights(weight: Array) -> Result<Embedding> {
        if weight.ndim() != 2 {
            return Err(Error::Shape(format!(
                "Embedding: the weight must be [num_embeddings, dims], got {:?}",
                weight.shape()
            )));
        }
        Ok(Embedding {
            weight: Param::new(weight),
        })
    }

    /// The number of vectors.
    pub fn num_embeddings(&self) -> i32 {
        self.weight.shape()[0]
    }

    /// The size of each vector.
    pub fn dims(&self) -> i32 {
        self.weight.shape()[1]
    }

    /// `x · weightᵀ`: scores against every vector of the table (`x`'s last axis has size
    /// `dims`; the result's has size `num_embeddings`).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        check_last_dim("Embedding::as_linear", x, self.dims())?;
        x.matmul(&self.weight.transpose()?)
    }
}

/// Fails unless `ids` is an integer array.
fn check_ids(layer: &str, ids: &Array) -> Result<()> {
    if ids.dtype().is_integer() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{layer}: ids must be an integer array, got {:?} (cast token ids with \
             astype(Dtype::Int32))",
            ids.dtype()
        )))
    }
}

impl UnaryModule for Embedding {
    /// The rows `ids` (any shape of integers) of the table: `ids.shape + [dims]`.
    fn forward(&self, ids: &Array) -> Result<Array> {
        check_ids("Embedding", ids)?;
        self.weight.take_axis(ids, 0)
    }
}

impl Quantizable for Embedding {
    type Quantized = QuantizedEmbedding;
    fn can_quantize(&self, options: &QuantizeOptions) -> bool {
        self.dims() % options.resolved().0 == 0
    }
    fn to_quantized(&self, options: &QuantizeOptions) -> Result<QuantizedEmbedding> {
        QuantizedEmbedding::from_embedding(self, options)
    }
    fn from_quantized(q: &QuantizedEmbedding) -> Result<Embedding> {
        Embedding::from_weights(q.dequantized_weight()?)
    }
}

impl MaybeQuantized<Embedding> {
    /// [`Embedding::as_linear`] or [`QuantizedEmbedding::as_linear`], whichever this is.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        match self {
            MaybeQuantized::Dense(e) => e.as_linear(x),
            MaybeQuantized::Quantized(q) => q.as_linear(x),
        }
    }
}

/// An embedding table with quantized rows (Python's `mlx.nn.QuantizedEmbedding`):
/// `weight` packed in `uint32`, `scales` (and, in the affine mode, `biases`) per group of
/// `group_size` values of each row. `forward` gathers the rows of `ids` and dequantizes
/// only those; [`QuantizedEmbedding::as_linear`] is a quantized matrix product.
///
/// As in [`QuantizedLinear`](super::QuantizedLinear), the quantized parameters stay
/// frozen.
///
/// ```
/// use mlx_rs::nn::{Embedding, QuantizedEmbedding, UnaryModule};
/// use mlx_rs::{ops::QuantizeOptions, Array};
/// let embed = Embedding::new(16, 64)?;
/// let q = QuantizedEmbedding::from_embedding(&embed, &QuantizeOptions::default())?;
/// let ids = Array::from_slice(&[3i32, 9], &[2])?;
/// assert_eq!(q.forward(&ids)?.shape(), &[2, 64]);
/// assert_eq!(q.as_linear(&q.forward(&ids)?)?.shape(), &[2, 16]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QuantizedEmbedding {
    /// Packed rows, `[num_embeddings, dims * bits / 32]` (`uint32`).
    pub weight: Param,
    /// One scale per group.
    pub scales: Param,
    /// One bias per group (affine mode only).
    pub biases: Option<Param>,
    /// Group size, bits and mode (resolved: never `None`).
    pub options: QuantizeOptions,
}

impl QuantizedEmbedding {
    /// Quantizes an [`Embedding`] (its `dims` must be a multiple of the group size).
    pub fn from_embedding(
        embedding: &Embedding,
        options: &QuantizeOptions,
    ) -> Result<QuantizedEmbedding> {
        let (weight, scales, biases, options) = quantized_parts(&embedding.weight, options)?;
        Ok(QuantizedEmbedding {
            weight,
            scales,
            biases,
            options,
        })
    }

    /// The number of vectors.
    pub fn num_embeddings(&self) -> i32 {
        self.weight.shape()[0]
    }

    /// The size of each vector (unpacked).
    pub fn dims(&self) -> i32 {
        self.weight.shape()[1] * 32 / self.options.bits.unwrap_or(4)
    }

    /// The dense table (`[num_embeddings, dims]`).
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

    /// `x · weightᵀ` with the quantized table (see [`Embedding::as_linear`]).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        check_last_dim("QuantizedEmbedding::as_linear", x, self.dims())?;
        ops::quantized_matmul(
            x,
            &self.weight,
            &self.scales,
            self.biases.as_deref(),
            true,
            self.options,
        )
    }
}

impl Module for QuantizedEmbedding {
    fn visit(&self, path: &mut KeyPath, v: &mut dyn Visitor) -> Result<()> {
        visit_quantized(
            path,
            v,
            &self.weight,
            &self.scales,
            self.biases.as_ref(),
            None,
        )
    }
    fn visit_mut(&mut self, path: &mut KeyPath, v: &mut dyn VisitorMut) -> Result<()> {
        visit_quantized_mut(
            path,
            v,
            &mut self.weight,
            &mut self.scales,
            self.biases.as_mut(),
            None,
        )
    }
}

impl UnaryModule for QuantizedEmbedding {
    /// The dequantized rows `ids` of the table: `ids.shape + [dims]`.
    fn forward(&self, ids: &Array) -> Result<Array> {
        check_ids("QuantizedEmbedding", ids)?;
        let rows = |p: &Param| p.take_axis(ids, 0);
        let biases = self.biases.as_ref().map(rows).transpose()?;
        ops::dequantize(
            &rows(&self.weight)?,
            &rows(&self.scales)?,
            biases.as_ref(),
            None,
            None,
            self.options,
        )
    }
}
