//! The Qwen 3.5 text model: embedding, hybrid decoder layers (Gated DeltaNet and gated
//! attention), final norm, tied or separate output head.

pub mod attention;
pub mod deltanet;
pub mod layer_step;
pub mod linear;
pub mod mlp;

use crate::cache::{Cache, KvCache, LayerCache, RecurrentCache};
use crate::config::{Config, LayerType};
use crate::error::{Error, Result};
use crate::options::{ModelOptions, Plan};
use crate::weights::{Layout, Weights};
use attention::Attention;
use deltanet::GatedDeltaNet;
use linear::{Embedding, Linear};
use mlp::Mlp;
use mlx_lm::kernels::compiled;
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
    options: ModelOptions,
    plan: Plan,
}

impl DecoderLayer {
    /// The mixer (DeltaNet or attention) over `x`, the normed input of layer `i`, with
    /// its cache `lc`: the reference ops, or (`fused`) the fused one-token forms.
    fn mix(&self, x: &Array, lc: &mut LayerCache, i: usize, fused: bool) -> Result<Array> {
        match (&self.mixer, lc) {
            (Mixer::DeltaNet(m), LayerCache::Recurrent(c)) if fused => m.decode(x, c),
            (Mixer::DeltaNet(m), LayerCache::Recurrent(c)) => m.forward(x, c),
            (Mixer::Attention(m), LayerCache::Attention(c)) if fused => m.decode(x, c),
            (Mixer::Attention(m), LayerCache::Attention(c)) => m.forward(x, c),
            _ => Err(cache_mismatch(i)),
        }
    }
}

impl Model {
    /// Loads `config.json` and the safetensors checkpoint from a model folder, with the
    /// default options of the current device ([`ModelOptions::default`]).
    pub fn load(dir: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(dir, ModelOptions::default())
    }

