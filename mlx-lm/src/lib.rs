//! Language models on MLX from Rust: the pieces every model crate shares.
//!
//! A model crate (such as `examples/qwen3_5` in this workspace) defines its configuration
//! and forward pass; what is not specific to one model lives here:
//!
//! - [`tokenizer`]: `tokenizer.json` through the `tokenizers` crate, and streaming
//!   detokenization that never splits a UTF-8 character ([`tokenizer::StreamDecoder`]);
//! - [`chat`]: Hugging Face chat templates rendered with minijinja the way transformers
//!   renders them with Jinja2;
//! - [`sampling`]: greedy, temperature, top-k, top-p, min-p, repetition and presence
//!   penalties, seeded draws, all lazy on the device, in mlx-lm's order;
//! - [`hub`]: a local model folder or a Hugging Face model id, downloaded into the Hugging
//!   Face cache with progress bars;
//! - [`checkpoint`] and [`load`]: safetensors checkpoints (single, sharded), read into a
//!   model through a per-model `sanitize` step, quantization from `config.json` and a
//!   strict [`Module::update`](mlx_rs::nn::Module::update);
//! - [`model`], [`cache`] and [`mod@generate`]: the [`LanguageModel`] trait, the KV and
//!   recurrent caches, and streaming generation;
//! - [`shard`]: tensor parallelism, a layer's weights split across the ranks of an
//!   [`mlx_rs::distributed::Group`] (mlx.nn's `shard_linear`), for a model's `shard`;
//! - [`kernels`]: the kernels of the Qwen 3.5 / Qwen3-Next family (the gated delta rule in
//!   its sequential, chunked, compiled and CUDA/Metal forms behind one dispatch, the
//!   attention decode kernel, the CPU GEMM);
//! - [`linear`]: a model's linear layers on its device (the CPU kernels' entry point for
//!   `mlx_rs::nn` layers, and the storage of float32 weights for MLX's CPU backend);
//! - [`tuner`]: LoRA and DoRA layers and adapters in mlx-lm's format (load, apply, fuse,
//!   save), as mlx-lm's `tuner`;
//! - `serve` (feature `serve`, on by default): an OpenAI-compatible HTTP server with
//!   continuous batching and a prefix cache that works for hybrid models;
//! - `cli` (feature `cli`, on by default): the command line (`generate`, `chat`, `logits`,
//!   `bench`, `serve`) that a model crate's `main.rs` runs with `mlx_lm::cli::main::<Model>()`.
//!
//! ```
//! use mlx_lm::{Sampler, SamplingParams};
//! let sampler = Sampler::new(SamplingParams { temperature: 0.7, top_p: 0.9, ..Default::default() })?;
//! assert_eq!(sampler.params().top_p, 0.9);
//! # Ok::<(), mlx_lm::Error>(())
//! ```
//!
//! # Models built on it
//!
//! `examples/qwen3_5` (Qwen 3.5, hybrid Gated DeltaNet + attention, with its fast paths)
//! and `examples/qwen3` (Qwen3, dense: the small one to copy for a new model). Both
//! binaries are [`cli::main`] with a small model-specific part; see the
//! workspace's `ARCHITECTURE.md` for where a new model goes.
//!
//! # Environment
//!
//! Library code reads no environment variables, except the Hugging Face conventions that
//! [`hub`] follows (`HF_HOME`, `HF_TOKEN`, `HF_HUB_OFFLINE`, and `HF_ENDPOINT` through
//! `hf-hub`) and `HOME` to expand a leading `~/` in a model path.
#![deny(missing_docs)]

pub mod cache;
pub mod chat;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod generate;
pub mod hub;
pub mod kernels;
pub mod linear;
pub mod load;
pub mod model;
pub mod sampling;
#[cfg(feature = "serve")]
pub mod serve;
pub mod shard;
mod submitter;
pub mod tokenizer;
pub mod tuner;

pub use cache::Cache;
pub use checkpoint::Checkpoint;
pub use error::{Error, Result};
pub use generate::{
    generate, generate_with_cache, FinishReason, GenerateOptions, Generation, GenerationStats,
};
pub use model::LanguageModel;
pub use sampling::{Sampler, SamplingParams};
