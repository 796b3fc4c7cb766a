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
