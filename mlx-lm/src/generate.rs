//! Streaming generation: prefill, pipelined decode, stop tokens, statistics.
//!
//! [`generate`] returns a [`Generation`], an iterator of token ids. The prompt is
//! processed in chunks (all but its last token), then each step builds the graph of the
//! next token and starts it with `async_eval` *before* reading the current one, so the
//! device computes token `n + 1` while the host hands out token `n`.
//!
//! On a GPU the host's work per token (building the graph, then MLX's walk and encoding
//! of it) is what bounds decode. There the steps are started on a second thread (see
//! [`GenerateOptions::submit_thread`]): the generating thread builds the graph of token
//! `n + 2` while that thread starts token `n + 1` and reads token `n`. A stop token then
//! has one step computed past it, which is undone in the cache (the cache ends where it
//! would without the thread).

use crate::cache::{Cache, Snapshot};
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::sampling::{Sampler, SamplingParams};
use crate::submitter::{LentStream, Submitter};
use mlx_rs::{ops, Array, DeviceType, Dtype};
use std::time::{Duration, Instant};

/// Options of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most tokens to sample (a sampled stop token counts).
    pub max_tokens: usize,
    /// How tokens are picked.
    pub sampling: SamplingParams,
    /// Generation ends when one of these is sampled; it is not yielded.
    pub stop_tokens: Vec<u32>,
    /// Ids at or above this are never sampled (the padding rows of the vocabulary: Qwen
    /// 3.5, for one, has 248077 real ids in a 248320-row table). `None` allows all rows.
    pub valid_vocab_size: Option<i32>,
    /// Prompt tokens processed per forward call during prefill (bounds the graph of one
    /// call: a sequential recurrent form adds a few ops per token and layer).
    pub prefill_step: usize,
    /// Whether decode steps are handed to MLX on a second thread, so that building one
    /// step's graph and MLX's encoding of the one before run side by side (the tokens are
    /// the same either way). `None` decides by the device: on when the generating
    /// thread's default stream is on a GPU, except on macOS (not measured on Metal yet).
    /// Measured on an H200 (Qwen 3.5 2B, bf16): it won 8 of 10 A/B pairs, by up to 46 %;
    /// on a 2-core CPU it made no difference (decode there is bound by compute).
    pub submit_thread: Option<bool>,
}

impl Default for GenerateOptions {
    /// 256 greedy tokens, no stop tokens, no vocabulary mask, prefill in chunks of 512.
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop_tokens: Vec::new(),
            valid_vocab_size: None,
            prefill_step: 512,
            submit_thread: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was sampled.
    Stop(u32),
    /// `max_tokens` were sampled.
    Length,
}

/// Timings and memory of a finished (or running) generation.
#[derive(Debug, Clone, Default)]
pub struct GenerationStats {
    /// Prompt tokens processed.
    pub prompt_tokens: usize,
    /// From the start of prefill until the first token was available.
    pub prompt_time: Duration,
    /// Tokens sampled (a stop token included).
    pub generated_tokens: usize,
    /// From the first token until the last one was available.
    pub generation_time: Duration,
    /// Peak MLX memory in bytes (since the process started or the peak was last reset).
    pub peak_memory: usize,
    /// Host time spent building the decode steps' graphs (forward pass and sampling),
    /// all steps together: with [`GenerationStats::submit_time`], what the host adds per
    /// token when the device is fast.
    pub build_time: Duration,
    /// Host time spent handing the decode steps' graphs to MLX (`async_eval`: MLX walks
    /// the graph and, on a GPU, encodes the kernels on the calling thread). With
    /// [`GenerateOptions::submit_thread`] this runs on the second thread, beside
    /// [`GenerationStats::build_time`] rather than after it.
    pub submit_time: Duration,
    /// Why it ended (`None` while running).
    pub finish_reason: Option<FinishReason>,
    /// The logits of the first sampled token held NaN or an infinity (corrupt weights,
    /// an overflow): what was sampled means nothing. Only the first step is checked (one
    /// reduction, evaluated with its token), which is where bad weights show.
    pub nonfinite_logits: bool,
}

