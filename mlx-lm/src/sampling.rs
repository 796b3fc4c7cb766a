//! Sampling: greedy, temperature, top-k, top-p, min-p, repetition, presence and frequency
//! penalties, seeds.
//!
//! Everything runs on the device and stays lazy, so the next token can be computed while
//! the previous one is being read. The order follows mlx-lm's `generate_step`:
//! penalties on the logits, then log-softmax, then top-p, min-p, top-k filters, then a
//! categorical draw at the temperature (or the arg-max when the temperature is zero).

use crate::error::{Error, Result};
use mlx_rs::{ops, random, Array, Dtype};

/// How to pick the next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` (or anything below `1e-5`) means greedy (arg-max).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose mass reaches `top_p`; `1`
    /// disables.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p ×` the most likely one; `0` disables.
    pub min_p: f32,
    /// `min_p` never leaves fewer tokens than this (at least 1).
    pub min_tokens_to_keep: usize,
    /// Multiplicative penalty (> 0) on the logits of recently seen tokens (sign-aware:
    /// positive logits are divided, negative multiplied); `1` disables.
    pub repetition_penalty: f32,
    /// How many recent tokens (prompt included) the repetition penalty looks at.
    pub repetition_context_size: usize,
    /// Subtracted from the logit of every token seen recently; `0` disables.
    pub presence_penalty: f32,
    /// How many recent tokens (prompt included) the presence penalty looks at.
    pub presence_context_size: usize,
    /// Subtracted from the logit of every recently seen token once per occurrence (as
    /// OpenAI's `frequency_penalty`); `0` disables.
    pub frequency_penalty: f32,
    /// How many recent tokens (prompt included) the frequency penalty looks at.
    pub frequency_context_size: usize,
    /// Seed of the random draws; `None` draws the sampler's key from MLX's global generator
    /// (see `mlx_rs::random::seed`) when the sampler is made.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    /// Greedy decoding, no filters, no penalties.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            min_tokens_to_keep: 1,
            repetition_penalty: 1.0,
            repetition_context_size: 20,
            presence_penalty: 0.0,
            presence_context_size: 20,
            frequency_penalty: 0.0,
            frequency_context_size: 20,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (the default).
    pub fn greedy() -> Self {
        Self::default()
    }

    /// How many recent tokens the penalties look at: the longest context of the
    /// penalties in use, 0 when none is (sampling then needs no history).
    pub fn history_len(&self) -> usize {
        let mut n = 0;
        if self.repetition_penalty != 1.0 {
            n = n.max(self.repetition_context_size);
        }
        if self.presence_penalty != 0.0 {
            n = n.max(self.presence_context_size);
        }
        if self.frequency_penalty != 0.0 {
            n = n.max(self.frequency_context_size);
        }
        n
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be ≥ 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if self.min_tokens_to_keep == 0 {
            return bad("min_tokens_to_keep must be at least 1".into());
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        if !self.presence_penalty.is_finite() {
            return bad(format!(
                "presence_penalty must be finite, got {}",
                self.presence_penalty
            ));
        }
        if !self.frequency_penalty.is_finite() {
            return bad(format!(
                "frequency_penalty must be finite, got {}",
                self.frequency_penalty
            ));
        }
        Ok(())
    }
}

/// Turns logits into token ids, keeping the random key between calls.
pub struct Sampler {
    params: SamplingParams,
    key: Option<Array>,
}

