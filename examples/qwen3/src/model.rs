//! The Qwen3 forward pass, as mlx-lm's `models/qwen3.py`: pre-norm decoder layers of
//! grouped-query attention (with RMSNorm on each query and key head, then RoPE) and a
//! SwiGLU MLP. Field names are the checkpoint's keys
//! (`model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`).

use crate::config::Config;
use crate::options::ModelOptions;
use mlx_lm::cache::{Cache, KvCache, LayerCache, Positions};
use mlx_lm::kernels::cpu_gemm::CpuProducts;
use mlx_lm::linear;
use mlx_lm::model::check_input;
use mlx_lm::shard::{shard_linear, shard_mlp, Part, Split};
use mlx_lm::tuner::{checkpoint_layer, Adaptable, AdaptableLinear};
use mlx_lm::{Error, LanguageModel, Result};
use mlx_rs::distributed::{self, Group};
use mlx_rs::fast::{self, AttentionMask};
use mlx_rs::nn::UnaryModule;
use mlx_rs::nn::{self, Embedding, Linear, MaybeQuantized, Module, ParamMap, RmsNorm, Rope};
use mlx_rs::{Array, Dtype};

/// A linear layer, dense or quantized, that an adapter can wrap (`mlx_lm::tuner`).
type QLinear = AdaptableLinear;

fn linear(input: i32, output: i32) -> Result<QLinear> {
    Ok(Linear::new(input, output, false)?.into())
}

/// Self-attention with per-head RMSNorm on queries and keys.
#[derive(Clone, Module)]
struct Attention {
    q_proj: QLinear,
    k_proj: QLinear,
    v_proj: QLinear,
    o_proj: QLinear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    rope: Rope,
    n_heads: i32,
    n_kv_heads: i32,
    scale: f32,
}

impl Attention {
    fn new(c: &Config) -> Result<Attention> {
        let (h, kv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        Ok(Attention {
            q_proj: linear(c.hidden_size, h * d)?,
            k_proj: linear(c.hidden_size, kv * d)?,
            v_proj: linear(c.hidden_size, kv * d)?,
            o_proj: linear(h * d, c.hidden_size)?,
            q_norm: RmsNorm::new(d, c.rms_norm_eps)?,
            k_norm: RmsNorm::new(d, c.rms_norm_eps)?,
            rope: Rope {
                base: c.rope_base()?,
                scale: c.rope_scale()?,
                ..Rope::new(d)?
            },
            n_heads: h,
            n_kv_heads: kv,
            scale: (d as f64).powf(-0.5) as f32,
        })
    }

    fn forward(
        &self,
        x: &Array,
        mask: AttentionMask,
        cache: &mut KvCache,
        on: &On,
    ) -> Result<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        // [B, L, H·D] → [B, H, L, D], each head normalized.
        let heads = |y: Array, n: i32, norm: Option<&RmsNorm>| -> Result<Array> {
            let y = y.reshape(&[b, l, n, -1])?;
            let y = match norm {
                Some(norm) => norm.forward(&y)?,
                None => y,
            };
            Ok(y.transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = heads(
            on.linear(&self.q_proj, x)?,
            self.n_heads,
            Some(&self.q_norm),
        )?;
        let k = heads(
            on.linear(&self.k_proj, x)?,
            self.n_kv_heads,
            Some(&self.k_norm),
        )?;
        let v = heads(on.linear(&self.v_proj, x)?, self.n_kv_heads, None)?;

        let (q, k) = match cache.positions()? {
            Positions::Shared(offset) => (
                self.rope.forward_at(&q, offset)?,
                self.rope.forward_at(&k, offset)?,
            ),
            Positions::PerSequence(offsets) => (
                self.rope.forward_at_array(&q, &offsets)?,
                self.rope.forward_at_array(&k, &offsets)?,
            ),
        };
        let (k, v) = cache.update_and_fetch(&k, &v)?;

        let out = fast::scaled_dot_product_attention(&q, &k, &v, self.scale, mask)?;
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        on.all_sum(on.linear(&self.o_proj, &out)?)
    }

    /// Keeps this rank's heads: q, k, v by output rows, o by input columns.
    fn shard(&mut self, part: Part, layer: usize) -> Result<()> {
        let what = |name: &str| format!("layer {layer}'s {name}");
        let n_heads = part.divide(self.n_heads, "the attention heads")?;
        let n_kv_heads = part.divide(self.n_kv_heads, "the key/value heads")?;
        let layers = [
            (&mut self.q_proj, Split::AllToSharded, "q_proj"),
            (&mut self.k_proj, Split::AllToSharded, "k_proj"),
            (&mut self.v_proj, Split::AllToSharded, "v_proj"),
            (&mut self.o_proj, Split::ShardedToAll, "o_proj"),
        ];
        for (layer, split, name) in layers {
            shard_linear(layer.unadapted_mut(&what(name))?, split, part, &what(name))?;
        }
        self.n_heads = n_heads;
        self.n_kv_heads = n_kv_heads;
        Ok(())
    }
}

/// Where a forward pass runs: the group the layers are split across (if any) and how
/// the linear layers multiply on the CPU ([`mlx_lm::linear`]).
#[derive(Clone, Copy)]
struct On<'a> {
    group: Option<&'a Group>,
    cpu: Option<CpuProducts>,
}

impl On<'_> {
    /// `layer(x)`, on the CPU kernels where they apply.
    fn linear(&self, layer: &QLinear, x: &Array) -> Result<Array> {
        linear::forward(layer, x, self.cpu)
    }