impl GenerationStats {
    /// Prompt tokens per second.
    pub fn prompt_tps(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_time)
    }

    /// Generated tokens per second (after the first one, which belongs to the prompt time).
    pub fn generation_tps(&self) -> f64 {
        rate(
            self.generated_tokens.saturating_sub(1),
            self.generation_time,
        )
    }
}

fn rate(n: usize, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Peak memory MLX has used, in bytes (0 if MLX cannot tell).
pub fn peak_memory() -> usize {
    mlx_rs::memory::get_peak_memory().unwrap_or(0)
}

/// A running generation: iterate to get token ids; [`Generation::stats`] once done.
pub struct Generation<'m> {
    model: &'m dyn LanguageModel,
    cache: Cache,
    sampler: Sampler,
    options: GenerateOptions,
    /// Tokens seen (prompt included), for the penalties; `None` when no penalty is on.
    history: Option<Array>,
    /// The token being computed (already started); with the submit thread, the last
    /// token handed to it. `None` once the generation has ended.
    pending: Option<Array>,
    /// The submit thread, when steps are started there (dropped before `stream`).
    submitter: Option<Submitter>,
    /// The stream the submit thread evaluates on: the steps are built on it.
    stream: Option<LentStream>,
    /// Steps handed to the submit thread so far (step `j` samples token `j`).
    sent: usize,
    /// The cache before the last step handed over (kept when stop tokens are set: that
    /// step is undone if the token before it is a stop token).
    before_last: Option<Snapshot>,
    started: Instant,
    first_token_at: Option<Instant>,
    stats: GenerationStats,
    /// Whether the first step's logits are all finite (`bool` scalar, evaluated with its
    /// token); taken when that token is read.
    first_finite: Option<Array>,
}

/// Starts generating after `prompt` from an empty cache.
pub fn generate<'m>(
    model: &'m dyn LanguageModel,
    prompt: &[u32],
    options: GenerateOptions,
) -> Result<Generation<'m>> {
    generate_with_cache(model, prompt, model.new_cache(), options)
}

/// Starts generating after `prompt`, continuing the sequence held in `cache` (for
/// multi-turn chat: take the cache back with [`Generation::into_cache`]).
pub fn generate_with_cache<'m>(
    model: &'m dyn LanguageModel,
    prompt: &[u32],
    cache: Cache,
    options: GenerateOptions,
) -> Result<Generation<'m>> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("the prompt is empty".into()));
    }
    if options.prefill_step == 0 {
        return Err(Error::InvalidArgument(
            "prefill_step must be positive".into(),
        ));
    }
    let vocab = model.vocab_size();
    if let Some(&bad) = prompt.iter().find(|&&t| t as i64 >= vocab as i64) {
        return Err(Error::InvalidArgument(format!(
            "prompt token {bad} is outside the vocabulary ({vocab} rows)"
        )));
    }
    let sampler = Sampler::new(options.sampling.clone())?;
    let p = sampler.params();
    let wants_history = p.history_len() > 0;
    let mut g = Generation {
        model,
        cache,
        sampler,
        options,
        history: None,
        pending: None,
        submitter: None,
        stream: None,
        sent: 0,
        before_last: None,
        started: Instant::now(),
        first_token_at: None,
        stats: GenerationStats {
            prompt_tokens: prompt.len(),
            ..Default::default()
        },
        first_finite: None,
    };
    if wants_history {
        g.history = Some(Array::from_slice(prompt, &[prompt.len() as i32])?);
    }
    if g.options.max_tokens > 0
        && g.options
            .submit_thread
            .unwrap_or_else(submit_thread_default)
    {
        let device = mlx_rs::current_stream()?.device()?;
        g.stream = Some(LentStream::lend(&device)?);
        g.submitter = Some(Submitter::start()?);
    }
    g.prefill(prompt)?;
    Ok(g)
}

