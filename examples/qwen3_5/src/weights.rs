//! Loading checkpoints: single or sharded safetensors, both key layouts, quantized tensors; strict checks.
//!
//! Two layouts exist:
//! - **Hugging Face** (`Qwen/Qwen3.5-2B`): keys `model.language_model.*` (or `model.*` for a
//!   text-only export), zero-centred norm weights (the model multiplies by `1 + w`), and
//!   DeltaNet conv weights `[C, 1, K]`.
//! - **MLX** (mlx-lm / mlx-community): keys `language_model.model.*`, norm weights already
//!   shifted by one, conv weights `[C, K, 1]`, optionally affine-quantized
//!   (`.weight` packed `uint32` + `.scales` + `.biases`).
//!
//! As in mlx-lm, the conv weight's shape decides whether the norms still need `+1`, so a
//! checkpoint is never shifted twice. The DeltaNet output norm (`linear_attn.norm`) is a
//! plain weight in both layouts and never shifted.
//!
//! Loading is strict: a tensor the configuration needs and the files lack, a tensor the
//! files hold and the model does not use, or a tensor of the wrong shape or dtype is an
//! error naming the tensor. Vision-tower (`model.visual.*`, `vision_tower.*`) and
//! multi-token-prediction (`mtp.*`) tensors are skipped; an `lm_head` next to tied
//! embeddings is ignored, as transformers and mlx-lm do.

use crate::config::{check_quant_params, Config, QuantParams};
use crate::error::{Error, Result};
use crate::model::linear::{Embedding, Linear, Quantized};
use mlx_rs::{Array, Dtype};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The checkpoint files (moved to mlx-lm, shared by every model crate).
pub use mlx_lm::checkpoint::Checkpoint;

/// How the checkpoint names and stores tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Hugging Face original: zero-centred norms, conv `[C, 1, K]`.
    HuggingFace,
    /// mlx-lm converted: shifted norms, conv `[C, K, 1]`.
    Mlx,
}

/// Key prefixes of the text model's tensors.
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
    fn full_name(self, canonical: &str) -> String {
        let is_head = canonical.starts_with("lm_head.");
        match (self, is_head) {
            (Naming::HfMultimodal, false) => format!("model.language_model.{canonical}"),
            (Naming::HfText, false) => format!("model.{canonical}"),
            (Naming::Mlx, false) => format!("language_model.model.{canonical}"),
            (Naming::Mlx, true) => format!("language_model.{canonical}"),
            (_, true) => canonical.to_string(),
        }
    }
}

/// Tensors that belong to parts of the checkpoint a text model does not use.
fn is_skipped(name: &str) -> bool {
    name.starts_with("model.visual.")
        || name.starts_with("visual.")
        || name.starts_with("vision_tower.")
        || name.starts_with("model.vision_tower.")
        || name.contains("mtp.")
}

/// Splits a key into its naming and its name relative to the text model.
fn canonical(name: &str) -> Option<(Naming, String)> {
    if let Some(rest) = name.strip_prefix("model.language_model.") {
        return Some((Naming::HfMultimodal, rest.to_string()));
    }
    if let Some(rest) = name.strip_prefix("language_model.model.") {
        return Some((Naming::Mlx, rest.to_string()));
    }
    if let Some(rest) = name.strip_prefix("language_model.lm_head.") {
        return Some((Naming::Mlx, format!("lm_head.{rest}")));
    }
    if name.starts_with("lm_head.") {
        return None; // naming-neutral: resolved once the others are known
    }
    if let Some(rest) = name.strip_prefix("model.") {
        return Some((Naming::HfText, rest.to_string()));
    }
    None
}

/// The tensors of a checkpoint, by name relative to the text model, handed out once each
/// to the model builder, with checks of presence, shape and dtype.
pub struct Weights {
    ckpt: Checkpoint,
    naming: Naming,
    layout: Layout,
    /// canonical name → stored name
    names: BTreeMap<String, String>,
    taken: BTreeSet<String>,
    quantized: bool,
    per_layer: BTreeMap<String, Option<QuantParams>>,
}