    /// The sum of every rank's partial result (itself without a group).
    fn all_sum(&self, x: Array) -> Result<Array> {
        Ok(match self.group {
            Some(g) => distributed::all_sum(&x, Some(g))?,
            None => x,
        })
    }
}

/// The feed-forward block: `down(silu(gate(x)) · up(x))`.
#[derive(Clone, Module)]
struct Mlp {
    gate_proj: QLinear,
    up_proj: QLinear,
    down_proj: QLinear,
}

impl Mlp {
    fn new(c: &Config) -> Result<Mlp> {
        Ok(Mlp {
            gate_proj: linear(c.hidden_size, c.intermediate_size)?,
            up_proj: linear(c.hidden_size, c.intermediate_size)?,
            down_proj: linear(c.intermediate_size, c.hidden_size)?,
        })
    }

    fn forward(&self, x: &Array, on: &On) -> Result<Array> {
        let h = nn::swiglu(
            &on.linear(&self.gate_proj, x)?,
            &on.linear(&self.up_proj, x)?,
        )?;
        on.all_sum(on.linear(&self.down_proj, &h)?)
    }

    /// Keeps this rank's slice of the hidden units.
    fn shard(&mut self, part: Part, layer: usize) -> Result<()> {
        let what = format!("layer {layer}'s mlp");
        shard_mlp(
            self.gate_proj.unadapted_mut(&what)?,
            self.up_proj.unadapted_mut(&what)?,
            self.down_proj.unadapted_mut(&what)?,
            part,
            &what,
        )
    }
}

/// One pre-norm decoder layer.
#[derive(Clone, Module)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn forward(
        &self,
        x: &Array,
        mask: AttentionMask,
        cache: &mut KvCache,
        on: &On,
    ) -> Result<Array> {
        let r = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, mask, cache, on)?;
        let h = x.add(&r)?;
        let r = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?, on)?;
        Ok(h.add(&r)?)
    }
}

/// The embedding, the decoder layers and the final norm (`model.*` in the checkpoint).
#[derive(Module)]
struct Backbone {
    embed_tokens: MaybeQuantized<Embedding>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
}

/// A Qwen3 causal language model.
#[derive(Module)]
pub struct Model {
    model: Backbone,
    /// `None` when the head is the embedding table (`tie_word_embeddings`).
    lm_head: Option<QLinear>,
    #[module(skip)]
    config: Config,
    /// The group whose ranks share the layers, once [`Model::shard`] split them.
    #[module(skip)]
    group: Option<Group>,
    /// Whether a forward pass over an empty cache checkpoints each layer
    /// ([`Adaptable::set_grad_checkpoint`]).
    #[module(skip)]
    grad_checkpoint: bool,
    /// How the linear layers multiply on the CPU ([`Model::set_options`]).
    #[module(skip)]
    options: ModelOptions,
}

