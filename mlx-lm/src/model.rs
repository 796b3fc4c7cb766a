//! What a language model offers the shared pieces of this crate: generation, the command
//! line, benchmarks.

use crate::cache::Cache;
use crate::error::{Error, Result};
use mlx_rs::{ops, Array, Dtype};

/// A causal language model over a [`Cache`].
///
/// A model crate implements the first four methods; [`prefill`], [`forward_last`] and
/// [`prefill_rows`] have defaults. The trait is object-safe: generation holds a
/// `&dyn LanguageModel`.
///
/// [`prefill`]: LanguageModel::prefill
/// [`forward_last`]: LanguageModel::forward_last
/// [`prefill_rows`]: LanguageModel::prefill_rows
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

    /// Prefills several prompts, each from a fresh cache: one cache per prompt (a batch
    /// of one), holding what [`LanguageModel::prefill`] of that prompt alone into
    /// [`LanguageModel::new_cache`] leaves. The default does exactly that, one prompt
    /// after the other; a model that can run them as one batch padded on the right
    /// ([`PaddedRows`], [`Cache::split_rows`]) overrides it: the serving engine hands it
    /// the prompts of requests that arrive together.
    fn prefill_rows(&self, prompts: &[&[u32]]) -> Result<Vec<Cache>> {
        prompts
            .iter()
            .map(|p| {
                let mut cache = self.new_cache();
                let ids = Array::from_slice(p, &[1, p.len() as i32])?;
                self.prefill(&ids, &mut cache)?;
                Ok(cache)
            })
            .collect()
    }
}

/// Prompts of different lengths as one batch aligned on the left, padded on the right:
/// what [`LanguageModel::prefill_rows`] runs in one forward pass. Causal attention keeps
/// each row's real positions blind to the padding after them; a recurrent layer must
/// leave its state as it stood at the row's end (see [`PaddedRows::valid`]), and the
/// batch's cache is then cut into one cache per row ([`Cache::split_rows`]).
#[derive(Debug, Clone)]
pub struct PaddedRows {
    /// Token ids `[rows, longest]` (`uint32`), padded with id 0.
    pub tokens: Array,
    /// Each row's number of real tokens.
    pub lengths: Vec<i32>,
}

impl PaddedRows {
    /// `prompts` (each at least one token) as a right-padded batch.
    pub fn new(prompts: &[&[u32]]) -> Result<PaddedRows> {
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
            return Err(Error::InvalidArgument(
                "a padded batch needs at least one prompt, none of them empty".into(),
            ));
        }
        let mut ids = Vec::with_capacity(prompts.len() * longest);
        for p in prompts {
            ids.extend_from_slice(p);
            ids.resize(ids.len() + longest - p.len(), 0);
        }
        Ok(PaddedRows {
            tokens: Array::from_slice(&ids, &[prompts.len() as i32, longest as i32])?,
            lengths: prompts.iter().map(|p| p.len() as i32).collect(),
        })
    }

    /// Which positions are real tokens: `[rows, longest]` booleans, `false` on padding.
    pub fn valid(&self) -> Result<Array> {
        let (n, t) = (self.lengths.len() as i32, self.tokens.try_dim(1)?);
        let columns = ops::arange(0.0, t as f64, 1.0, Dtype::Int32)?.reshape(&[1, t])?;
        let lengths = Array::from_slice(&self.lengths, &[n, 1])?;
        Ok(columns.less(&lengths)?)
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
