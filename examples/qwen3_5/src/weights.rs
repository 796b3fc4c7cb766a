//! Checkpoint layouts and the model's `sanitize` step: every tensor of a checkpoint, as
//! stored, into the names and forms of the model's parameters (mlx-lm's
//! `Model.sanitize` of `qwen3_5.py`).
//!
//! Two layouts exist:
//! - **Hugging Face** (`Qwen/Qwen3.5-2B`): keys `model.language_model.*` (or `model.*` for
//!   a text-only export) and `lm_head.weight`, zero-centred norm weights (the model
//!   multiplies by `1 + w`), and DeltaNet conv weights `[C, 1, K]`.
//! - **MLX** (mlx-lm / mlx-community): keys `language_model.model.*` and
//!   `language_model.lm_head.weight`, norm weights already shifted by one, conv weights
//!   `[C, K, 1]`, optionally affine-quantized (`.weight` packed `uint32` + `.scales` +
//!   `.biases`).
//!
//! [`sanitize`] turns either into the MLX one, which is how the model's parameters are
//! named ([`crate::Model`]). As in mlx-lm, a conv weight whose last axis is not 1 marks
//! a Hugging Face checkpoint, and only then are the `1 + w` norms shifted, so a checkpoint
//! is never shifted twice; the DeltaNet output norm (`linear_attn.norm`) is a plain weight
//! in both layouts and never shifted. Vision-tower (`model.visual.*`, `vision_tower.*`)
//! and multi-token-prediction (`mtp.*`) tensors are dropped, and so is a stored
//! `lm_head` next to tied embeddings (as transformers and mlx-lm ignore it).
//!
//! What is left must match the model exactly: loading ([`mlx_lm::load`]) is strict, and
//! its errors name the tensor as the model names it; [`Sanitizer::explain`] adds the name
//! the checkpoint stores it under when that differs.

use crate::config::{Config, QuantParams};
use crate::error::{Error, Result};
use mlx_lm::load::Quantization;
use mlx_rs::nn::ParamMap;
use mlx_rs::ops::{self, QuantizationMode, QuantizeOptions};
use mlx_rs::Array;
use std::collections::BTreeMap;

/// The checkpoint files (in mlx-lm, shared by every model crate).
pub use mlx_lm::checkpoint::Checkpoint;

/// How the checkpoint names and stores tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Hugging Face original: zero-centred norms, conv `[C, 1, K]`.
    HuggingFace,
    /// mlx-lm converted: shifted norms, conv `[C, K, 1]`.
    Mlx,
}

/// Key prefixes of the text model's tensors in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// `model.language_model.*`, `lm_head.weight`.
    HfMultimodal,
    /// `model.*`, `lm_head.weight` (text-only export).
    HfText,
    /// `language_model.model.*`, `language_model.lm_head.weight`.
    Mlx,
}

impl Naming {
    /// How the keys of a checkpoint are prefixed.
    fn of<'a>(mut keys: impl Iterator<Item = &'a String>) -> Naming {
        let mut naming = Naming::HfText;
        for k in keys.by_ref() {
            if k.starts_with("model.language_model.") {
                return Naming::HfMultimodal;
            }
            if k.starts_with("language_model.") {
                naming = Naming::Mlx;
            }
        }
        naming
    }

    /// The name a tensor of the model (MLX name) has in a checkpoint of this naming.
    fn stored(self, mlx: &str) -> String {
        let Some(rest) = mlx.strip_prefix("language_model.") else {
            return mlx.to_string();
        };
        match (self, rest.strip_prefix("model.")) {
            (Naming::Mlx, _) => mlx.to_string(),
            (Naming::HfMultimodal, Some(inner)) => format!("model.language_model.{inner}"),
            (Naming::HfMultimodal, None) | (Naming::HfText, _) => rest.to_string(),
        }
    }
}

/// Tensors of parts of the checkpoint a text model does not use.
fn is_dropped(name: &str) -> bool {
    name.starts_with("model.visual")
        || name.starts_with("visual.")
        || name.starts_with("vision_tower")
        || name.starts_with("model.vision_tower.")
        || name.contains("mtp.")
}

