//! The Qwen 3.5 text model: embedding, hybrid decoder layers (Gated DeltaNet and gated
//! attention), final norm, tied or separate output head.

pub mod attention;
pub mod attn_kernel;
pub mod chunked;
pub mod cpu_gemm;
pub mod deltanet;
pub mod fused;
pub mod knobs;
pub mod layer_step;
pub mod linear;
pub mod mlp;

use crate::cache::{Cache, DeltaNetCache, KvCache, LayerCache};
use crate::config::{Config, LayerType};
use crate::error::{Error, Result};
use crate::weights::{Layout, Weights};
use attention::Attention;
use deltanet::GatedDeltaNet;
use fused::DecodeMode;
use linear::{Embedding, Linear};
use mlp::Mlp;
use mlx_rs::{fast, ops, Array, Dtype};
use std::path::Path;

/// The error for a cache layer of another kind than the model's layer `i`.
fn cache_mismatch(i: usize) -> Error {
    Error::InvalidArgument(format!(
        "cache layer {i} does not match the model's layer type"
    ))
}

/// `x · sigmoid(x)`.
pub(crate) fn silu(x: &Array) -> Result<Array> {
    Ok(x.multiply(&ops::sigmoid(x)?)?)
}

/// A scalar of `like`'s dtype (as a Python scalar would be in MLX: it does not promote).
pub(crate) fn scalar_like(value: f32, like: &Array) -> Result<Array> {
    Ok(Array::scalar(value).astype(like.dtype())?)
}

/// The token mixer of a layer.
pub enum Mixer {
    /// Gated DeltaNet.
    DeltaNet(GatedDeltaNet),
    /// Gated attention.
    Attention(Attention),
}

/// One decoder layer: `h = x + mixer(norm(x)); out = h + mlp(norm(h))`.
pub struct DecoderLayer {
    mixer: Mixer,
    input_layernorm: Array,
    post_attention_layernorm: Array,
    mlp: Mlp,
}

/// A loaded Qwen 3.5 text model.
pub struct Model {
    config: Config,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: Array,
    lm_head: Option<Linear>,
    layout: Layout,
}

impl DecoderLayer {
    /// The mixer (DeltaNet or attention) over `x`, the normed input of layer `i`, with
    /// its cache `lc`.
    fn mix(&self, x: &Array, lc: &mut LayerCache, i: usize) -> Result<Array> {
        match (&self.mixer, lc) {
            (Mixer::DeltaNet(m), LayerCache::DeltaNet(c)) => m.forward(x, c),
            (Mixer::Attention(m), LayerCache::Attention(c)) => m.forward(x, c),
            _ => Err(cache_mismatch(i)),
        }
    }
}

