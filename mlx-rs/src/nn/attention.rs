//! [`MultiHeadAttention`].

use super::linear::Linear;
use super::module::UnaryModule;
use crate::fast::{self, AttentionMask};
use crate::{ops, Array, Dtype, Error, Result};

/// The input and output sizes of a [`MultiHeadAttention`] other than `dims`; `None` takes
/// Python's default. The default is Python's (every size `dims`, no biases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MultiHeadAttentionOptions {
    /// Features of the queries (default `dims`).
    pub query_input_dims: Option<i32>,
    /// Features of the keys (default `dims`).
    pub key_input_dims: Option<i32>,
    /// Features of the values (default: the keys' features).
    pub value_input_dims: Option<i32>,
    /// Size of the projected values (default `dims`).
    pub value_dims: Option<i32>,
    /// Features of the output (default `dims`).
    pub value_output_dims: Option<i32>,
    /// Whether the four projections have biases.
    pub bias: bool,
}

/// Multi-head attention (Python's `mlx.nn.MultiHeadAttention`): projects queries, keys
/// and values, splits them into `num_heads` heads, runs
/// [`fast::scaled_dot_product_attention`] with scale `1/√head_dim`, and projects the
/// joined heads.
///
/// Inputs are `[batch, length, features]`; the mask, if any, is additive or boolean and
/// broadcasts to `[batch, num_heads, query_length, key_length]` (see
/// [`MultiHeadAttention::create_additive_causal_mask`]).
///
/// ```
/// use mlx_rs::nn::{Module, MultiHeadAttention};
/// use mlx_rs::{ops, Dtype};
/// let mha = MultiHeadAttention::new(16, 4, false)?;
/// let x = ops::ones(&[2, 5, 16], Dtype::Float32)?;
/// let mask = MultiHeadAttention::create_additive_causal_mask(5, Dtype::Float32)?;
/// let y = mha.forward(&x, &x, &x, Some(&mask))?;
/// assert_eq!(y.shape(), &[2, 5, 16]);
/// assert!(mha.parameters()?.contains_key("query_proj.weight"));
/// assert!(MultiHeadAttention::new(16, 3, false).is_err()); // 16 is not a multiple of 3 heads
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone, super::Module)]
pub struct MultiHeadAttention {
    /// Queries → `[.., dims]`.
    pub query_proj: Linear,
    /// Keys → `[.., dims]`.
    pub key_proj: Linear,
    /// Values → `[.., value_dims]`.
    pub value_proj: Linear,
    /// Joined heads → `[.., value_output_dims]`.
    pub out_proj: Linear,
    /// The number of heads.
    pub num_heads: i32,
}

impl MultiHeadAttention {
    /// `num_heads` heads over `dims` features (a multiple of `num_heads`), with or without
    /// biases in the projections (Python's default is without).
    pub fn new(dims: i32, num_heads: i32, bias: bool) -> Result<MultiHeadAttention> {
        MultiHeadAttention::with_options(
            dims,
            num_heads,
            MultiHeadAttentionOptions {
                bias,
                ..Default::default()
            },
        )
    }

    /// `num_heads` heads over `dims` features, with other input and output sizes.
    pub fn with_options(
        dims: i32,
        num_heads: i32,
        options: MultiHeadAttentionOptions,
    ) -> Result<MultiHeadAttention> {
        let value_dims = options.value_dims.unwrap_or(dims);
        if num_heads <= 0 || dims % num_heads != 0 || value_dims % num_heads != 0 {
            return Err(Error::InvalidArgument(format!(
                "MultiHeadAttention: the number of heads ({num_heads}) must be positive and \
                 divide dims ({dims}) and value_dims ({value_dims})"
            )));
        }
        let key_input_dims = options.key_input_dims.unwrap_or(dims);
        let bias = options.bias;
        Ok(MultiHeadAttention {
            query_proj: Linear::new(options.query_input_dims.unwrap_or(dims), dims, bias)?,
            key_proj: Linear::new(key_input_dims, dims, bias)?,
            value_proj: Linear::new(
                options.value_input_dims.unwrap_or(key_input_dims),
                value_dims,
                bias,
            )?,
            out_proj: Linear::new(value_dims, options.value_output_dims.unwrap_or(dims), bias)?,
            num_heads,
        })
    }

    /// Attends from `queries` (`[batch, query_length, query features]`) to `keys` and
    /// `values` (`[batch, key_length, key / value features]`), with an optional additive or
    /// boolean `mask`.
    pub fn forward(
        &self,
        queries: &Array,
        keys: &Array,
        values: &Array,
        mask: Option<&Array>,
    ) -> Result<Array> {
        for (what, x) in [("queries", queries), ("keys", keys), ("values", values)] {
            if x.ndim() != 3 {
                return Err(Error::Shape(format!(
                    "MultiHeadAttention: {what} must be [batch, length, features], got shape {:?}",
                    x.shape()
                )));
            }
        }
        if keys.shape()[..2] != values.shape()[..2] {
            return Err(Error::Shape(format!(
                "MultiHeadAttention: keys {:?} and values {:?} must have the same batch and \
                 length",
                keys.shape(),
                values.shape()
            )));
        }
        let heads = |x: Array| {
            x.unflatten(-1, &[self.num_heads, -1])?
                .transpose_axes(&[0, 2, 1, 3])
        };
        let q = heads(self.query_proj.forward(queries)?)?;
        let k = heads(self.key_proj.forward(keys)?)?;
        let v = heads(self.value_proj.forward(values)?)?;
        let scale = (1.0 / q.shape()[3] as f64).sqrt() as f32;
        let mask = match mask {
            Some(m) => AttentionMask::Array(m),
            None => AttentionMask::None,
        };
        let out = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask)?;
        self.out_proj
            .forward(&out.transpose_axes(&[0, 2, 1, 3])?.flatten(-2, -1)?)
    }

    /// The additive causal mask of `n` positions (`[n, n]`): 0 where a query may attend (the
    /// key is not later than it), the lowest finite value of `dtype` (a floating-point
    /// dtype) elsewhere — Python's `MultiHeadAttention.create_additive_causal_mask`.
    pub fn create_additive_causal_mask(n: i32, dtype: Dtype) -> Result<Array> {
        let lowest = match dtype {
            Dtype::Float16 => f64::from(crate::f16::MIN),
            Dtype::Bfloat16 => f64::from(crate::bf16::MIN),
            Dtype::Float32 => f64::from(f32::MIN),
            Dtype::Float64 => f64::MIN,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "create_additive_causal_mask: {dtype:?} is not a floating-point dtype"
                )))
            }
        };
        if n < 0 {
            return Err(Error::InvalidArgument(format!(
                "create_additive_causal_mask: n must not be negative, got {n}"
            )));
        }
        let i = ops::arange(0.0, n as f64, 1.0, Dtype::Int32)?;
        let later = i.expand_dims(1)?.less(&i.expand_dims(0)?)?;
        later.astype(dtype)?.multiply_scalar(lowest)
    }
}