/// The MLX name of a stored tensor (mlx-lm's renaming).
fn mlx_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("model.language_model.") {
        format!("language_model.model.{rest}")
    } else if name.starts_with("language_model.") {
        name.to_string()
    } else {
        format!("language_model.{name}")
    }
}

/// The `(1 + w)` norms whose Hugging Face weights are zero-centred (mlx-lm's list).
const SHIFTED_NORMS: [&str; 5] = [
    ".input_layernorm.weight",
    ".post_attention_layernorm.weight",
    "model.norm.weight",
    ".q_norm.weight",
    ".k_norm.weight",
];

/// Hugging Face (unconverted) or MLX, from the DeltaNet conv weights (MLX names), as
/// mlx-lm decides it: `[C, 1, K]` (a last axis other than 1) is unconverted. When the
/// shapes cannot tell (no conv weight, or a kernel of 1) the key prefixes decide. Conv
/// weights of both forms are an error naming one of each.
fn detect_layout(weights: &ParamMap, naming: Naming, kernel: i32) -> Result<Layout> {
    let mut found: Option<(Layout, &str)> = None;
    for (name, w) in weights {
        if !name.contains("conv1d.weight") {
            continue;
        }
        let this = match w.shape() {
            _ if kernel == 1 => continue,
            [_, 1, k] if *k == kernel => Layout::HuggingFace,
            [_, k, 1] if *k == kernel => Layout::Mlx,
            _ => continue, // a shape error of the update
        };
        match found {
            None => found = Some((this, name)),
            Some((first, first_name)) if first != this => {
                return Err(Error::Weights(format!(
                    "{name}: shape {:?} is in a different layout than {first_name} ({:?})",
                    w.shape(),
                    weights[first_name].shape()
                )))
            }
            Some(_) => {}
        }
    }
    Ok(match found {
        Some((layout, _)) => layout,
        None if naming == Naming::Mlx => Layout::Mlx,
        None => Layout::HuggingFace,
    })
}

/// Turns the tensors of a checkpoint of either layout into the model's parameters (MLX
/// names and forms; see the [module docs](self)): drops vision, MTP and tied-head
/// tensors, renames Hugging Face keys, moves conv weights `[C, 1, K]` to `[C, K, 1]` and
/// shifts the `1 + w` norms of Hugging Face checkpoints by one.
///
/// # Errors
/// Two stored tensors with one MLX name, and conv weights in both layouts.
pub fn sanitize(weights: ParamMap, config: &Config) -> Result<ParamMap> {
    Sanitizer::new(config).sanitize(weights)
}

/// [`sanitize`], remembering what it saw: the [`Layout`], and each tensor's stored name
/// for error messages ([`Sanitizer::explain`]).
#[derive(Debug, Clone)]
pub struct Sanitizer {
    tied: bool,
    kernel: i32,
    layout: Layout,
    naming: Naming,
    /// MLX name → stored name, where they differ.
    stored: BTreeMap<String, String>,
}

impl Sanitizer {
    /// A sanitizer for checkpoints of the model `config` describes.
    pub fn new(config: &Config) -> Sanitizer {
        Sanitizer {
            tied: config.text.tie_word_embeddings,
            kernel: config.text.linear_conv_kernel_dim,
            layout: Layout::Mlx,
            naming: Naming::Mlx,
            stored: BTreeMap::new(),
        }
    }