impl Model {
    /// Loads `config.json` and the safetensors checkpoint from a model folder.
    pub fn load(dir: impl AsRef<Path>) -> Result<Model> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a model folder"),
            ));
        }
        let config = Config::from_file(dir.join("config.json"))?;
        let mut weights = Weights::open(dir, &config)?;
        let model = Model::from_weights(config, &mut weights)?;
        weights.finish()?;
        Ok(model)
    }

    /// Builds the model from an opened checkpoint, taking every tensor it needs.
    pub fn from_weights(config: Config, w: &mut Weights) -> Result<Model> {
        let c = &config.text;
        let hidden = c.hidden_size;
        let embed_tokens = w.embedding("embed_tokens", c.vocab_size, hidden)?;
        // A tied table is also the output head: keep it in the head's fastest form.
        let embed_tokens = if c.tie_word_embeddings {
            embed_tokens.for_current_device()?
        } else {
            embed_tokens
        };
        let mut layers = Vec::with_capacity(c.layer_types.len());
        for (i, kind) in c.layer_types.iter().enumerate() {
            let p = format!("layers.{i}");
            let mixer = match kind {
                LayerType::LinearAttention => {
                    Mixer::DeltaNet(GatedDeltaNet::load(w, &format!("{p}.linear_attn"), c)?)
                }
                LayerType::FullAttention => {
                    Mixer::Attention(Attention::load(w, &format!("{p}.self_attn"), c)?)
                }
            };
            layers.push(DecoderLayer {
                mixer,
                input_layernorm: w.shifted_norm(&format!("{p}.input_layernorm.weight"), hidden)?,
                post_attention_layernorm: w
                    .shifted_norm(&format!("{p}.post_attention_layernorm.weight"), hidden)?,
                mlp: Mlp::load(w, &format!("{p}.mlp"), hidden, c.intermediate_size)?,
            });
        }
        let norm = w.shifted_norm("norm.weight", hidden)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(
                w.linear("lm_head", c.vocab_size, hidden)?
                    .for_current_device()?,
            )
        };
        Ok(Model {
            layout: w.layout(),
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The checkpoint layout the weights came in.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The dtype of activations (that of the embedding table or its scales).
    pub fn dtype(&self) -> Dtype {
        self.embed_tokens.dtype()
    }

    /// A fresh, empty per-sequence cache.
    pub fn new_cache(&self) -> Cache {
        let layers = self
            .config
            .text
            .layer_types
            .iter()
            .map(|t| match t {
                LayerType::LinearAttention => LayerCache::DeltaNet(DeltaNetCache::default()),
                LayerType::FullAttention => LayerCache::Attention(KvCache::default()),
            })
            .collect();
        Cache { layers }
    }

    /// Logits `[B, T, vocab]` for `tokens` (`[B, T]`, integer ids) continuing the sequence
    /// held in `cache` (which is updated). Works for a whole prompt and for single steps.
    pub fn forward(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let h = self.hidden_states(tokens, cache)?;
        self.logits(&h)
    }

    /// Final-normed hidden states `[B, T, hidden]` for `tokens`, updating `cache`.
    pub fn hidden_states(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        if tokens.ndim() != 2 {
            return Err(Error::InvalidArgument(format!(
                "tokens must be [batch, length], found shape {:?}",
                tokens.shape()
            )));
        }
        if tokens.dim(1)? == 0 {
            return Err(Error::InvalidArgument("no tokens to process".into()));
        }
        if cache.layers.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "the cache has {} layers, the model {}",
                cache.layers.len(),
                self.layers.len()
            )));
        }
        let eps = self.config.text.rms_norm_eps;
        // A single token takes the compiled norm (and residual add + norm) in the fused
        // decode mode; otherwise the plain ops. Both compute the same values.
        let fused_step = tokens.dim(1)? == 1 && DecodeMode::current().is_fused();
        let norm = |x: &Array, w: &Array| -> Result<Array> {
            if fused_step {
                fused::rms_norm(x, w, eps)
            } else {
                Ok(fast::rms_norm(x, Some(w), eps)?)
            }
        };
        let add_norm = |h: &Array, r: &Array, w: &Array| -> Result<(Array, Array)> {
            if fused_step {
                fused::add_rms_norm(h, r, w, eps)
            } else {
                let h = h.add(r)?;
                let n = fast::rms_norm(&h, Some(w), eps)?;
                Ok((h, n))
            }
        };
        let compiled_layers = fused_step && layer_step::enabled();
        let flat = fused_step && layer_step::flat_enabled();
        let mut h = self.embed_tokens.forward(tokens)?;
        if flat {
            // Decode without the length axis: `[B, hidden]` activations multiply as plain
            // matrices (MLX wraps a `[B, 1, K]` product in a flatten and an unflatten).
            let (b, d) = (h.dim(0)?, h.dim(2)?);
            h = h.reshape(&[b, d])?;
        }
        let first_norm = self
            .layers
            .first()
            .map_or(&self.norm, |l| &l.input_layernorm);
        // `x` is always the normed `h`: the input of the next mixer, or the final output.
        let mut x = norm(&h, first_norm)?;
        for (i, (layer, lc)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            if compiled_layers {
                let next_norm = self
                    .layers
                    .get(i + 1)
                    .map_or(&self.norm, |l| &l.input_layernorm);
                (h, x) = layer.decode_compiled(&h, &x, next_norm, lc, eps)?;
                continue;
            }
            let r = layer.mix(&x, lc, i)?;
            let (h_mid, x_mid) = add_norm(&h, &r, &layer.post_attention_layernorm)?;
            let m = layer.mlp.forward(&x_mid)?;
            let next_norm = self
                .layers
                .get(i + 1)
                .map_or(&self.norm, |l| &l.input_layernorm);
            (h, x) = add_norm(&h_mid, &m, next_norm)?;
        }
        if flat {
            x = ops::expand_dims(&x, 1)?;
        }
        Ok(x)
    }

    /// Logits for final-normed hidden states (`[.., hidden]` → `[.., vocab]`).
    pub fn logits(&self, hidden: &Array) -> Result<Array> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => self.embed_tokens.as_linear(hidden),
        }
    }

    /// Logits of the last position only (`[B, vocab]`): what generation needs, without
    /// computing the head for every prompt position.
    pub fn forward_last(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let h = self.hidden_states(tokens, cache)?;
        let (b, t, d) = (h.dim(0)?, h.dim(1)?, h.dim(2)?);
        let last = ops::slice(&h, &[0, t - 1, 0], &[b, t, d], &[1, 1, 1])?.reshape(&[b, d])?;
        self.logits(&last)
    }
}
