//! Fine-tuning adapters, as mlx-lm's `mlx_lm/tuner`: LoRA and DoRA layers, and adapters
//! in mlx-lm's format, so an adapter trained by `mlx_lm.lora` runs here and the other way
//! round.
//!
//! - [`LoraLinear`], [`DoraLinear`]: a (dense or quantized) linear layer plus a low-rank
//!   update, computing what mlx-lm's `LoRALinear` / `DoRALinear` compute, with their
//!   parameter names;
//! - [`AdaptableLinear`]: the field type of a model's linear layers (the base, or one of
//!   the two above), which the functions below find and swap in place;
//! - [`Adapter`] (`adapter_config.json` + `adapters.safetensors`), [`apply_adapter`]
//!   (mlx-lm's `load_adapters`), [`linear_to_lora_layers`], [`fuse`], [`adapter_weights`];
//! - training: [`value_and_grad`] (gradients with respect to the adapters, also through a
//!   model's prepared forms), [`default_loss`], [`datasets`] (mlx-lm's jsonl formats) and
//!   [`trainer`] (the loop: batches, validation, reports, checkpoints).
//!
//! A model opts in by using [`AdaptableLinear`] for its linear layers and implementing
//! [`Adaptable`] (where its decoder layers are):
//!
//! ```
//! use mlx_lm::tuner::{self, Adaptable, AdaptableLinear, LoraParameters};
//! use mlx_rs::nn::{Linear, Module, UnaryModule};
//!
//! #[derive(Module)]
//! struct Block { proj: AdaptableLinear }
//! #[derive(Module)]
//! struct Tiny { layers: Vec<Block> }
//! impl Adaptable for Tiny {
//!     fn layers_path(&self) -> String { "layers".into() }
//!     fn num_layers(&self) -> usize { self.layers.len() }
//! }
//!
//! let mut model = Tiny {
//!     layers: vec![Block { proj: Linear::new(8, 8, false)?.into() }, Block { proj: Linear::new(8, 8, false)?.into() }],
//! };
//! let params = LoraParameters { rank: 2, ..Default::default() };
//! assert_eq!(tuner::linear_to_lora_layers(&mut model, 1, &params, false)?, 1);
//! let names: Vec<String> = model.trainable_parameters()?.into_keys().collect();
//! assert_eq!(names, ["layers.0.proj.weight", "layers.1.proj.lora_a", "layers.1.proj.lora_b"]);
//! # Ok::<(), mlx_lm::Error>(())
//! ```

mod adapter;
pub mod datasets;
mod dora;
mod layer;
mod lora;
mod train;
pub mod trainer;

pub use adapter::{
    adapter_weights, apply_adapter, freeze_all_but_adapters, fuse, is_adapter_parameter,
    linear_to_lora_layers, load_adapter_weights, unfreeze_last_layers, Adapter, AdapterConfig,
    FineTuneType, LoraParameters, CONFIG_FILE, WEIGHTS_FILE,
};
pub use dora::DoraLinear;
pub use layer::{AdaptableLinear, LowRank};
pub use lora::LoraLinear;
pub use train::{checkpoint_layer, default_loss, value_and_grad};

use crate::error::{Error, Result};
use mlx_rs::nn::Module;

/// A model whose linear layers can take adapters: its linear layers are
/// [`AdaptableLinear`] fields, and it says where its decoder layers are.
pub trait Adaptable: Module {
    /// The dotted path of the list of decoder layers (`model.layers` for Qwen3,
    /// `language_model.model.layers` for Qwen 3.5): the layers `num_layers` counts, and
    /// the prefix the `keys` of [`LoraParameters`] are relative to.
    fn layers_path(&self) -> String;

    /// The number of decoder layers.
    fn num_layers(&self) -> usize;

    /// Called after layers were wrapped, loaded or fused: a model that runs forms derived
    /// from its parameters (joined or transposed weights) rebuilds them here. The default
    /// does nothing.
    fn adapters_changed(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called inside a gradient transform ([`value_and_grad`]) after the adapters'
    /// parameters were replaced by the transform's tracers, and again after they are
    /// restored: a model whose forward pass runs prepared forms points their adapter
    /// updates ([`AdaptableLinear::low_rank`]) at the current parameters here (or, when
    /// weights themselves are trainable, builds its forms from them again). The default
    /// does nothing (a model whose forward pass reads its parameters).
    fn refresh_adapters(&mut self) -> Result<()> {
        Ok(())
    }

    /// Whether gradients with respect to the layers' own parameters reach the forward
    /// pass, so that full fine-tuning (training the weights themselves) works: the
    /// forward pass reads them, or forms built from them again in
    /// [`Adaptable::refresh_adapters`] when they are trainable. The default says yes; a
    /// model whose products run outside MLX's graph says no.
    fn supports_full_fine_tuning(&self) -> bool {
        true
    }

    /// Turns gradient checkpointing of the decoder layers on or off (mlx-lm's
    /// `--grad-checkpoint`): with it on, a forward pass over an empty cache (a training
    /// step) runs each layer through [`checkpoint_layer`], so the backward pass computes
    /// each layer's activations again instead of keeping them all. That forward pass
    /// leaves the cache empty (training never reads it); a cache that holds tokens runs
    /// the layers as usual. The default refuses (a model that does not implement it).
    ///
    /// # Errors
    /// The model cannot checkpoint its layers.
    fn set_grad_checkpoint(&mut self, on: bool) -> Result<()> {
        if on {
            return Err(Error::InvalidArgument(
                "this model does not support gradient checkpointing".into(),
            ));
        }
        Ok(())
    }
}

/// A rank of at least 1.
fn check_rank(rank: i32) -> Result<()> {
    if rank < 1 {
        return Err(Error::InvalidArgument(format!(
            "the rank of a low-rank update must be at least 1, got {rank}"
        )));
    }
    Ok(())
}