    /// The layout of the checkpoint last sanitized.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// See [`sanitize`].
    pub fn sanitize(&mut self, weights: ParamMap) -> Result<ParamMap> {
        self.naming = Naming::of(weights.keys());
        let mut out = ParamMap::new();
        for (name, w) in weights {
            if is_dropped(&name) {
                continue;
            }
            let key = mlx_name(&name);
            if self.tied && key.starts_with("language_model.lm_head.") {
                continue;
            }
            if key != name {
                self.stored.insert(key.clone(), name.clone());
            }
            if out.insert(key.clone(), w).is_some() {
                return Err(Error::Weights(format!(
                    "{name}: stored twice (also as {})",
                    self.stored_name(&key)
                )));
            }
        }
        self.layout = detect_layout(&out, self.naming, self.kernel)?;
        for (key, w) in out.iter_mut() {
            if key.contains("conv1d.weight") && w.shape().last().is_some_and(|&k| k != 1) {
                *w = match w.shape() {
                    // The same data: only the shape changes.
                    &[c, 1, k] => w.reshape(&[c, k, 1])?,
                    _ => ops::moveaxis(w, 2, 1)?,
                };
            }
            let shifted = SHIFTED_NORMS.iter().any(|s| key.ends_with(s));
            if self.layout == Layout::HuggingFace
                && shifted
                && w.ndim() == 1
                && w.dtype().is_float()
            {
                *w = w.add(&Array::scalar(1.0f32).astype(w.dtype())?)?;
            }
        }
        Ok(out)
    }

    /// The name the checkpoint stores (or would store) the tensor `mlx` under.
    fn stored_name(&self, mlx: &str) -> String {
        match self.stored.get(mlx) {
            Some(s) => s.clone(),
            None => self.naming.stored(mlx),
        }
    }

    /// `e` with the checkpoint's own name of the tensor it names, when the checkpoint
    /// names it differently from the model (a Hugging Face checkpoint).
    pub fn explain(&self, e: Error) -> Error {
        let Error::Weights(msg) = e else {
            return e;
        };
        let named = msg
            .split_whitespace()
            .map(|t| t.trim_end_matches([':', ',', ')', ';']))
            .find(|t| t.starts_with("language_model."));
        let Some(mlx) = named else {
            return Error::Weights(msg);
        };
        let stored = self.stored_name(mlx);
        if stored == mlx {
            return Error::Weights(msg);
        }
        let note = if self.stored.contains_key(mlx) {
            format!("stored as {stored}")
        } else {
            format!("{stored} in this checkpoint's naming")
        };
        Error::Weights(format!("{msg} ({note})"))
    }
}

/// The config's quantization as [`mlx_lm::load`] takes it: per-layer entries by the
/// model's module paths (`language_model.model.layers.0.mlp.down_proj`,
/// `language_model.lm_head`).
pub fn quantization(config: &Config) -> Option<Quantization> {
    let q = config.quantization.as_ref()?;
    let options = |p: QuantParams| QuantizeOptions {
        group_size: Some(p.group_size),
        bits: Some(p.bits),
        mode: QuantizationMode::Affine,
    };
    let per_layer = q
        .per_layer
        .iter()
        .map(|(path, entry)| {
            let path = match path.as_str() {
                "lm_head" => "language_model.lm_head".to_string(),
                p => format!("language_model.model.{p}"),
            };
            (path, entry.map(options))
        })
        .collect();
    Some(Quantization {
        default: options(q.default),
        per_layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_between_layouts() {
        assert_eq!(
            mlx_name("model.language_model.layers.0.mlp.up_proj.weight"),
            "language_model.model.layers.0.mlp.up_proj.weight"
        );
        assert_eq!(
            mlx_name("model.norm.weight"),
            "language_model.model.norm.weight"
        );
        assert_eq!(mlx_name("lm_head.weight"), "language_model.lm_head.weight");
        let mlx = "language_model.model.layers.3.self_attn.q_norm.weight";
        assert_eq!(
            Naming::HfMultimodal.stored(mlx),
            "model.language_model.layers.3.self_attn.q_norm.weight"
        );
        assert_eq!(
            Naming::HfText.stored(mlx),
            "model.layers.3.self_attn.q_norm.weight"
        );
        assert_eq!(Naming::Mlx.stored(mlx), mlx);
        assert_eq!(
            Naming::HfMultimodal.stored("language_model.lm_head.weight"),
            "lm_head.weight"
        );
        assert!(is_dropped("model.visual.blocks.0.attn.qkv.weight"));
        assert!(is_dropped("mtp.layers.0.mlp.up_proj.weight"));
        assert!(!is_dropped("model.language_model.norm.weight"));
    }
}
