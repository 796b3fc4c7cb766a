//! The Qwen 3.5 text model: embedding, hybrid decoder layers (Gated DeltaNet and gated
//! attention), final norm, tied or separate output head.

pub mod attention;
pub mod deltanet;
pub mod layer_step;
pub mod linear;
pub mod mlp;

use crate::cache::{Cache, KvCache, LayerCache, RecurrentCache};
use crate::config::{Config, LayerType, TextConfig};
use crate::error::{Error, Result};
use crate::options::{ModelOptions, Plan};
use crate::weights::{self, Checkpoint, Layout};
use attention::Attention;
use deltanet::{GatedDeltaNet, RowEnds};
use linear::{Embedding, Linear};
use mlp::Mlp;
use mlx_lm::kernels::compiled;
use mlx_lm::model::PaddedRows;
use mlx_lm::shard::Part;
use mlx_lm::tuner::{self, checkpoint_layer, Adaptable, AdaptableLinear};
use mlx_rs::distributed::{self, Group};
use mlx_rs::nn::{self, MaybeQuantized, Module, ParamMap};
use mlx_rs::{fast, ops, Array, Dtype};
use std::path::Path;

/// The error for a cache layer of another kind than the model's layer `i`.
fn cache_mismatch(i: usize) -> Error {
    Error::InvalidArgument(format!(
        "cache layer {i} does not match the model's layer type"
    ))
}

/// The error for a layer used before its inference forms were built (a model is only
/// handed out prepared, so this does not happen through the public API).
pub(crate) fn not_prepared(what: &str) -> Error {
    Error::InvalidArgument(format!("{what}: used before the model was prepared"))
}

/// `x · sigmoid(x)`.
pub(crate) fn silu(x: &Array) -> Result<Array> {
    Ok(x.multiply(&ops::sigmoid(x)?)?)
}