impl Sampler {
    /// A sampler for `params` (validated).
    pub fn new(params: SamplingParams) -> Result<Sampler> {
        params.validate()?;
        let key = match params.seed {
            Some(seed) => Some(random::key(seed)?),
            // Drawn from MLX's global random state now, rather than split from it at each
            // step: a step may then be evaluated on any thread (the global state's splits
            // run on this thread's own stream), and `mlx_rs::random::seed` still decides.
            None if params.temperature > 0.0 => {
                let halves = random::randint_range(0..i32::MAX, &[2], None)?.to_vec::<i32>()?;
                Some(random::key(((halves[0] as u64) << 31) | halves[1] as u64)?)
            }
            None => None,
        };
        Ok(Sampler { params, key })
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks one token per row of `logits` (`[B, V]`), lazily: returns `[B]` `uint32`.
    ///
    /// `history` (`[n]` integer ids, prompt included, may be lazy) feeds the penalties;
    /// ids `≥ valid_vocab` (padding rows of the embedding) are never picked.
    pub fn sample(
        &mut self,
        logits: &Array,
        history: Option<&Array>,
        valid_vocab: Option<i32>,
    ) -> Result<Array> {
        let logits = self.process_logits(logits, history, valid_vocab)?;
        // Below 1e-5 the draw is the arg-max anyway, and below ~3e-39 `1 / temperature`
        // overflows to infinity (NaN scores): such temperatures are greedy.
        let token = if self.params.temperature < 1e-5 {
            ops::argmax_axis(&logits, -1, false)?
        } else {
            let logprobs = logits.subtract(&ops::logsumexp_axis(&logits, -1, true)?)?;
            let logprobs = self.filter_logprobs(&logprobs)?;
            let scaled = logprobs.multiply(&Array::scalar(1.0 / self.params.temperature))?;
            let sub_key = match self.key.take() {
                Some(k) => {
                    let (next, sub) = random::split(&k)?;
                    self.key = Some(next);
                    Some(sub)
                }
                None => None,
            };
            random::categorical(&scaled, -1, sub_key.as_ref())?
        };
        Ok(token.astype(Dtype::Uint32)?)
    }

    /// The logits sampling starts from: fp32, cut to the first `valid_vocab` ids, with
    /// the repetition, presence and frequency penalties applied over `history`.
    pub fn process_logits(
        &self,
        logits: &Array,
        history: Option<&Array>,
        valid_vocab: Option<i32>,
    ) -> Result<Array> {
        if logits.ndim() != 2 {
            return Err(Error::InvalidArgument(format!(
                "logits must be [batch, vocab], found shape {:?}",
                logits.shape()
            )));
        }
        let (b, v) = (logits.dim(0), logits.dim(1));
        let mut logits = logits.astype(Dtype::Float32)?;
        if let Some(n) = valid_vocab {
            if n <= 0 {
                return Err(Error::InvalidArgument(format!(
                    "valid vocabulary size must be positive, got {n}"
                )));
            }
            if n < v {
                logits = ops::slice(&logits, &[0, 0], &[b, n], &[1, 1])?;
            }
        }
        match history {
            Some(h) => self.apply_penalties(&logits, h),
            None => Ok(logits),
        }
    }

    /// The top-p, min-p and top-k filters (in mlx-lm's order) on log-probabilities
    /// `[B, V]`: filtered-out entries become `-inf`.
    pub fn filter_logprobs(&self, logprobs: &Array) -> Result<Array> {
        let p = &self.params;
        let mut logprobs = logprobs.clone();
        if p.top_p < 1.0 {
            logprobs = apply_top_p(&logprobs, p.top_p)?;
        }
        if p.min_p > 0.0 {
            logprobs = apply_min_p(&logprobs, p.min_p, p.min_tokens_to_keep)?;
        }
        // `logprobs` comes from the caller, rank unchecked.
        let width = logprobs.try_dim(-1)?;
        if p.top_k > 0 && (p.top_k as i64) < width as i64 {
            logprobs = apply_top_k(&logprobs, p.top_k as i32)?;
        }
        Ok(logprobs)
    }

    fn apply_penalties(&self, logits: &Array, history: &Array) -> Result<Array> {
        let p = &self.params;
        let n = history.size() as i32;
        let mut logits = logits.clone();
        if n == 0 {
            return Ok(logits);
        }
        let recent = |size: usize| -> Result<Array> {
            let take = (size.min(n as usize)) as i32;
            let ids = ops::slice(history, &[n - take], &[n], &[1])?;
            Ok(ops::expand_dims(&ids.astype(Dtype::Int32)?, 0)?)
        };
        let rows = logits.dim(0);
        if p.repetition_penalty != 1.0 && p.repetition_context_size > 0 {
            let ids = broadcast_rows(&recent(p.repetition_context_size)?, rows)?;
            let sel = ops::take_along_axis(&logits, &ids, -1)?;
            let zero = Array::scalar(0.0f32);
            let penalty = Array::scalar(p.repetition_penalty);
            let sel = ops::r#where(
                &ops::less(&sel, &zero)?,
                &sel.multiply(&penalty)?,
                &sel.divide(&penalty)?,
            )?;
            logits = ops::put_along_axis(&logits, &ids, &sel, -1)?;
        }
        if p.presence_penalty != 0.0 && p.presence_context_size > 0 {
            let ids = broadcast_rows(&recent(p.presence_context_size)?, rows)?;
            let sel = ops::take_along_axis(&logits, &ids, -1)?;
            let sel = sel.subtract(&Array::scalar(p.presence_penalty))?;
            logits = ops::put_along_axis(&logits, &ids, &sel, -1)?;
        }
        if p.frequency_penalty != 0.0 && p.frequency_context_size > 0 {
            // mlx-lm's `logits.at[:, tokens].subtract(penalty)`: duplicates accumulate, so
            // each token loses `penalty ×` its count in the window.
            let ids = recent(p.frequency_context_size)?;
            let count = ids.dim(-1);
            let cols = ops::broadcast_to(&ids, &[rows, count])?;
            let row_ids = ops::broadcast_to(
                &ops::expand_dims(&ops::arange(0.0, rows as f64, 1.0, Dtype::Int32)?, 1)?,
                &[rows, count],
            )?;
            let updates = ops::full(
                &[rows, count, 1, 1],
                &Array::scalar(-p.frequency_penalty),
                Dtype::Float32,
            )?;
            logits = ops::scatter_add(&logits, &[row_ids, cols], &updates, &[0, 1])?;
        }
        Ok(logits)
    }
}