impl Model {
    /// A model of `config`'s shape with placeholder (random, lazy) weights: load real ones
    /// with [`crate::load`] or [`mlx_lm::load::load_weights`].
    pub fn new(config: Config) -> Result<Model> {
        config.check()?;
        let c = &config;
        let layers = (0..c.num_hidden_layers)
            .map(|_| {
                Ok(DecoderLayer {
                    self_attn: Attention::new(c)?,
                    mlp: Mlp::new(c)?,
                    input_layernorm: RmsNorm::new(c.hidden_size, c.rms_norm_eps)?,
                    post_attention_layernorm: RmsNorm::new(c.hidden_size, c.rms_norm_eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            model: Backbone {
                embed_tokens: Embedding::new(c.vocab_size, c.hidden_size)?.into(),
                layers,
                norm: RmsNorm::new(c.hidden_size, c.rms_norm_eps)?,
            },
            lm_head: match c.tie_word_embeddings {
                true => None,
                false => Some(linear(c.hidden_size, c.vocab_size)?),
            },
            config,
            group: None,
            grad_checkpoint: false,
            options: ModelOptions::default(),
        })
    }

    /// Runs the model with `options`: for a model on the CPU (`options.cpu` is `Some`)
    /// float32 weights are stored for the CPU from here on ([`linear::store_for_cpu`]:
    /// same values, so the logits do not change in MLX's products), and the CPU kernels
    /// take the products they can when `gemm` is on. Call it after the weights are
    /// loaded ([`crate::load_with`] does); with `None` products stay in MLX.
    pub fn set_options(&mut self, options: ModelOptions) -> Result<()> {
        if let Some(cpu) = options.cpu {
            if cpu.threads == 0 {
                return Err(Error::InvalidArgument(
                    "cpu threads must be at least 1".into(),
                ));
            }
            linear::store_for_cpu(self)?;
            // A tied table is also the output head: stored as the head's weight.
            if let (None, MaybeQuantized::Dense(e)) = (&self.lm_head, &mut self.model.embed_tokens)
            {
                linear::store_transposed(&mut e.weight)?;
            }
        }
        self.options = options;
        Ok(())
    }

    /// The options the model runs with.
    pub fn options(&self) -> ModelOptions {
        self.options
    }

    /// Splits the loaded model across the processes of `group` (tensor parallelism, as
    /// mlx-lm's `Model.shard`): each rank keeps its share of the attention heads (query,
    /// key and value projections by rows, the output projection by columns) and of the
    /// MLP's hidden units (gate and up by rows, down by columns), and the forward pass
    /// all-sums the two partial outputs of each layer. The embedding, norms and head stay
    /// whole on every rank, so every rank computes the same logits.
    ///
    /// Every rank of the group must call it, then run the same forward passes in the same
    /// order. A group of one process leaves the model as it is. Errors (and leaves the
    /// model unusable) when the group's size does not divide the attention heads, the
    /// key/value heads or the MLP's width, or, for a quantized layer split by columns,
    /// when a rank's slice is not whole quantization groups.
    pub fn shard(&mut self, group: Group) -> Result<()> {
        if self.group.is_some() {
            return Err(Error::InvalidArgument(
                "the model is already sharded".into(),
            ));
        }
        if group.size() <= 1 {
            return Ok(());
        }
        let part = Part::of(&group);
        let c = &self.config;
        part.divide(c.num_attention_heads, "the attention heads")?;
        part.divide(c.num_key_value_heads, "the key/value heads")?;
        part.divide(c.intermediate_size, "the MLP's intermediate size")?;
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            layer.self_attn.shard(part, i)?;
            layer.mlp.shard(part, i)?;
        }
        // A slice by rows of a weight stored for the CPU is strided: stored again.
        if self.options.cpu.is_some() {
            linear::store_for_cpu(self)?;
        }
        self.group = Some(group);
        Ok(())
    }

    /// The group the model is sharded across ([`Model::shard`]), if any.
    pub fn group(&self) -> Option<&Group> {
        self.group.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Logits for the last layer's output: the final norm, then the head.
    fn head(&self, h: &Array, on: &On) -> Result<Array> {
        let h = self.model.norm.forward(h)?;
        Ok(match &self.lm_head {
            Some(head) => on.linear(head, &h)?,
            None => linear::embedding_as_linear(&self.model.embed_tokens, &h, on.cpu)?,
        })
    }
}

/// Drops what the checkpoint stores and the model does not use: a head next to tied
/// embeddings, and the precomputed RoPE frequencies of old exports.
pub fn sanitize(config: &Config, mut weights: ParamMap) -> Result<ParamMap> {
    if config.tie_word_embeddings {
        weights.remove("lm_head.weight");
    }
    weights.retain(|k, _| !k.contains("self_attn.rotary_emb.inv_freq"));
    Ok(weights)
}

/// Adapters (`mlx_lm::tuner`) wrap the linear layers of `model.layers`, as mlx-lm's.
impl Adaptable for Model {
    fn layers_path(&self) -> String {
        "model.layers".into()
    }

    fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    fn set_grad_checkpoint(&mut self, on: bool) -> Result<()> {
        self.grad_checkpoint = on;
        Ok(())
    }

    /// Fused adapters make new weights: stored for the CPU again.
    fn adapters_changed(&mut self) -> Result<()> {
        self.set_options(self.options)
    }
}

impl Model {
    /// The last decoder layer's output (`[B, L, hidden]`) and how the head then runs:
    /// everything of the forward pass but the final norm and the head.
    fn run_layers(&self, tokens: &Array, cache: &mut Cache) -> Result<(Array, On<'_>)> {
        check_input(tokens, cache, self.model.layers.len())?;
        mlx_lm::model::check_token_ids(tokens, self.config.vocab_size)?;
        let mut h = self.model.embed_tokens.forward(tokens)?;
        // A training step: each layer recomputed in the backward pass, the cache unused.
        if self.grad_checkpoint && self.group.is_none() && cache.is_empty() {
            for layer in &self.model.layers {
                let out = checkpoint_layer(layer, &[h], |layer, x| {
                    let mask = match x[0].dim(1) {
                        1 => AttentionMask::None,
                        _ => AttentionMask::Causal,
                    };
                    let on = On {
                        group: None,
                        cpu: None,
                    };
                    Ok(vec![layer.forward(
                        &x[0],
                        mask,
                        &mut KvCache::default(),
                        &on,
                    )?])
                })?;
                h = out.into_iter().next().ok_or_else(|| {
                    Error::InvalidArgument("a checkpointed layer returned no output".into())
                })?;
            }
            let on = On {
                group: None,
                cpu: None,
            };
            return Ok((h, on));
        }
        let l = tokens.shape()[1];
        let mut kvs = Vec::with_capacity(cache.layers.len());
        for c in &mut cache.layers {
            let LayerCache::Attention(kv) = c else {
                return Err(Error::InvalidArgument(
                    "a Qwen3 cache holds attention layers only".into(),
                ));
            };
            kvs.push(kv);
        }
        // Every layer has the same padding: one mask (`None` without padding) for all.
        let padding_mask = match kvs.first() {
            Some(kv) => kv.mask(l)?,
            None => None,
        };
        let mask = match &padding_mask {
            Some(m) => AttentionMask::Array(m),
            None if l > 1 => AttentionMask::Causal,
            None => AttentionMask::None,
        };
        let on = On {
            group: self.group.as_ref(),
            cpu: self.options.cpu,
        };
        for (layer, kv) in self.model.layers.iter().zip(kvs) {
            h = layer.forward(&h, mask, kv, &on)?;
        }
        Ok((h, on))
    }
}

impl LanguageModel for Model {
    fn forward(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let (h, on) = self.run_layers(tokens, cache)?;
        self.head(&h, &on)
    }

    /// The cache only: the head is not computed for the prompt's positions (on the CPU,
    /// where products run eagerly outside MLX's graph, it was computed: a quarter of
    /// Qwen3-0.6B's multiply-adds, ~9 % of its prefill time on a 2-core EPYC).
    fn prefill(&self, tokens: &Array, cache: &mut Cache) -> Result<()> {
        self.run_layers(tokens, cache).map(drop)
    }

    /// The prompts as one batch padded on the right (causal attention keeps each row's
    /// real positions blind to the padding after them), then one cache per prompt.
    fn prefill_rows(&self, prompts: &[&[u32]]) -> Result<Vec<Cache>> {
        let rows = mlx_lm::model::PaddedRows::new(prompts)?;
        let mut cache = self.new_cache();
        self.run_layers(&rows.tokens, &mut cache)?;
        cache.split_rows(&rows.lengths)
    }

    /// The head for the last position only.
    fn forward_last(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let (h, on) = self.run_layers(tokens, cache)?;
        self.head(&mlx_lm::model::last_position(&h)?, &on)
    }

    fn new_cache(&self) -> Cache {
        let layers = self.model.layers.iter();
        Cache::new(
            layers
                .map(|_| LayerCache::Attention(KvCache::default()))
                .collect(),
        )
    }

    fn vocab_size(&self) -> i32 {
        self.config.vocab_size
    }

    fn dtype(&self) -> Dtype {
        self.model.norm.weight.dtype()
    }
}
