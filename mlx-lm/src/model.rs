//! What a language model offers the shared pieces of this crate: generation, the command
//! line, benchmarks.

use crate::cache::Cache;
use crate::error::{Error, Result};
use mlx_rs::{ops, Array, Dtype};

/// A causal language model over a [`Cache`].
///
/// A model crate implements the first four methods; [`prefill`] and [`forward_last`] have
/// defaults. The trait is object-safe: generation holds a `&dyn LanguageModel`.
///
/// [`prefill`]: LanguageModel::prefill
/// [`forward_last`]: LanguageModel::forward_last
pub trait LanguageModel {
    /// Logits `[B, T, vocab]` for `tokens` (`[B, T]`, integer ids), continuing the
    /// sequences held in `cache` (which is updated). Works for a whole prompt and for
    /// single steps. Evaluating only the cache's arrays skips the output head (MLX is
    /// lazy), which is what prefill does.
    fn forward(&self, tokens: &Array, cache: &mut Cache) -> Result<Array>;

    /// A fresh, empty cache for one batch of sequences.
    fn new_cache(&self) -> Cache;

    /// Rows of the output head (the vocabulary size, padding rows included).
    fn vocab_size(&self) -> i32;

    /// The dtype of the activations.
    fn dtype(&self) -> Dtype;

    /// Takes `tokens` into `cache` without the logits (prefill). The default builds
    /// [`LanguageModel::forward`] and drops the logits, which MLX then never computes; a
    /// model whose products run eagerly somewhere (a CPU GEMM outside MLX's graph)
    /// overrides it to skip the output head.
    fn prefill(&self, tokens: &Array, cache: &mut Cache) -> Result<()> {
        self.forward(tokens, cache).map(drop)
    }

    /// Logits of the last position only (`[B, vocab]`): what a decode step needs. The
    /// default slices [`LanguageModel::forward`]'s output; a model may skip the head for
    /// the other positions.
    fn forward_last(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let logits = self.forward(tokens, cache)?;
        last_position(&logits)
    }
}

/// The last position of `[B, T, D]` as `[B, D]`.
pub fn last_position(x: &Array) -> Result<Array> {
    match x.shape() {
        &[b, t, d] if t > 0 => {
            Ok(ops::slice(x, &[0, t - 1, 0], &[b, t, d], &[1, 1, 1])?.reshape(&[b, d])?)
        }
        s => Err(Error::InvalidArgument(format!(
            "expected a [batch, length, features] array with length > 0, found shape {s:?}"
        ))),
    }
}

/// Checks that every id of `tokens` is in `0..vocab`: an id outside it would be clamped
/// by the embedding's gather and silently read another token's row.
///
/// The check is made on the host, and only where the ids already are there
/// ([`Array::is_available`]: arrays made from a slice, as every prompt is): one pass over
/// `batch × length` integers, no evaluation. Ids still being computed (the token a decode
/// step samples, which the sampler draws inside the vocabulary) are not waited for: that
/// would stop the next step from being built while the device works.
pub fn check_token_ids(tokens: &Array, vocab: i32) -> Result<()> {
    if !tokens.is_available() {
        return Ok(());
    }
    fn first_bad<T: Copy + Into<i128>>(ids: &[T], vocab: i32) -> Option<i128> {
        ids.iter()
            .map(|&t| t.into())
            .find(|&t| t < 0 || t >= i128::from(vocab))
    }
    // A view that is not dense row-major (rare for ids) is not checked.
    macro_rules! scan {
        ($t:ty) => {
            tokens
                .as_slice::<$t>()
                .ok()
                .and_then(|t| first_bad(t, vocab))
        };
    }
    let bad = match tokens.dtype() {
        Dtype::Uint32 => scan!(u32),
        Dtype::Int32 => scan!(i32),
        Dtype::Int64 => scan!(i64),
        Dtype::Uint64 => scan!(u64),
        Dtype::Int16 => scan!(i16),
        Dtype::Uint16 => scan!(u16),
        Dtype::Int8 => scan!(i8),
        Dtype::Uint8 => scan!(u8),
        other => {
            return Err(Error::InvalidArgument(format!(
                "token ids must be integers, found {other:?}"
            )))
        }
    };
    match bad {
        Some(id) => Err(Error::InvalidArgument(format!(
            "token id {id} is outside the vocabulary (0..{vocab})"
        ))),
        None => Ok(()),
    }
}

/// Checks that `tokens` is `[batch, length]` with `length > 0`, as a model's `forward`
/// needs, and that `cache` has `layers` layers.
pub fn check_input(tokens: &Array, cache: &Cache, layers: usize) -> Result<()> {
    if tokens.ndim() != 2 {
        return Err(Error::InvalidArgument(format!(
            "tokens must be [batch, length], found shape {:?}",
            tokens.shape()
        )));
    }
    if tokens.shape()[1] == 0 {
        return Err(Error::InvalidArgument("no tokens to process".into()));
    }
    if cache.layers.len() != layers {
        return Err(Error::InvalidArgument(format!(
            "the cache has {} layers, the model {layers}",
            cache.layers.len()
        )));
    }
    Ok(())
}