/// The token mixer of a layer, as the forward pass runs it.
pub enum Mixer<'a> {
    /// Gated DeltaNet.
    DeltaNet(&'a deltanet::Prepared),
    /// Gated attention.
    Attention(&'a attention::Prepared),
}

/// One decoder layer (`language_model.model.layers.N`):
/// `h = x + mixer(norm(x)); out = h + mlp(norm(h))`, the mixer a Gated DeltaNet
/// (`linear_attn`) or gated attention (`self_attn`), as in mlx-lm.
#[derive(Clone, Module)]
pub struct DecoderLayer {
    linear_attn: Option<GatedDeltaNet>,
    self_attn: Option<Attention>,
    /// `(1 + w)`-style weight, stored shifted.
    input_layernorm: nn::RmsNorm,
    /// `(1 + w)`-style weight, stored shifted.
    post_attention_layernorm: nn::RmsNorm,
    mlp: Mlp,
}

/// The decoder (`language_model.model`): embedding, layers, final norm.
#[derive(Module)]
pub struct TextDecoder {
    embed_tokens: MaybeQuantized<nn::Embedding>,
    layers: Vec<DecoderLayer>,
    /// `(1 + w)`-style weight, stored shifted.
    norm: nn::RmsNorm,
    /// The table in its inference form (the output head's, when tied).
    #[module(skip)]
    embedding: Option<Embedding>,
}

/// The text model (`language_model`): the decoder and, when the embeddings are not tied,
/// the output head.
#[derive(Module)]
pub struct TextModel {
    model: TextDecoder,
    lm_head: Option<AdaptableLinear>,
    /// The untied head in its inference form.
    #[module(skip)]
    head: Option<Linear>,
}

/// A loaded Qwen 3.5 text model.
///
/// Its parameters ([`Module::parameters`]) are named as mlx-lm names them
/// (`language_model.model.layers.0.linear_attn.in_proj_qkv.weight`, …); loading reads a
/// checkpoint of either layout into them through [`Module::update`] (see
/// [`crate::weights`]), then builds the forms the forward pass runs with from the same
/// arrays, once: parameters changed afterwards (through [`Module::update`]) are not seen
/// by the forward pass; load the changed weights instead.
#[derive(Module)]
pub struct Model {
    language_model: TextModel,
    #[module(skip)]
    config: Config,
    #[module(skip)]
    layout: Layout,
    #[module(skip)]
    options: ModelOptions,
    #[module(skip)]
    plan: Plan,
    /// The group whose ranks share the layers, once [`Model::shard`] split them.
    #[module(skip)]
    group: Option<Group>,
    /// Whether a forward pass over an empty cache checkpoints each layer
    /// ([`Adaptable::set_grad_checkpoint`]).
    #[module(skip)]
    grad_checkpoint: bool,
}

/// A `(1 + w)`-style norm with a placeholder weight.
fn rms_norm(dims: i32, eps: f32) -> Result<nn::RmsNorm> {
    Ok(nn::RmsNorm {
        weight: linear::placeholder_param(&[dims])?,
        eps,
    })
}

impl DecoderLayer {
    /// A layer of `kind` with placeholder parameters.
    fn new(c: &TextConfig, kind: LayerType) -> Result<DecoderLayer> {
        let (linear_attn, self_attn) = match kind {
            LayerType::LinearAttention => (Some(GatedDeltaNet::new(c)?), None),
            LayerType::FullAttention => (None, Some(Attention::new(c)?)),
        };
        Ok(DecoderLayer {
            linear_attn,
            self_attn,
            input_layernorm: rms_norm(c.hidden_size, c.rms_norm_eps)?,
            post_attention_layernorm: rms_norm(c.hidden_size, c.rms_norm_eps)?,
            mlp: Mlp::new(c.hidden_size, c.intermediate_size)?,
        })
    }

    /// Builds the inference forms of the mixer and the MLP (`path` names the layer).
    fn prepare(&mut self, path: &str, c: &TextConfig, plan: &Plan) -> Result<()> {
        if let Some(m) = &mut self.linear_attn {
            m.prepare(&format!("{path}.linear_attn"), c, plan)?;
        }
        if let Some(m) = &mut self.self_attn {
            m.prepare(&format!("{path}.self_attn"), c, plan)?;
        }
        self.mlp.prepare(&format!("{path}.mlp"), plan)
    }

    /// The mixer, prepared.
    pub(crate) fn mixer(&self) -> Result<Mixer<'_>> {
        match (&self.linear_attn, &self.self_attn) {
            (Some(m), _) => Ok(Mixer::DeltaNet(m.prepared()?)),
            (None, Some(m)) => Ok(Mixer::Attention(m.prepared()?)),
            (None, None) => Err(not_prepared("layer without a mixer")),
        }
    }

    /// The weight of the norm before the MLP.
    pub(crate) fn post_norm(&self) -> &Array {
        self.post_attention_layernorm.weight.value()
    }

    /// Points the adapted layers' updates at the current parameters.
    fn refresh_adapters(&mut self) -> Result<()> {
        if let Some(m) = &mut self.linear_attn {
            m.refresh_adapters()?;
        }
        if let Some(m) = &mut self.self_attn {
            m.refresh_adapters()?;
        }
        self.mlp.refresh_adapters()
    }

    /// The whole layer over the residual stream `h` of a fresh sequence (layer `i`), with
    /// the reference ops and a cache of its own that is dropped: what a checkpointed
    /// training step recomputes. The same values as [`Model::hidden_states`]' layer.
    fn forward_fresh(&self, h: &Array, i: usize, eps: f32) -> Result<Array> {
        let norm = |x: &Array, w: &Array| -> Result<Array> { Ok(fast::rms_norm(x, Some(w), eps)?) };
        let mut lc = match &self.linear_attn {
            Some(_) => LayerCache::Recurrent(RecurrentCache::default()),
            None => LayerCache::Attention(KvCache::default()),
        };
        let x = norm(h, self.input_layernorm.weight.value())?;
        let h = h.add(&self.mix(&x, &mut lc, i, false)?)?;
        let x = norm(&h, self.post_norm())?;
        Ok(h.add(&self.mlp.forward(&x)?)?)
    }

    /// The reference mixer over `x` of a prefill; with `rows` (a batch padded on the
    /// right from a fresh cache) the DeltaNet keeps each row's state at its end.
    fn mix_rows(
        &self,
        x: &Array,
        lc: &mut LayerCache,
        i: usize,
        rows: Option<&RowEnds>,
    ) -> Result<Array> {
        match (self.mixer()?, lc, rows) {
            (Mixer::DeltaNet(m), LayerCache::Recurrent(c), Some(r)) => {
                m.forward_rows(x, c, Some(r))
            }
            (_, lc, _) => self.mix(x, lc, i, false),
        }
    }

    /// The mixer (DeltaNet or attention) over `x`, the normed input of layer `i`, with
    /// its cache `lc`: the reference ops, or (`fused`) the fused one-token forms.
    fn mix(&self, x: &Array, lc: &mut LayerCache, i: usize, fused: bool) -> Result<Array> {
        match (self.mixer()?, lc) {
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
    /// Loading is [`mlx_lm::load::load_weights`]: every tensor, [`weights::sanitize`]
    /// (Hugging Face to MLX names and forms), the floating-point tensors converted as
    /// [`ModelOptions::float_dtype`] says, quantization of the layers stored
    /// quantized, a strict [`Module::update`]; then the inference forms are built
    /// (`Model::prepare`).
    ///
    /// # Errors
    /// A missing or invalid config field, and a missing, unexpected, mis-shaped or
    /// wrongly typed tensor (named); invalid options (`cpu_threads` of 0).
    pub fn load_with(dir: impl AsRef<Path>, options: ModelOptions) -> Result<Model> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a model folder"),
            ));
        }
        let config = Config::from_file(dir.join("config.json"))?;
        let mut model = Model::new(config, options)?;
        let quantization = weights::quantization(&model.config);
        let mut sanitizer = weights::Sanitizer::new(&model.config);
        let quantized = quantization.is_some();
        let float_dtype = model.float_dtype();
        let loaded = mlx_lm::load::load_weights(&mut model, dir, quantization.as_ref(), |w| {
            float_dtype.apply(sanitizer.sanitize(w)?, quantized)
        });
        model.finish_load(loaded, sanitizer)
    }

    /// Builds the model from the tensors of `checkpoint` (e.g. random weights held in
    /// memory, [`Checkpoint::from_arrays`]), loaded as [`Model::load_with`] loads a folder.
    /// The checkpoint is dropped once read, so its arrays are not held past the update.
    pub fn from_checkpoint(
        config: Config,
        checkpoint: Checkpoint,
        options: ModelOptions,
    ) -> Result<Model> {
        let tensors = checkpoint.load_all()?;
        drop(checkpoint);
        Model::from_tensors(config, tensors, options)
    }

    /// Builds the model from tensors by stored name (either layout), as
    /// [`Model::load_with`] does from a folder's.
    pub fn from_tensors(config: Config, tensors: ParamMap, options: ModelOptions) -> Result<Model> {
        let mut model = Model::new(config, options)?;
        let quantization = weights::quantization(&model.config);
        let mut sanitizer = weights::Sanitizer::new(&model.config);
        let quantized = quantization.is_some();
        let float_dtype = model.float_dtype();
        let loaded = sanitizer
            .sanitize(tensors)
            .and_then(|w| float_dtype.apply(w, quantized))
            .and_then(|w| mlx_lm::load::apply_weights(&mut model, w, quantization.as_ref()));
        model.finish_load(loaded, sanitizer)
    }

    /// The model for `config` with placeholder parameters (lazy zeros: nothing is
    /// allocated until the checkpoint replaces them).
    fn new(config: Config, options: ModelOptions) -> Result<Model> {
        let plan = Plan::resolve(&options)?;
        let c = &config.text;
        // A placeholder is checked against the memory free now, as every array mlx-rs
        // makes: an error names the module.
        let at = |path: String| move |e: Error| Error::Weights(format!("{path}: {e}"));
        let p = "language_model.model";
        let layers = c
            .layer_types
            .iter()
            .enumerate()
            .map(|(i, &kind)| DecoderLayer::new(c, kind).map_err(at(format!("{p}.layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let language_model = TextModel {
            model: TextDecoder {
                embed_tokens: linear::placeholder_embedding(c.vocab_size, c.hidden_size)
                    .map_err(at(format!("{p}.embed_tokens")))?,
                layers,
                norm: rms_norm(c.hidden_size, c.rms_norm_eps)?,
                embedding: None,
            },
            lm_head: if c.tie_word_embeddings {
                None
            } else {
                Some(
                    linear::placeholder(c.vocab_size, c.hidden_size)
                        .map_err(at("language_model.lm_head".into()))?,
                )
            },
            head: None,
        };
        Ok(Model {
            language_model,
            config,
            layout: Layout::Mlx,
            options,
            plan,
            group: None,
            grad_checkpoint: false,
        })
    }

    /// After the update: the layout the sanitizer saw, errors in the checkpoint's own
    /// names, and the inference forms.
    fn finish_load(mut self, loaded: Result<()>, sanitizer: weights::Sanitizer) -> Result<Model> {
        loaded.map_err(|e| sanitizer.explain(e))?;
        self.layout = sanitizer.layout();
        self.prepare()?;
        Ok(self)
    }

    /// Builds the forms the forward pass runs with from the loaded parameters, once, for
    /// the model's [`Plan`]: joined projections ([`linear::Projections`]), products in
    /// their device form ([`Linear::for_device`]: float32 weights transposed for the CPU),
    /// a tied table in the output head's form. Each parameter is then pointed at the
    /// arrays of its inference form (views, no copies), so the weights are held once and
    /// [`Module::parameters`] still gives the checkpoint's values.
    fn prepare(&mut self) -> Result<()> {
        let text = self.rank_text_config();
        let path = "language_model.model.embed_tokens";
        let embedding = Embedding {
            table: Linear::from_embedding(path, &self.language_model.model.embed_tokens)?,
        };
        // The CUDA product kernels the plan takes are compiled now, not at the first step.
        let inner = [
            text.hidden_size,
            text.intermediate_size,
            text.num_attention_heads * text.head_dim,
            text.linear_value_dim(),
        ];
        let products = linear::compile_kernels(self.plan.products(), &embedding.table, &inner);
        self.plan.small_batch_rows = products.small_batch_rows;
        self.plan.quantized_gemv = products.quantized_gemv;
        let (c, plan) = (&text, &self.plan);
        let lm = &mut self.language_model;
        let dec = &mut lm.model;
        // A tied table is also the output head: keep it in the head's fastest form.
        let embedding = if c.tie_word_embeddings {
            embedding.for_device(plan.products())?
        } else {
            embedding
        };
        embedding
            .table
            .stored()?
            .store_into_embedding(path, &mut dec.embed_tokens)?;
        dec.embedding = Some(embedding);
        for (i, layer) in dec.layers.iter_mut().enumerate() {
            layer.prepare(&format!("language_model.model.layers.{i}"), c, plan)?;
        }
        if let Some(head) = &mut lm.lm_head {
            let path = "language_model.lm_head";
            lm.head = Some(Linear::prepare_layer(path, head, plan.products())?);
        }
        // The views are evaluated now, so that the model holds only data (a lazy array
        // would stay tied to this thread's stream).
        self.eval_parameters()?;
        Ok(())
    }

    /// The head counts and MLP width of this rank's share of the layers: the whole
    /// model's unless sharded ([`Model::shard`]).
    fn rank_text_config(&self) -> TextConfig {
        let mut c = self.config.text.clone();
        if let Some(n) = self.group.as_ref().map(Group::size) {
            c.num_attention_heads /= n;
            c.num_key_value_heads = (c.num_key_value_heads / n).max(1);
            c.linear_num_key_heads /= n;
            c.linear_num_value_heads /= n;
            c.intermediate_size /= n;
        }
        c
    }

    /// Splits the loaded model across the processes of `group` (tensor parallelism, as
    /// mlx-lm's `Model.shard`): each rank keeps its share of the attention heads (query,
    /// gate, key and value projections by rows, the output projection by columns; with
    /// fewer key/value heads than ranks, the key/value head its query heads use), of the
    /// Gated DeltaNet heads (the `[q|k|v]` projection and the conv by channels, q, k and v
    /// each split on its own; `z`, `b`, `a`, `A_log`, `dt_bias` by value heads; the output
    /// projection by columns) and of the MLP's hidden units (gate and up by rows, down by
    /// columns); the forward pass all-sums each mixer's and each MLP's partial outputs.
    /// The embedding, the norms and the output head stay whole on every rank (mlx-lm
    /// also splits an untied head by vocabulary), so every rank computes the same logits.
    /// The joined projections and device forms are then built again from the slices.
    ///
    /// Every rank of the group must call it, then run the same forward passes in the same
    /// order. A group of one process leaves the model as it is. The compiled layer steps
    /// ([`Plan::compile_layers`]) are turned off: a layer's collective stays outside.
    ///
    /// # Errors
    /// The group's size does not divide the attention heads, the DeltaNet key or value
    /// heads or the MLP's width, or neither it nor the key/value heads divide the other
    /// (the model is then unchanged); a quantized layer split by columns whose slices are
    /// not whole quantization groups (the model is then unusable).
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
        let c = self.config.text.clone();
        part.divide(c.num_attention_heads, "the attention heads")?;
        let kv = c.num_key_value_heads;
        if kv % part.size != 0 && part.size % kv != 0 {
            return Err(Error::InvalidArgument(format!(
                "cannot shard the key/value heads ({kv}) across {} processes: neither \
                 divides the other",
                part.size
            )));
        }
        part.divide(c.linear_num_key_heads, "the DeltaNet key heads")?;
        part.divide(c.linear_num_value_heads, "the DeltaNet value heads")?;
        part.divide(c.intermediate_size, "the MLP's intermediate size")?;
        for (i, layer) in self.language_model.model.layers.iter_mut().enumerate() {
            let path = format!("language_model.model.layers.{i}");
            if let Some(m) = &mut layer.linear_attn {
                m.shard(&format!("{path}.linear_attn"), &c, part)?;
            }
            if let Some(m) = &mut layer.self_attn {
                m.shard(&format!("{path}.self_attn"), &c, part)?;
            }
            layer.mlp.shard(&format!("{path}.mlp"), part)?;
        }
        self.group = Some(group);
        self.plan.compile_layers = false;
        self.prepare()
    }

    /// The group the model is sharded across ([`Model::shard`]), if any.
    pub fn group(&self) -> Option<&Group> {
        self.group.as_ref()
    }

    /// The sum of every rank's partial output of a layer's mixer or MLP (the output
    /// itself unless sharded).
    fn reduce(&self, x: Array) -> Result<Array> {
        Ok(match &self.group {
            Some(g) => distributed::all_sum(&x, Some(g))?,
            None => x,
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
        match &self.language_model.model.embedding {
            Some(e) => e.dtype(),
            None => Dtype::Float32,
        }
    }

    /// How a checkpoint's floating-point tensors are converted at load: the options'
    /// [`FloatDtype`](crate::FloatDtype) for where this model's products run (the CPU
    /// kernels or MLX, [`mlx_lm::load::FloatDtype::for_products`]).
    fn float_dtype(&self) -> crate::FloatDtype {
        let kernels = self.plan.cpu.is_some_and(|c| c.gemm);
        self.options.float_dtype.for_products(kernels)
    }

    /// Whether a parameter other than an adapter's is trainable (full fine-tuning).
    fn trains_weights(&self) -> Result<bool> {
        let trainable = self.trainable_parameters()?;
        Ok(trainable.keys().any(|k| !tuner::is_adapter_parameter(k)))
    }

    /// The decoder layers.
    fn layers(&self) -> &[DecoderLayer] {
        &self.language_model.model.layers
    }

    /// The embedding table in its inference form.
    fn embedding(&self) -> Result<&Embedding> {
        self.language_model
            .model
            .embedding
            .as_ref()
            .ok_or_else(|| not_prepared("embed_tokens"))
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
        self.run_layers(tokens, cache, false, None)
    }

    /// [`Model::hidden_states`]; with `pace` (a prefill, never inside a transform), each
    /// layer is handed to MLX as soon as it is built and the host waits for the layer
    /// before it, so that it runs at most one layer ahead of the device
    /// ([`Plan::paced_prefill`]). With `rows`, `tokens` is a batch padded on the right
    /// (see [`mlx_lm::LanguageModel::prefill_rows`]) and `cache` a fresh one.
    fn run_layers(
        &self,
        tokens: &Array,
        cache: &mut Cache,
        pace: bool,
        rows: Option<&RowEnds>,
    ) -> Result<Array> {
        mlx_lm::model::check_input(tokens, cache, self.layers().len())?;
        mlx_lm::model::check_token_ids(tokens, self.config.text.vocab_size)?;
        // The one place the fused decode is entered.
        if tokens.dim(1) == 1 && self.plan.fused() {
            return self.decode_fused(tokens, cache);
        }
        let eps = self.config.text.rms_norm_eps;
        let norm = |x: &Array, w: &Array| -> Result<Array> { Ok(fast::rms_norm(x, Some(w), eps)?) };
        let mut h = self.embedding()?.forward(tokens)?;
        // A training step: each layer recomputed in the backward pass, the cache unused.
        if self.grad_checkpoint && self.group.is_none() && cache.is_empty() && rows.is_none() {
            let full = self.trains_weights()?;
            for (i, layer) in self.layers().iter().enumerate() {
                let (c, plan) = (self.config.text.clone(), self.plan);
                let out = checkpoint_layer(layer, &[h], move |layer, x| {
                    // The layer's forms from its parameters, which are the function's inputs.
                    match full {
                        true => layer.prepare(&format!("layer {i}"), &c, &plan)?,
                        false => layer.refresh_adapters()?,
                    }
                    Ok(vec![layer.forward_fresh(&x[0], i, eps)?])
                })?;
                h = out.into_iter().next().ok_or_else(|| {
                    Error::InvalidArgument("a checkpointed layer returned no output".into())
                })?;
            }
            return norm(&h, self.input_norm(self.layers().len()));
        }
        // `x` is always the normed `h`: the input of the next mixer, or the final output.
        let mut x = norm(&h, self.input_norm(0))?;
        // With `pace`: the last layer handed to MLX and not waited for.
        let mut started: Option<Array> = None;
        for (i, (layer, lc)) in self
            .layers()
            .iter()
            .zip(cache.layers.iter_mut())
            .enumerate()
        {
            h = h.add(&self.reduce(layer.mix_rows(&x, lc, i, rows)?)?)?;
            x = norm(&h, layer.post_norm())?;
            h = h.add(&self.reduce(layer.mlp.forward(&x)?)?)?;
            x = norm(&h, self.input_norm(i + 1))?;
            if pace {
                let mut arrays = vec![&h, &x];
                arrays.extend(lc.arrays());
                mlx_rs::async_eval(&arrays)?;
                if let Some(previous) = started.replace(x.clone()) {
                    previous.eval()?;
                }
            }
        }
        Ok(x)
    }

    /// The input norm of layer `i`; the final norm after the last layer.
    fn input_norm(&self, i: usize) -> &Array {
        self.layers()
            .get(i)
            .map_or(self.language_model.model.norm.weight.value(), |l| {
                l.input_layernorm.weight.value()
            })
    }

    /// [`Model::hidden_states`] for one token per sequence, fused: activations without the
    /// length axis (`[B, hidden]`, so MLX multiplies plain matrices instead of wrapping
    /// each product in a flatten and an unflatten: 743 → 553 graph nodes per 2B step), the
    /// compiled norms and the fused mixers, or each layer as one compiled function
    /// ([`Plan::compile_layers`]). The same values as the reference ops.
    fn decode_fused(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let eps = self.config.text.rms_norm_eps;
        let h = self.embedding()?.forward(tokens)?;
        let mut h = h.reshape(&[h.dim(0), h.dim(2)])?;
        let mut x = compiled::rms_norm(&h, self.input_norm(0), eps)?;
        for (i, (layer, lc)) in self
            .layers()
            .iter()
            .zip(cache.layers.iter_mut())
            .enumerate()
        {
            let next_norm = self.input_norm(i + 1);
            if self.plan.compile_layers {
                let glue_kernels =
                    self.plan.step == mlx_lm::kernels::gated_delta::StepPath::CudaKernel;
                (h, x) = layer.decode_compiled(&h, &x, next_norm, lc, eps, glue_kernels)?;
                continue;
            }
            let r = self.reduce(layer.mix(&x, lc, i, true)?)?;
            let (h_mid, x_mid) = compiled::add_rms_norm(&h, &r, layer.post_norm(), eps)?;
            let m = self.reduce(layer.mlp.prepared()?.decode(&x_mid)?)?;
            (h, x) = compiled::add_rms_norm(&h_mid, &m, next_norm, eps)?;
        }
        Ok(ops::expand_dims(&x, 1)?)
    }

    /// Logits for final-normed hidden states (`[.., hidden]` → `[.., vocab]`).
    pub fn logits(&self, hidden: &Array) -> Result<Array> {
        match &self.language_model.head {
            Some(head) => head.forward(hidden),
            None => self.embedding()?.as_linear(hidden),
        }
    }

    /// Logits of the last position only (`[B, vocab]`): what generation needs, without
    /// computing the head for every prompt position.
    pub fn forward_last(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        let h = self.hidden_states(tokens, cache)?;
        self.logits(&mlx_lm::model::last_position(&h)?)
    }
}

/// Adapters (`mlx_lm::tuner`) wrap the linear layers of `language_model.model.layers`,
/// as mlx-lm's; the inference forms are built again when they change (an adapted layer
/// runs its base's product and the update side by side, and is not joined with others).
impl Adaptable for Model {
    fn layers_path(&self) -> String {
        "language_model.model.layers".into()
    }

    fn num_layers(&self) -> usize {
        self.layers().len()
    }

    fn adapters_changed(&mut self) -> Result<()> {
        self.prepare()
    }

    /// Yes, unless float32 products run in the CPU GEMM outside MLX's graph (load with
    /// [`ModelOptions::for_training`]): with weights trainable, [`Adaptable::refresh_adapters`]
    /// builds the forms the forward pass runs with again from the current parameters.
    fn supports_full_fine_tuning(&self) -> bool {
        !self.plan.cpu.is_some_and(|c| c.gemm)
    }

    fn set_grad_checkpoint(&mut self, on: bool) -> Result<()> {
        self.grad_checkpoint = on;
        Ok(())
    }

    /// Points the prepared forms' adapter updates at the current parameters; when a
    /// parameter other than an adapter's is trainable (full fine-tuning), builds every
    /// prepared form again from the current parameters instead (`Model::prepare`: inside
    /// a gradient transform, from its tracers, so the gradients reach the weights; a copy
    /// of the weights per call, the price of training the joined forms).
    fn refresh_adapters(&mut self) -> Result<()> {
        if self.trains_weights()? {
            return self.prepare();
        }
        for layer in &mut self.language_model.model.layers {
            layer.refresh_adapters()?;
        }
        let lm = &mut self.language_model;
        if let (Some(head), Some(layer)) = (&mut lm.head, &lm.lm_head) {
            head.refresh_update(layer)?;
        }
        Ok(())
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
        let pace = self.plan.paced_prefill
            && tokens.ndim() == 2
            && tokens.dim(1) > crate::options::PACE_ABOVE_TOKENS;
        self.run_layers(tokens, cache, pace, None).map(drop)
    }

    /// The prompts as one batch padded on the right, then one cache per prompt.
    fn prefill_rows(&self, prompts: &[&[u32]]) -> Result<Vec<Cache>> {
        let rows = PaddedRows::new(prompts)?;
        let ends = RowEnds::new(&rows, self.config.text.linear_conv_kernel_dim)?;
        let mut cache = self.new_cache();
        let pace =
            self.plan.paced_prefill && rows.tokens.dim(1) > crate::options::PACE_ABOVE_TOKENS;
        self.run_layers(&rows.tokens, &mut cache, pace, Some(&ends))?;
        cache.split_rows(&rows.lengths)
    }

    fn forward_last(&self, tokens: &Array, cache: &mut Cache) -> Result<Array> {
        Model::forward_last(self, tokens, cache)
    }
}