/// `[1, n]` → `[rows, n]`.
fn broadcast_rows(ids: &Array, rows: i32) -> Result<Array> {
    let n = ids.dim(-1);
    Ok(ops::broadcast_to(ids, &[rows, n])?)
}

fn neg_inf() -> Array {
    Array::scalar(f32::NEG_INFINITY)
}

/// Nucleus filter, as mlx-lm's `apply_top_p`: keeps the most likely tokens whose mass
/// reaches `top_p` of the total.
fn apply_top_p(logprobs: &Array, top_p: f32) -> Result<Array> {
    let sorted = ops::sort_axis(logprobs, -1)?;
    let probs = ops::exp(&sorted)?;
    let mass_above = ops::cumsum_axis(&probs, -1, true, false, None)?;
    let rows = probs.dim(0);
    let first = |a: &Array| -> Result<Array> { Ok(ops::slice(a, &[0, 0], &[rows, 1], &[1, 1])?) };
    let total = first(&mass_above)?.add(&first(&probs)?)?;
    let dropped = ops::greater_equal(&mass_above, &total.multiply(&Array::scalar(top_p))?)?;
    let num_dropped = ops::sum_axis(&dropped.astype(Dtype::Int32)?, -1, true)?;
    let threshold = ops::take_along_axis(&sorted, &num_dropped, -1)?;
    Ok(ops::r#where(
        &ops::less(logprobs, &threshold)?,
        &neg_inf(),
        logprobs,
    )?)
}

/// Drops tokens less likely than `min_p ×` the top one, keeping at least `keep` tokens.
fn apply_min_p(logprobs: &Array, min_p: f32, keep: usize) -> Result<Array> {
    let top = ops::max_axis(logprobs, -1, true)?;
    let threshold = top.add(&Array::scalar(min_p.ln()))?;
    let mut remove = ops::less(logprobs, &threshold)?;
    let width = logprobs.try_dim(-1)?;
    if keep > 1 {
        let keep = (keep as i32).min(width);
        let idx = ops::argpartition_axis(&logprobs.negative()?, keep - 1, -1)?;
        let rows = logprobs.dim(0);
        let top_idx = ops::slice(&idx, &[0, 0], &[rows, keep], &[1, 1])?;
        let falses = ops::zeros(&[rows, keep], Dtype::Bool)?;
        remove = ops::put_along_axis(&remove, &top_idx, &falses, -1)?;
    }
    Ok(ops::r#where(&remove, &neg_inf(), logprobs)?)
}

/// Keeps the `k` most likely tokens (exactly `k`, ties broken by position).
fn apply_top_k(logprobs: &Array, k: i32) -> Result<Array> {
    let (rows, width) = (logprobs.dim(0), logprobs.dim(-1));
    let idx = ops::argpartition_axis(&logprobs.negative()?, k - 1, -1)?;
    let drop = ops::slice(&idx, &[0, k], &[rows, width], &[1, 1])?;
    let infs = ops::broadcast_to(&neg_inf(), &[rows, width - k])?;
    Ok(ops::put_along_axis(logprobs, &drop, &infs, -1)?)
}
