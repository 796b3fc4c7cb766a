//! Qwen 3.5 (text) inference on MLX from Rust.
//!
//! Load a model folder (or a Hugging Face model id), then generate a stream of tokens.
//!
//! ```no_run
//! use qwen3_5::{GenerateOptions, SamplingParams};
//! let model = qwen3_5::load("path/to/Qwen3.5-2B")?;
//! let options = GenerateOptions {
//!     max_tokens: 64,
//!     sampling: SamplingParams { temperature: 0.7, top_p: 0.9, seed: Some(1), ..Default::default() },
//!     stop_tokens: vec![248046, 248044],
//!     valid_vocab_size: Some(qwen3_5::QWEN3_5_REAL_VOCAB_SIZE),
//!     ..Default::default()
//! };
//! let mut stream = model.generate(&[9707, 11, 1879], options)?;
//! for token in &mut stream {
//!     print!("{} ", token?);
//! }
//! println!("\n{:.1} tokens/s", stream.stats().generation_tps());
//! # Ok::<(), qwen3_5::Error>(())
//! ```
//!
//! # Threads
//!
//! A [`Model`] holds MLX arrays (its weights, evaluated at load), so it is `Send`: load it
//! on one thread and run it on another. It is not `Sync`: MLX arrays must not be used
//! from two threads at once, so give each thread its own model (or its own turn). The
//! compiler enforces both:
//!
//! ```
//! fn send<T: Send>(_: T) {}
//! fn hand_over(model: qwen3_5::Model) {
//!     send(model); // a model may move to another thread
//! }
//! ```
//!
//! ```compile_fail
//! fn sync<T: Sync>(_: &T) {}
//! fn share(model: &qwen3_5::Model) {
//!     sync(model); // one model cannot be shared by threads
//! }
//! ```
#![deny(missing_docs)]

pub mod cache;
pub mod config;
pub mod error;
pub mod generate;
pub mod model;
pub mod options;
pub mod weights;

pub use cache::Cache;
pub use config::{Config, TextConfig};
pub use error::{Error, Result};
pub use generate::{
    FinishReason, GenerateOptions, Generation, GenerationStats, QWEN3_5_REAL_VOCAB_SIZE,
};
pub use mlx_lm::{Sampler, SamplingParams};
pub use model::Model;
pub use options::{Decode, FloatDtype, ModelOptions, Prefill};

/// Loads a model folder (`config.json` + safetensors, Hugging Face or MLX layout, dense
/// or MLX-quantized). Strict: the error names a missing, unexpected or mis-shaped tensor,
/// or a missing or invalid config field.
pub fn load(dir: impl AsRef<std::path::Path>) -> Result<Model> {
    Model::load(dir)
}

/// [`load`] with `options` (see [`ModelOptions`]; [`load`] takes the defaults of the
/// current device).
pub fn load_with(dir: impl AsRef<std::path::Path>, options: ModelOptions) -> Result<Model> {
    Model::load_with(dir, options)
}