impl Weights {
    /// Opens the checkpoint in `dir` and works out its naming and layout.
    pub fn open(dir: impl AsRef<Path>, config: &Config) -> Result<Weights> {
        Weights::from_checkpoint(Checkpoint::open(dir)?, config)
    }

    /// Reads an opened (or in-memory) checkpoint and works out its naming and layout.
    pub fn from_checkpoint(ckpt: Checkpoint, config: &Config) -> Result<Weights> {
        let mut naming = None;
        let mut names = BTreeMap::new();
        let mut head_names = Vec::new();
        for name in ckpt.names() {
            if is_skipped(name) {
                continue;
            }
            if name.starts_with("lm_head.") {
                head_names.push(name.to_string());
                continue;
            }
            let (n, canon) = canonical(name)
                .ok_or_else(|| Error::Weights(format!("unexpected tensor {name}")))?;
            match naming {
                None => naming = Some(n),
                Some(first) if first != n => {
                    return Err(Error::Weights(format!(
                    "unexpected tensor {name}: its prefix does not match the other tensors ({})",
                    first.full_name("…")
                )))
                }
                Some(_) => {}
            }
            names.insert(canon, name.to_string());
        }
        let naming = naming.ok_or_else(|| {
            Error::Weights("the checkpoint holds no text-model tensors".to_string())
        })?;
        for name in head_names {
            if naming == Naming::Mlx {
                return Err(Error::Weights(format!(
                    "unexpected tensor {name}: MLX checkpoints name it language_model.{name}"
                )));
            }
            names.insert(name.clone(), name);
        }

        let layout = detect_layout(&ckpt, &names, naming, config)?;
        let quant = config.quantization.as_ref();
        let mut w = Weights {
            ckpt,
            naming,
            layout,
            names,
            taken: BTreeSet::new(),
            quantized: quant.is_some(),
            per_layer: quant.map(|q| q.per_layer.clone()).unwrap_or_default(),
        };
        if config.text.tie_word_embeddings {
            // A tied model computes the head from the embedding; a stored copy is ignored.
            w.taken.extend(
                w.names
                    .keys()
                    .filter(|k| k.starts_with("lm_head."))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        Ok(w)
    }

    /// The detected layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The stored name for a canonical one (as it is or would be stored).
    fn stored_name(&self, canonical: &str) -> String {
        self.names
            .get(canonical)
            .cloned()
            .unwrap_or_else(|| self.naming.full_name(canonical))
    }

    /// Whether the checkpoint has a tensor (canonical name).
    pub fn contains(&self, canonical: &str) -> bool {
        self.names.contains_key(canonical)
    }

    fn entry(&self, canonical: &str) -> Result<(String, Dtype, Vec<i32>)> {
        let stored = self.names.get(canonical).ok_or_else(|| {
            Error::Weights(format!("missing tensor {}", self.stored_name(canonical)))
        })?;
        let dtype = self.ckpt.dtype(stored);
        let shape = self.ckpt.shape(stored);
        let (Some(dtype), Some(shape)) = (dtype, shape) else {
            return Err(Error::Weights(format!("missing tensor {stored}")));
        };
        Ok((stored.clone(), dtype, shape.to_vec()))
    }

    /// Takes a float tensor of exactly `shape`.
    pub fn float(&mut self, canonical: &str, shape: &[i32]) -> Result<Array> {
        let (stored, dtype, found) = self.entry(canonical)?;
        check_float(&stored, dtype)?;
        if found != shape {
            return Err(Error::Weights(format!(
                "{stored}: shape {found:?}, expected {shape:?}"
            )));
        }
        self.taken.insert(canonical.to_string());
        self.ckpt.array_with_shape(&stored, shape)
    }

    /// Takes a `(1 + w)`-style RMSNorm weight `[dim]`, shifting zero-centred (Hugging
    /// Face) weights by one (evaluated at once) so the model can multiply by it directly.
    pub fn shifted_norm(&mut self, canonical: &str, dim: i32) -> Result<Array> {
        let w = self.float(canonical, &[dim])?;
        match self.layout {
            Layout::Mlx => Ok(w),
            Layout::HuggingFace => {
                let one = Array::scalar(1.0f32).astype(w.dtype())?;
                let shifted = w.add(&one)?;
                // Evaluated now, so that the model holds only data: a lazy sum would stay
                // tied to this thread's stream, and the model could not run on another
                // thread ("There is no Stream(cpu, …) in current thread").
                shifted.eval()?;
                Ok(shifted)
            }
        }
    }

    /// Takes a plain (never shifted) norm weight `[dim]`.
    pub fn plain_norm(&mut self, canonical: &str, dim: i32) -> Result<Array> {
        self.float(canonical, &[dim])
    }

    /// Takes the depthwise conv weight and returns it in MLX's `[C, K, 1]` form.
    pub fn conv_weight(&mut self, canonical: &str, channels: i32, kernel: i32) -> Result<Array> {
        let (stored, dtype, found) = self.entry(canonical)?;
        check_float(&stored, dtype)?;
        let expected = match self.layout {
            Layout::HuggingFace => vec![channels, 1, kernel],
            Layout::Mlx => vec![channels, kernel, 1],
        };
        if found != expected {
            return Err(Error::Weights(format!(
                "{stored}: shape {found:?}, expected {expected:?}"
            )));
        }
        self.taken.insert(canonical.to_string());
        // [C, 1, K] and [C, K, 1] hold the same row-major data: only the shape changes.
        self.ckpt.array_with_shape(&stored, &[channels, kernel, 1])
    }

    /// Takes a bias-free linear layer `prefix.weight` of logical shape `[out, in]`,
    /// quantized when `prefix.scales` is stored.
    pub fn linear(&mut self, prefix: &str, out: i32, inp: i32) -> Result<Linear> {
        let scales = format!("{prefix}.scales");
        if !self.contains(&scales) {
            if let Some(Some(_)) = self.per_layer.get(prefix) {
                return Err(Error::Weights(format!(
                    "missing tensor {}: the config quantizes {prefix}",
                    self.stored_name(&scales)
                )));
            }
            return Linear::dense(self.float(&format!("{prefix}.weight"), &[out, inp])?);
        }
        let wname = format!("{prefix}.weight");
        let bname = format!("{prefix}.biases");
        let (w_stored, w_dtype, w_shape) = self.entry(&wname)?;
        let (s_stored, s_dtype, s_shape) = self.entry(&scales)?;
        let (b_stored, b_dtype, b_shape) = self.entry(&bname)?;
        if !self.quantized {
            return Err(Error::Weights(format!(
                "{s_stored}: a quantized tensor, but config.json has no \"quantization\""
            )));
        }
        if let Some(None) = self.per_layer.get(prefix) {
            return Err(Error::Weights(format!(
                "unexpected tensor {s_stored}: the config leaves {prefix} unquantized"
            )));
        }
        if w_dtype != Dtype::Uint32 {
            return Err(Error::Weights(format!(
                "{w_stored}: dtype {w_dtype}, expected uint32 (packed quantized weights)"
            )));
        }
        check_float(&s_stored, s_dtype)?;
        check_float(&b_stored, b_dtype)?;
        let bad_shape = |name: &str, found: &[i32], what: &str| {
            Error::Weights(format!(
                "{name}: shape {found:?} does not fit a quantized [{out}, {inp}] layer ({what})"
            ))
        };
        if w_shape.len() != 2 || w_shape[0] != out || w_shape[1] <= 0 {
            return Err(bad_shape(&w_stored, &w_shape, "rows"));
        }
        if s_shape.len() != 2 || s_shape[0] != out || s_shape[1] <= 0 || inp % s_shape[1] != 0 {
            return Err(bad_shape(&s_stored, &s_shape, "groups"));
        }
        if b_shape != s_shape {
            return Err(Error::Weights(format!(
                "{b_stored}: shape {b_shape:?}, expected {s_shape:?} (as the scales)"
            )));
        }
        let group_size = inp / s_shape[1];
        if (w_shape[1] as i64 * 32) % inp as i64 != 0 {
            return Err(bad_shape(&w_stored, &w_shape, "packed width"));
        }
        let bits = (w_shape[1] as i64 * 32 / inp as i64) as i32;
        check_quant_params(group_size, bits)
            .map_err(|m| Error::Weights(format!("{w_stored}: inferred quantization {m}")))?;
        let params = QuantParams { group_size, bits };
        if let Some(Some(cfg)) = self.per_layer.get(prefix) {
            if *cfg != params {
                return Err(Error::Weights(format!(
                    "{w_stored}: stored with group_size {group_size} and {bits} bits, but the config says group_size {} and {} bits",
                    cfg.group_size, cfg.bits
                )));
            }
        }
        for n in [&wname, &scales, &bname] {
            self.taken.insert(n.clone());
        }
        Ok(Linear::Quantized(Quantized {
            weight: self.ckpt.array_with_shape(&w_stored, &w_shape)?,
            scales: self.ckpt.array_with_shape(&s_stored, &s_shape)?,
            biases: self.ckpt.array_with_shape(&b_stored, &b_shape)?,
            params,
        }))
    }

    /// Takes an embedding table `[vocab, hidden]`, dense or quantized.
    pub fn embedding(&mut self, prefix: &str, vocab: i32, hidden: i32) -> Result<Embedding> {
        Ok(Embedding {
            table: self.linear(prefix, vocab, hidden)?,
        })
    }

    /// Fails on the first stored tensor that the model did not take.
    pub fn finish(self) -> Result<()> {
        if let Some((_, stored)) = self.names.iter().find(|(c, _)| !self.taken.contains(*c)) {
            return Err(Error::Weights(format!("unexpected tensor {stored}")));
        }
        Ok(())
    }
}

fn check_float(name: &str, dtype: Dtype) -> Result<()> {
    match dtype {
        Dtype::Bfloat16 | Dtype::Float16 | Dtype::Float32 => Ok(()),
        other => Err(Error::Weights(format!(
            "{name}: dtype {other}, expected bfloat16, float16 or float32"
        ))),
    }
}

/// Hugging Face (unconverted) or MLX, from the DeltaNet conv weights as mlx-lm decides it:
/// `[C, 1, K]` is unconverted, `[C, K, 1]` converted. When the shape cannot tell (no conv
/// weight, or `K = 1`), the key prefix decides.
fn detect_layout(
    ckpt: &Checkpoint,
    names: &BTreeMap<String, String>,
    naming: Naming,
    config: &Config,
) -> Result<Layout> {
    let k = config.text.linear_conv_kernel_dim;
    let mut layout: Option<(Layout, &str)> = None;
    for (canon, stored) in names {
        if !canon.ends_with(".linear_attn.conv1d.weight") {
            continue;
        }
        let shape = ckpt.shape(stored).unwrap_or(&[]);
        let this = match shape {
            [_, 1, kk] if *kk == k && k != 1 => Layout::HuggingFace,
            [_, kk, 1] if *kk == k && k != 1 => Layout::Mlx,
            _ => continue, // reported as a shape error when the layer is built
        };
        match layout {
            None => layout = Some((this, stored)),
            Some((first, first_name)) if first != this => {
                return Err(Error::Weights(format!(
                    "{stored}: shape {shape:?} is in a different layout than {first_name} ({:?})",
                    ckpt.shape(first_name).unwrap_or(&[])
                )))
            }
            Some(_) => {}
        }
    }
    Ok(match layout {
        Some((l, _)) => l,
        None if naming == Naming::Mlx => Layout::Mlx,
        None => Layout::HuggingFace,
    })
}
