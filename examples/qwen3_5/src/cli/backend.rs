//! The model as the command line uses it: load, logits, streaming generation.
//!
//! Everything the subcommands need from the model goes through this module, so that wiring
//! the `qwen3_5` model implementation in touches only this file. Until this crate has a
//! model implementation, [`Model`] has no values and [`load_model`] says so.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

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
    /// Generation stops after any of these (it is passed to the callback first).
    pub stop_tokens: Vec<u32>,
}

/// Timings of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the stop token included).
    pub generated_tokens: usize,
    /// Time to process the prompt and produce the first token.
    pub prefill: Duration,
    /// Time for the remaining tokens.
    pub decode: Duration,
}

/// A loaded model.
///
/// This crate has no model implementation yet, so there is no value of this type.
#[derive(Debug)]
pub enum Model {}

/// Loads the model of a folder (config.json and safetensors).
pub fn load_model(dir: &Path) -> Result<Model> {
    anyhow::bail!(
        "model loading not available for {}: this build of qwen3_5 has no model \
         implementation (the tokenizer and chat template work: try generate --dry-run)",
        dir.display()
    )
}

impl Model {
    /// Size of the output vocabulary (the logits' last dimension; padded beyond the
    /// tokenizer's ids).
    pub fn vocab_size(&self) -> usize {
        match *self {}
    }

    /// Logits for every position of `tokens`, float32, shape [tokens.len(), vocab_size].
    pub fn forward_logits(&self, _tokens: &[u32]) -> Result<mlx_rs::Array> {
        match *self {}
    }

    /// Generates after `prompt`, calling `on_token` with each new token id; stops at
    /// `max_tokens`, after a stop token, or when `on_token` breaks.
    pub fn generate(
        &self,
        _prompt: &[u32],
        _request: &GenerateRequest,
        _on_token: &mut dyn FnMut(u32) -> ControlFlow<()>,
    ) -> Result<GenerationStats> {
        match *self {}
    }
}
