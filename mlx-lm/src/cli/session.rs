//! The model as the command line uses it: logits, streaming generation, and sessions that
//! carry the model's cache from one chat turn to the next.

use std::ops::ControlFlow;

use anyhow::{Context, Result};
use mlx_rs::{Array, Dtype};

use crate::cache::Cache;
use crate::generate::{FinishReason, GenerateOptions};
use crate::model::LanguageModel;
use crate::sampling::SamplingParams;

/// What to generate and how to sample it.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// Top-k (0: off).
    pub top_k: u32,
    /// Top-p in (0, 1].
    pub top_p: f32,
    /// Min-p in [0, 1).
    pub min_p: f32,
    /// Repetition penalty (1: off).
    pub repetition_penalty: f32,
    /// Presence penalty (0: off).
    pub presence_penalty: f32,
    /// Random seed.
    pub seed: u64,
    /// Generation stops at any of these; they are not passed to the callback.
    pub stop_tokens: Vec<u32>,
    /// Ids the tokenizer knows (added tokens included). Where it is smaller than the
    /// model's (padded) vocabulary, the ids from here on are never sampled.
    pub valid_vocab_size: Option<usize>,
}

/// Counts, speeds and memory of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GenerationStats {
    /// Tokens in the prompt (what went through the model for this reply).
    pub prompt_tokens: usize,
    /// Prompt tokens per second (prefill up to the first sampled token, as mlx-lm counts).
    pub prompt_tps: f64,
    /// Tokens generated (a stop token included).
    pub generated_tokens: usize,
    /// Generated tokens per second after the first one.
    pub generation_tps: f64,
    /// Peak memory MLX used, in bytes.
    pub peak_memory: usize,
    /// The stop token that ended the generation, if one did.
    pub stopped_by: Option<u32>,
    /// The first step's logits held NaN or an infinity.
    pub nonfinite_logits: bool,
}

/// A loaded model, as the commands use it.
pub struct Model<M> {
    inner: M,
}

/// A sequence continued over several calls (a multi-turn chat): the model's cache and
/// the tokens that belong to the sequence but have not been through the model yet (the
/// last sampled token is only fed when the next one is computed).
pub struct Session {
    cache: Cache,
    unfed: Vec<u32>,
}

impl Session {
    /// Number of tokens in the sequence so far (processed or waiting).
    pub fn len(&self) -> usize {
        self.cache.offset() as usize + self.unfed.len()
    }

    /// Appends tokens to the sequence; they go through the model with the next prompt.
    pub fn push(&mut self, tokens: &[u32]) {
        self.unfed.extend_from_slice(tokens);
    }

    /// Tokens of the sequence waiting to go through the model with the next prompt.
    pub fn pending(&self) -> usize {
        self.unfed.len()
    }

    /// Whether the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<M: LanguageModel> Model<M> {
    /// Wraps a loaded model.
    pub fn new(inner: M) -> Self {
        Model { inner }
    }

    /// Size of the output vocabulary (the logits' last dimension; padded beyond the
    /// tokenizer's ids).
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size() as usize
    }

    /// Logits for every position of `tokens`, float32, shape [tokens.len(), vocab_size].
    pub fn forward_logits(&self, tokens: &[u32]) -> Result<Array> {
        let n = i32::try_from(tokens.len()).context("too many tokens")?;
        let ids = Array::from_slice(tokens, &[1, n])?;
        let mut cache = self.inner.new_cache();
        let logits = self.inner.forward(&ids, &mut cache)?;
        let logits = logits
            .reshape(&[n, self.vocab_size() as i32])?
            .astype(Dtype::Float32)?;
        logits.eval()?;
        Ok(logits)
    }

    /// An empty sequence.
    pub fn new_session(&self) -> Session {
        Session {
            cache: self.inner.new_cache(),
            unfed: Vec::new(),
        }
    }

    /// Generates after `prompt`, continuing `session`, calling `on_token` with each new
    /// token id; stops at `max_tokens`, at a stop token (not passed on), or when `on_token`
    /// breaks. `prompt` follows what the session holds; afterwards the session holds the
    /// prompt and the reply (with its stop token). Only new tokens go through the model.
    pub fn continue_session(
        &self,
        session: &mut Session,
        prompt: &[u32],
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(u32) -> ControlFlow<()>,
    ) -> Result<GenerationStats> {
        let mut input = std::mem::take(&mut session.unfed);
        input.extend_from_slice(prompt);
        let cache = std::mem::replace(&mut session.cache, self.inner.new_cache());
        let start = cache.offset() as usize;
        let options = self.options(request)?;
        let mut generation = crate::generate_with_cache(&self.inner, &input, cache, options)?;
        let mut sequence = input;
        for token in &mut generation {
            let token = token?;
            sequence.push(token);
            if on_token(token).is_break() {
                break;
            }
        }
        let s = generation.stats();
        let stopped_by = match s.finish_reason {
            Some(FinishReason::Stop(t)) => Some(t),
            _ => None,
        };
        sequence.extend(stopped_by);
        let stats = GenerationStats {
            prompt_tokens: s.prompt_tokens,
            prompt_tps: s.prompt_tps(),
            generated_tokens: s.generated_tokens,
            generation_tps: s.generation_tps(),
            peak_memory: crate::generate::peak_memory(),
            stopped_by,
            nonfinite_logits: s.nonfinite_logits,
        };
        let cache = generation.into_cache();
        // The cache holds a prefix of `sequence`; the rest waits for the next call.
        let fed = (cache.offset() as usize)
            .saturating_sub(start)
            .min(sequence.len());
        session.unfed = sequence.split_off(fed);
        session.cache = cache;
        Ok(stats)
    }

    fn options(&self, r: &GenerateRequest) -> Result<GenerateOptions> {
        let vocab = self.vocab_size();
        let valid_vocab_size = match r.valid_vocab_size {
            Some(n) if n > 0 && n < vocab => Some(n as i32),
            _ => None,
        };
        Ok(GenerateOptions {
            max_tokens: r.max_tokens as usize,
            sampling: SamplingParams {
                temperature: r.temperature,
                top_k: r.top_k as usize,
                top_p: r.top_p,
                min_p: r.min_p,
                repetition_penalty: r.repetition_penalty,
                presence_penalty: r.presence_penalty,
                seed: Some(r.seed),
                ..SamplingParams::default()
            },
            stop_tokens: r.stop_tokens.clone(),
            valid_vocab_size,
            ..GenerateOptions::default()
        })
    }
}
