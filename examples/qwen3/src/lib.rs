//! Qwen3 (dense: 0.6B to 32B) on MLX from Rust: the model is a few `mlx_rs::nn` layers;
//! loading, caches, generation, tokenizer and chat template come from `mlx-lm`.
//!
//! ```no_run
//! use mlx_lm::{generate, GenerateOptions};
//! let model = qwen3::load("path/to/Qwen3-0.6B")?;
//! let options = GenerateOptions { max_tokens: 32, ..Default::default() };
//! for token in generate(&model, &[9707, 11, 1879], options)? {
//!     print!("{} ", token?);
//! }
//! # Ok::<(), mlx_lm::Error>(())
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod model;
pub mod options;

pub use config::Config;
pub use model::Model;
pub use options::ModelOptions;

/// Loads a model folder (`config.json` and safetensors; Hugging Face or mlx-lm layout,
/// dense or MLX-quantized). Strict: the error names a missing, unexpected or mis-shaped
/// tensor, or a missing or invalid config field.
/// It runs with the defaults of the current device ([`ModelOptions::for_current_device`]).
pub fn load(dir: impl AsRef<std::path::Path>) -> mlx_lm::Result<Model> {
    load_with(dir, ModelOptions::for_current_device())
}

/// [`load`] with `options`: the floating-point tensors converted as
/// [`ModelOptions::load_float_dtype`] says, then [`Model::set_options`].
pub fn load_with(dir: impl AsRef<std::path::Path>, options: ModelOptions) -> mlx_lm::Result<Model> {
    let dir = dir.as_ref();
    let config = Config::from_dir(dir)?;
    let mut model = Model::new(config.clone())?;
    let quantized = config.quantization.is_some();
    let float_dtype = options.load_float_dtype();
    let sanitize = |weights| {
        let weights = model::sanitize(&config, weights)?;
        float_dtype.apply(weights, quantized)
    };
    mlx_lm::load::load_weights(&mut model, dir, config.quantization.as_ref(), sanitize)?;
    model.set_options(options)?;
    Ok(model)
}