    /// [`Model::load`] with `options`, resolved for the device of the current default
    /// stream (which the model then runs on).
    ///
    /// # Errors
    /// As [`Model::load`], and for invalid options (`cpu_threads` of 0).
    pub fn load_with(dir: impl AsRef<Path>, options: ModelOptions) -> Result<Model> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a model folder"),
            ));
        }
        let config = Config::from_file(dir.join("config.json"))?;
        let mut weights = Weights::open(dir, &config)?;
        let model = Model::from_weights(config, &mut weights, options)?;
        weights.finish()?;
        Ok(model)
    }

    /// Builds the model from an opened checkpoint, taking every tensor it needs, with
    /// `options` resolved for the device of the current default stream.
    pub fn from_weights(config: Config, w: &mut Weights, options: ModelOptions) -> Result<Model> {
        let plan = Plan::resolve(&options)?;
        let c = &config.text;
        let hidden = c.hidden_size;
        let embed_tokens = w.embedding("embed_tokens", c.vocab_size, hidden)?;
        // A tied table is also the output head: keep it in the head's fastest form.
        let embed_tokens = if c.tie_word_embeddings {
            embed_tokens.for_device(plan.cpu)?
        } else {
            embed_tokens
        };
        let mut layers = Vec::with_capacity(c.layer_types.len());
        for (i, kind) in c.layer_types.iter().enumerate() {
            let p = format!("layers.{i}");
            let mixer = match kind {
                LayerType::LinearAttention => Mixer::DeltaNet(GatedDeltaNet::load(
                    w,
                    &format!("{p}.linear_attn"),
                    c,
                    &plan,
                )?),
                LayerType::FullAttention => {
                    Mixer::Attention(Attention::load(w, &format!("{p}.self_attn"), c, &plan)?)
                }
            };
            layers.push(DecoderLayer {
                mixer,
                input_layernorm: w.shifted_norm(&format!("{p}.input_layernorm.weight"), hidden)?,
                post_attention_layernorm: w
                    .shifted_norm(&format!("{p}.post_attention_layernorm.weight"), hidden)?,
                mlp: Mlp::load(w, &format!("{p}.mlp"), hidden, c.intermediate_size, &plan)?,
            });
        }
        let norm = w.shifted_norm("norm.weight", hidden)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(
                w.linear("lm_head", c.vocab_size, hidden)?
                    .for_device(plan.cpu)?,
            )
        };
        Ok(Model {
            layout: w.layout(),
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            options,
            plan,
        })
    }

    /// The options the model was loaded with.
    pub fn options(&self) -> &ModelOptions {
        &self.options
    }

    /// What the options resolved to on the device the model was loaded for.
    pub fn plan(&self) -> &Plan {
        &self.plan
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
                LayerType::LinearAttention => LayerCache::Recurrent(RecurrentCache::default()),
                LayerType::FullAttention => LayerCache::Attention(KvCache::default()),
            })
            .collect();
        Cache::new(layers)
    }

    /// Logits `[B, T, vocab]` for `tokens` (`[B, T]`, integer ids) continuing the sequence
    /// held in `cache` (which is updated). Works for a whole prompt and for single steps.
    pub fn forward(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let h = self.hidden_states(tokens, cache)?;
        self.logits(&h)
    }

    /// Final-normed hidden states `[B, T, hidden]` for `tokens`, updating `cache`.
    pub fn hidden_states(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        mlx_lm::model::check_input(tokens, cache, self.layers.len())?;
        // The one place the fused decode is entered.
        if tokens.dim(1) == 1 && self.plan.fused() {
            return self.decode_fused(tokens, cache);
        }
        let eps = self.config.text.rms_norm_eps;
        let norm = |x: &Array, w: &Array| -> Result<Array> { Ok(fast::rms_norm(x, Some(w), eps)?) };
        let mut h = self.embed_tokens.forward(tokens)?;
        // `x` is always the normed `h`: the input of the next mixer, or the final output.
        let mut x = norm(&h, self.input_norm(0))?;
        for (i, (layer, lc)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            h = h.add(&layer.mix(&x, lc, i, false)?)?;
            x = norm(&h, &layer.post_attention_layernorm)?;
            h = h.add(&layer.mlp.forward(&x)?)?;
            x = norm(&h, self.input_norm(i + 1))?;
        }
        Ok(x)
    }

    /// The input norm of layer `i`; the final norm after the last layer.
    fn input_norm(&self, i: usize) -> &Array {
        self.layers
            .get(i)
            .map_or(&self.norm, |l| &l.input_layernorm)
    }

    /// [`Model::hidden_states`] for one token per sequence, fused: activations without the
    /// length axis (`[B, hidden]`, so MLX multiplies plain matrices instead of wrapping
    /// each product in a flatten and an unflatten: 743 → 553 graph nodes per 2B step), the
    /// compiled norms and the fused mixers, or each layer as one compiled function
    /// ([`Plan::compile_layers`]). The same values as the reference ops.
    fn decode_fused(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let eps = self.config.text.rms_norm_eps;
        let h = self.embed_tokens.forward(tokens)?;
        let mut h = h.reshape(&[h.dim(0), h.dim(2)])?;
        let mut x = compiled::rms_norm(&h, self.input_norm(0), eps)?;
        for (i, (layer, lc)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            let next_norm = self.input_norm(i + 1);
            if self.plan.compile_layers {
                (h, x) = layer.decode_compiled(&h, &x, next_norm, lc, eps)?;
                continue;
            }
            let r = layer.mix(&x, lc, i, true)?;
            let (h_mid, x_mid) =
                compiled::add_rms_norm(&h, &r, &layer.post_attention_layernorm, eps)?;
            let m = layer.mlp.decode(&x_mid)?;
            (h, x) = compiled::add_rms_norm(&h_mid, &m, next_norm, eps)?;
        }
        Ok(ops::expand_dims(&x, 1)?)
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
        self.logits(&mlx_lm::model::last_position(&h)?)
    }
}

impl mlx_lm::LanguageModel for Model {
    fn forward(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        Model::forward(self, tokens, cache)
    }

    fn new_cache(&self) -> Cache {
        Model::new_cache(self)
    }

    fn vocab_size(&self) -> i32 {
        self.config.text.vocab_size
    }

    fn dtype(&self) -> Dtype {
        Model::dtype(self)
    }

    fn prefill(&self, tokens: &Array, cache: &mut Cache) -> Result<()> {
        self.hidden_states(tokens, cache).map(drop)
    }

    fn forward_last(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        Model::forward_last(self, tokens, cache)
    }
}
