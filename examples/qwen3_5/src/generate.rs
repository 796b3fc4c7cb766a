//! Streaming generation (`mlx-lm`'s, over this model): prefill, pipelined decode, stop
//! tokens, statistics.

use crate::cache::Cache;
use crate::error::Result;
use crate::model::Model;
pub use mlx_lm::generate::{
    peak_memory, FinishReason, GenerateOptions, Generation, GenerationStats,
};

/// Number of real token ids of Qwen 3.5's vocabulary; rows from here to the padded
/// `vocab_size` (248320) are never produced by the tokenizer and must not be sampled.
pub const QWEN3_5_REAL_VOCAB_SIZE: i32 = 248077;

impl Model {
    /// Starts generating after `prompt` from an empty cache ([`mlx_lm::generate()`]).
    pub fn generate(&self, prompt: &[u32], options: GenerateOptions) -> Result<Generation<'_>> {
        mlx_lm::generate(self, prompt, options)
    }

    /// Starts generating after `prompt`, continuing the sequence held in `cache` (for
    /// multi-turn chat: take the cache back with [`Generation::into_cache`]).
    pub fn generate_with_cache(
        &self,
        prompt: &[u32],
        cache: Cache,
        options: GenerateOptions,
    ) -> Result<Generation<'_>> {
        mlx_lm::generate_with_cache(self, prompt, cache, options)
    }
}