impl Generation<'_> {
    /// Runs all prompt tokens but the last through the model in chunks, then starts the
    /// first sampled token.
    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        if self.options.max_tokens == 0 {
            // Nothing to sample: only take the prompt into the cache.
            for chunk in prompt.chunks(self.options.prefill_step) {
                let ids = Array::from_slice(chunk, &[1, chunk.len() as i32])?;
                self.model.prefill(&ids, &mut self.cache)?;
                mlx_rs::eval(&self.cache.arrays())?;
            }
            self.stats.prompt_time = self.started.elapsed();
            self.finish(FinishReason::Length);
            return Ok(());
        }
        let (head, last) = prompt.split_at(prompt.len() - 1);
        for chunk in head.chunks(self.options.prefill_step) {
            let ids = Array::from_slice(chunk, &[1, chunk.len() as i32])?;
            self.model.prefill(&ids, &mut self.cache)?;
            mlx_rs::eval(&self.cache.arrays())?;
        }
        let ids = Array::from_slice(last, &[1, 1])?;
        if self.submitter.is_some() {
            self.hand_over(&ids)?;
        } else {
            let next = self.step(&ids)?;
            self.pending = Some(next);
        }
        Ok(())
    }

    /// Builds (and starts) the computation of the token that follows `input` (`[1, 1]`).
    fn step(&mut self, input: &Array) -> Result<Array> {
        let token = self.build(input)?;
        let mut to_eval = vec![&token];
        to_eval.extend(self.cache.arrays());
        to_eval.extend(self.first_finite.as_ref());
        let started = Instant::now();
        mlx_rs::async_eval(&to_eval)?;
        self.stats.submit_time += started.elapsed();
        Ok(token)
    }

    /// Builds the step that samples the token after `input` (one id) and hands it to the
    /// submit thread.
    fn hand_over(&mut self, input: &Array) -> Result<()> {
        if !self.options.stop_tokens.is_empty() {
            self.before_last = Some(self.cache.snapshot());
        }
        let stream = self
            .stream
            .as_ref()
            .ok_or_else(lost_state)?
            .stream()
            .clone();
        // The input too is made on that stream (it may be the previous step's token).
        let token = mlx_rs::with_stream(&stream, || self.build(&input.reshape(&[1, 1])?))?;
        let mut arrays = vec![token.clone()];
        arrays.extend(self.cache.arrays().into_iter().cloned());
        arrays.extend(self.first_finite.clone());
        let submitter = self.submitter.as_ref().ok_or_else(lost_state)?;
        submitter.send(arrays)?;
        self.sent += 1;
        self.pending = Some(token);
        Ok(())
    }

    /// The next token id with the submit thread: first hands over the steps up to
    /// [`STEPS_AHEAD`] tokens past `index` (so that one is being started while the next is
    /// built), then takes the id of token `index`.
    fn next_handed_over(&mut self, index: usize) -> Result<u32> {
        let ahead = (index + 1 + STEPS_AHEAD).min(self.options.max_tokens);
        while self.sent < ahead {
            let input = self.pending.clone().ok_or_else(lost_state)?;
            self.hand_over(&input)?;
        }
        let submitter = self.submitter.as_ref().ok_or_else(lost_state)?;
        if self.sent == index + 1 {
            submitter.flush()?;
        }
        let (id, submit) = submitter.recv()?;
        self.stats.submit_time += submit;
        Ok(id)
    }

    /// After a stop token at `index`: the step handed over past `index + 1` (at most one:
    /// [`STEPS_AHEAD`] is 2) fed a token past the stop token into the cache; go back to
    /// before it.
    fn undo_past(&mut self, index: usize) -> Result<()> {
        if self.submitter.is_some() && self.sent > index + 2 {
            let snapshot = self.before_last.take().ok_or_else(lost_state)?;
            self.cache.restore(snapshot)?;
        }
        Ok(())
    }

    /// Builds the graph of the step that samples the token after `input`.
    fn build(&mut self, input: &Array) -> Result<Array> {
        let started = Instant::now();
        let logits = self.model.forward_last(input, &mut self.cache)?;
        if self.stats.generated_tokens == 0 && self.first_finite.is_none() {
            self.first_finite = Some(ops::all(&ops::isfinite(&logits)?, false)?);
        }
        let token = self.sampler.sample(
            &logits,
            self.history.as_ref(),
            self.options.valid_vocab_size,
        )?;
        if let Some(h) = &self.history {
            self.history = Some(ops::concatenate_axis(
                &[h.clone(), token.astype(Dtype::Uint32)?],
                0,
            )?);
        }
        self.stats.build_time += started.elapsed();
        Ok(token)
    }

    /// The statistics so far (final once the iterator has returned `None`).
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    /// The cache, to continue the sequence (multi-turn chat). It holds every token fed to
    /// the model: the prompt and each sampled token that was followed by another step.
    /// So after a stop token it includes the stop token, and after the length limit it
    /// lacks the last token. [`Cache::offset`] says how many positions it holds.
    pub fn into_cache(self) -> Cache {
        self.cache
    }

    fn finish(&mut self, reason: FinishReason) {
        self.stop();
        self.stats.finish_reason = Some(reason);
        self.stats.peak_memory = peak_memory();
    }

    /// Ends the generation: no token pending, the submit thread (if any) joined.
    fn stop(&mut self) {
        self.pending = None;
        self.submitter = None;
        self.stream = None;
        self.before_last = None;
    }

    fn next_token(&mut self) -> Result<Option<u32>> {
        if self.pending.is_none() {
            return Ok(None);
        }
        let index = self.stats.generated_tokens;
        self.stats.generated_tokens += 1;
        let reached_limit = self.stats.generated_tokens >= self.options.max_tokens;
        let token = if self.submitter.is_some() {
            self.next_handed_over(index)?
        } else {
            let current = self.pending.take().ok_or_else(lost_state)?;
            // Start the following token before waiting for this one.
            if !reached_limit {
                let input = current.reshape(&[1, 1])?;
                self.pending = Some(self.step(&input)?);
            }
            current.item::<u32>()?
        };
        if let Some(finite) = self.first_finite.take() {
            // Evaluated with the token just read.
            self.stats.nonfinite_logits = !finite.item::<bool>()?;
        }
        let now = Instant::now();
        match self.first_token_at {
            None => {
                self.first_token_at = Some(now);
                self.stats.prompt_time = now - self.started;
            }
            Some(first) => self.stats.generation_time = now - first,
        }
        if self.options.stop_tokens.contains(&token) {
            self.undo_past(index)?;
            self.finish(FinishReason::Stop(token));
            return Ok(None);
        }
        if reached_limit {
            self.finish(FinishReason::Length);
        }
        Ok(Some(token))
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Result<u32>> {
        match self.next_token() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => None,
            Err(e) => {
                self.stop();
                Some(Err(e))
            }
        }
    }
}

/// Steps the submit thread works past the token being read: one being started there
/// while the next is built here. Step `j` feeds token `j − 1` to the cache, so when token
/// `i` is a stop token, one step (`i + 2`) has fed a token past it, which
/// [`Generation::undo_past`] takes back with the single checkpoint it keeps.
const STEPS_AHEAD: usize = 2;

/// The default of [`GenerateOptions::submit_thread`]: on a GPU other than Metal.
fn submit_thread_default() -> bool {
    let on_gpu = mlx_rs::current_stream()
        .and_then(|s| s.device())
        .and_then(|d| d.kind())
        .is_ok_and(|k| k == DeviceType::Gpu);
    on_gpu && !cfg!(target_os = "macos")
}

/// A state the generation's own bookkeeping rules out (reported, never a panic).
fn lost_state() -> Error {
    Error::InvalidArgument("generation: internal state lost (no pending token)".into())
}
