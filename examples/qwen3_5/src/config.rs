//! The model configuration read from `config.json` (with `text_config`).
//!
//! Every field the forward pass depends on must be present: the class defaults of the
//! reference implementations describe a different (9B-like) model, so a missing field is
//! an error naming it, never a silent default.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The kind of token mixer in one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// Gated DeltaNet (linear attention with a recurrent state).
    LinearAttention,
    /// Gated softmax attention with a KV cache.
    FullAttention,
}

/// The text model's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    /// Width of the residual stream.
    pub hidden_size: i32,
    /// Number of decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: i32,
    /// Query heads of the attention layers.
    pub num_attention_heads: i32,
    /// Key/value heads of the attention layers.
    pub num_key_value_heads: i32,
    /// Width of one attention head.
    pub head_dim: i32,
    /// Key (and query) heads of the DeltaNet layers.
    pub linear_num_key_heads: i32,
    /// Value heads of the DeltaNet layers (a multiple of the key heads).
    pub linear_num_value_heads: i32,
    /// Width of one DeltaNet key head.
    pub linear_key_head_dim: i32,
    /// Width of one DeltaNet value head.
    pub linear_value_head_dim: i32,
    /// Kernel size of the DeltaNet causal convolution.
    pub linear_conv_kernel_dim: i32,
    /// Rows of the embedding (and of the output head), padding included.
    pub vocab_size: i32,
    /// Epsilon of the RMS norms.
    pub rms_norm_eps: f32,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Fraction of each attention head that is rotated.
    pub partial_rotary_factor: f32,
    /// Whether the output head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// The mixer of each layer.
    pub layer_types: Vec<LayerType>,
    /// End-of-sequence ids named by the config (may be empty).
    pub eos_token_ids: Vec<u32>,
    /// The context length the model was trained for, if the config says.
    pub max_position_embeddings: Option<i32>,
}

impl TextConfig {
    /// Number of rotated dimensions per attention head (`head_dim · partial_rotary_factor`).
    pub fn rope_dims(&self) -> i32 {
        (self.head_dim as f32 * self.partial_rotary_factor) as i32
    }

    /// Width of the DeltaNet key stream (`key heads · key dim`).
    pub fn linear_key_dim(&self) -> i32 {
        self.linear_num_key_heads * self.linear_key_head_dim
    }

    /// Width of the DeltaNet value stream (`value heads · value dim`).
    pub fn linear_value_dim(&self) -> i32 {
        self.linear_num_value_heads * self.linear_value_head_dim
    }

    /// Channels of the DeltaNet convolution (`2 · key dim + value dim`).
    pub fn linear_conv_dim(&self) -> i32 {
        2 * self.linear_key_dim() + self.linear_value_dim()
    }
}

/// Group size and bit width of one quantized tensor (MLX affine quantization).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantParams {
    /// Consecutive weights sharing one scale and bias.
    pub group_size: i32,
    /// Bits per weight.
    pub bits: i32,
}

/// The `quantization` block of an MLX checkpoint's config.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizationConfig {
    /// The default parameters.
    pub default: QuantParams,
    /// Per-module overrides, keyed by module path relative to the text model
    /// (`layers.0.mlp.gate_proj`, `embed_tokens`, `lm_head`); `None` means "not quantized".
    pub per_layer: BTreeMap<String, Option<QuantParams>>,
}

/// Everything read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `model_type` of the file (`qwen3_5` or `qwen3_5_text`).
    pub model_type: String,
    /// The text model.
    pub text: TextConfig,
    /// Quantization, for MLX-quantized checkpoints.
    pub quantization: Option<QuantizationConfig>,
}

impl Config {
    /// Reads and validates `config.json` (the file, or the folder holding it).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        let mut path = path.as_ref().to_path_buf();
        // A folder named config.json is the bad file itself, not the folder holding it.
        if path.is_dir() && path.file_name() != Some("config.json".as_ref()) {
            path = path.join("config.json");
        }
        let text = mlx_lm::load::read_text_file(&path)?;
        let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        Config::from_json(&value)
    }

    /// Validates a parsed `config.json`: either the multimodal form with `text_config`,
    /// or a bare text configuration.
    pub fn from_json(value: &Value) -> Result<Config> {
        let top = value
            .as_object()
            .ok_or_else(|| Error::Config("config.json is not a JSON object".into()))?;
        let (text, prefix) = match top.get("text_config") {
            Some(Value::Object(t)) => (t, "text_config."),
            Some(_) => return Err(Error::Config("text_config: not an object".into())),
            None => (top, ""),
        };
        let model_type = match top.get("model_type") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::Config("model_type: not a string".into())),
            None => return Err(Error::Config("model_type: missing".into())),
        };
        if !matches!(model_type.as_str(), "qwen3_5" | "qwen3_5_text") {
            return Err(Error::Config(format!(
                "model_type: {model_type:?} is not a Qwen 3.5 text model (qwen3_5 or qwen3_5_text)"
            )));
        }
        let f = Fields { map: text, prefix };
        let text_config = parse_text(&f, top)?;
        let quantization = parse_quantization(top, text)?;
        Ok(Config {
            model_type,
            text: text_config,
            quantization,
        })
    }
}

/// Field access with errors that name the field as it appears in the file.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: &'a str,
}

impl Fields<'_> {
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn positive_int(&self, key: &str) -> Result<i32> {
        let v = self
            .map
            .get(key)
            .ok_or_else(|| Error::Config(format!("{}: missing", self.name(key))))?;
        positive_int(v, &self.name(key))
    }

    fn positive_float(&self, key: &str) -> Result<f32> {
        let v = self
            .map
            .get(key)
            .ok_or_else(|| Error::Config(format!("{}: missing", self.name(key))))?;
        positive_float(v, &self.name(key))
    }
}

fn positive_int(v: &Value, name: &str) -> Result<i32> {
    match v.as_i64() {
        Some(n) if n > 0 && n <= i32::MAX as i64 => Ok(n as i32),
        _ => Err(Error::Config(format!(
            "{name}: expected a positive integer, found {v}"
        ))),
    }
}

fn positive_float(v: &Value, name: &str) -> Result<f32> {
    match v.as_f64() {
        Some(x) if x.is_finite() && x > 0.0 => Ok(x as f32),
        _ => Err(Error::Config(format!(
            "{name}: expected a positive number, found {v}"
        ))),
    }
}

fn parse_text(f: &Fields, top: &Map<String, Value>) -> Result<TextConfig> {
    let hidden_size = f.positive_int("hidden_size")?;
    let num_hidden_layers = f.positive_int("num_hidden_layers")?;
    let intermediate_size = f.positive_int("intermediate_size")?;
    let num_attention_heads = f.positive_int("num_attention_heads")?;
    let num_key_value_heads = f.positive_int("num_key_value_heads")?;
    let head_dim = f.positive_int("head_dim")?;
    let linear_num_key_heads = f.positive_int("linear_num_key_heads")?;
    let linear_num_value_heads = f.positive_int("linear_num_value_heads")?;
    let linear_key_head_dim = f.positive_int("linear_key_head_dim")?;
    let linear_value_head_dim = f.positive_int("linear_value_head_dim")?;
    let linear_conv_kernel_dim = f.positive_int("linear_conv_kernel_dim")?;
    let vocab_size = f.positive_int("vocab_size")?;
    let rms_norm_eps = f.positive_float("rms_norm_eps")?;

    // A sanity bound: the layer list and the model's layer vector are allocated from this
    // number before any weight is read (2^31 layers would ask for hundreds of GB).
    if num_hidden_layers > MAX_LAYERS {
        return Err(Error::Config(format!(
            "{}: {num_hidden_layers} layers is more than this implementation accepts ({MAX_LAYERS})",
            f.name("num_hidden_layers")
        )));
    }
    // Widths the model derives from these (as 32-bit MLX dimensions) must fit.
    let (kd, vd) = (
        linear_num_key_heads as i64 * linear_key_head_dim as i64,
        linear_num_value_heads as i64 * linear_value_head_dim as i64,
    );
    for (what, n) in [
        ("linear_num_key_heads × linear_key_head_dim", kd),
        ("linear_num_value_heads × linear_value_head_dim", vd),
        (
            "the DeltaNet projection width (2 × key width + 2 × value width)",
            2 * kd + 2 * vd,
        ),
        (
            "num_attention_heads × head_dim × 2",
            num_attention_heads as i64 * head_dim as i64 * 2,
        ),
        (
            "num_key_value_heads × head_dim",
            num_key_value_heads as i64 * head_dim as i64,
        ),
        (
            "linear_num_value_heads × 2",
            linear_num_value_heads as i64 * 2,
        ),
    ] {
        if n > i32::MAX as i64 {
            return Err(Error::Config(format!(
                "{}{what} = {n} is larger than an MLX dimension can be ({})",
                f.prefix,
                i32::MAX
            )));
        }
    }

    if num_attention_heads % num_key_value_heads != 0 {
        return Err(Error::Config(format!(
            "{}: {num_key_value_heads} does not divide num_attention_heads ({num_attention_heads})",
            f.name("num_key_value_heads")
        )));
    }
    if linear_num_value_heads % linear_num_key_heads != 0 {
        return Err(Error::Config(format!(
            "{}: {linear_num_value_heads} is not a multiple of linear_num_key_heads ({linear_num_key_heads})",
            f.name("linear_num_value_heads")
        )));
    }

    // Features of related models that this implementation does not have.
    if let Some(v) = f.map.get("attention_bias") {
        if v.as_bool() != Some(false) {
            return Err(Error::Config(format!(
                "{}: {v} is not supported (Qwen 3.5 has no attention bias)",
                f.name("attention_bias")
            )));
        }
    }
    if let Some(v) = f.map.get("attn_output_gate") {
        if v.as_bool() != Some(true) {
            return Err(Error::Config(format!(
                "{}: {v} is not supported (Qwen 3.5 gates the attention output)",
                f.name("attn_output_gate")
            )));
        }
    }
    if let Some(v) = f.map.get("num_experts") {
        if v.as_i64() != Some(0) {
            return Err(Error::Config(format!(
                "{}: {v}: mixture-of-experts models are not supported",
                f.name("num_experts")
            )));
        }
    }

    let (rope_theta, partial_rotary_factor) = parse_rope(f)?;
    let rope_dims = (head_dim as f32 * partial_rotary_factor) as i32;
    if rope_dims < 2 || rope_dims % 2 != 0 || rope_dims > head_dim {
        return Err(Error::Config(format!(
            "partial_rotary_factor: {partial_rotary_factor} × head_dim {head_dim} gives {rope_dims} rotated dimensions (needs an even number in 2..=head_dim)"
        )));
    }

    let tie_word_embeddings = match (
        f.map.get("tie_word_embeddings"),
        top.get("tie_word_embeddings"),
    ) {
        (Some(v), _) => v.as_bool().ok_or_else(|| {
            Error::Config(format!(
                "{}: expected true or false, found {v}",
                f.name("tie_word_embeddings")
            ))
        })?,
        (None, Some(v)) => v.as_bool().ok_or_else(|| {
            Error::Config(format!(
                "tie_word_embeddings: expected true or false, found {v}"
            ))
        })?,
        (None, None) => {
            return Err(Error::Config(format!(
                "{}: missing",
                f.name("tie_word_embeddings")
            )))
        }
    };

    let layer_types = parse_layer_types(f, num_hidden_layers)?;
    let eos_token_ids = match f
        .map
        .get("eos_token_id")
        .or_else(|| top.get("eos_token_id"))
    {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_ids(v).ok_or_else(|| {
            Error::Config(format!(
                "eos_token_id: expected a token id or a list of ids, found {v}"
            ))
        })?,
    };
    let max_position_embeddings = match f.map.get("max_position_embeddings") {
        None | Some(Value::Null) => None,
        Some(v) => Some(positive_int(v, &f.name("max_position_embeddings"))?),
    };

    Ok(TextConfig {
        hidden_size,
        num_hidden_layers,
        intermediate_size,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        linear_num_key_heads,
        linear_num_value_heads,
        linear_key_head_dim,
        linear_value_head_dim,
        linear_conv_kernel_dim,
        vocab_size,
        rms_norm_eps,
        rope_theta,
        partial_rotary_factor,
        tie_word_embeddings,
        layer_types,
        eos_token_ids,
        max_position_embeddings,
    })
}

fn parse_ids(v: &Value) -> Option<Vec<u32>> {
    let one = |x: &Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        x => one(x).map(|n| vec![n]),
    }
}

/// RoPE: `rope_parameters` (transformers ≥ 5) or the older flat `rope_theta` /
/// `partial_rotary_factor` (with an optional `rope_scaling`). Only plain RoPE is
/// supported; for text, Qwen 3.5's M-RoPE sections see equal positions and reduce to it.
fn parse_rope(f: &Fields) -> Result<(f32, f32)> {
    let params = match f
        .map
        .get("rope_parameters")
        .or_else(|| f.map.get("rope_scaling"))
    {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(p),
        Some(v) => {
            return Err(Error::Config(format!(
                "{}: expected an object, found {v}",
                f.name("rope_parameters")
            )))
        }
    };
    if let Some(p) = params {
        if let Some(kind) = p.get("rope_type").or_else(|| p.get("type")) {
            if !matches!(kind.as_str(), Some("default") | Some("mrope")) {
                return Err(Error::Config(format!(
                    "{}: rope type {kind} is not supported (only the default RoPE)",
                    f.name("rope_parameters.rope_type")
                )));
            }
        }
    }
    let lookup = |key: &str| -> Result<f32> {
        if let Some(v) = params.and_then(|p| p.get(key)) {
            return positive_float(v, &f.name(&format!("rope_parameters.{key}")));
        }
        if let Some(v) = f.map.get(key) {
            return positive_float(v, &f.name(key));
        }
        Err(Error::Config(format!(
            "{}: missing",
            f.name(&format!("rope_parameters.{key}"))
        )))
    };
    let theta = lookup("rope_theta")?;
    let factor = lookup("partial_rotary_factor")?;
    if factor > 1.0 {
        return Err(Error::Config(format!(
            "{}: {factor} is above 1",
            f.name("rope_parameters.partial_rotary_factor")
        )));
    }
    Ok((theta, factor))
}

/// `layer_types` when present (transformers), otherwise `full_attention_interval`
/// (attention in every layer `i` with `(i + 1) % interval == 0`).
fn parse_layer_types(f: &Fields, n: i32) -> Result<Vec<LayerType>> {
    if let Some(v) = f.map.get("layer_types").filter(|v| !v.is_null()) {
        let name = f.name("layer_types");
        let items = v
            .as_array()
            .ok_or_else(|| Error::Config(format!("{name}: expected a list, found {v}")))?;
        if items.len() != n as usize {
            return Err(Error::Config(format!(
                "{name}: {} entries for num_hidden_layers = {n}",
                items.len()
            )));
        }
        let types = items
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_str() {
                Some("linear_attention") => Ok(LayerType::LinearAttention),
                Some("full_attention") => Ok(LayerType::FullAttention),
                _ => Err(Error::Config(format!(
                    "{name}[{i}]: {t} is neither \"linear_attention\" nor \"full_attention\""
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(iv) = f.map.get("full_attention_interval") {
            let interval = positive_int(iv, &f.name("full_attention_interval"))?;
            if types != interval_layer_types(n, interval) {
                return Err(Error::Config(format!(
                    "{name}: disagrees with full_attention_interval = {interval}"
                )));
            }
        }
        return Ok(types);
    }
    let interval = f
        .positive_int("full_attention_interval")
        .map_err(|e| match e {
            Error::Config(m) if m.ends_with("missing") => Error::Config(format!(
                "{}: missing (and no layer_types)",
                f.name("full_attention_interval")
            )),
            e => e,
        })?;
    Ok(interval_layer_types(n, interval))
}

fn interval_layer_types(n: i32, interval: i32) -> Vec<LayerType> {
    (0..n)
        .map(|i| {
            if (i + 1) % interval == 0 {
                LayerType::FullAttention
            } else {
                LayerType::LinearAttention
            }
        })
        .collect()
}

/// `quantization` (MLX) at the top level or in `text_config`; `quantization_config` is
/// read only when it has the same MLX form (MLX writes both).
fn parse_quantization(
    top: &Map<String, Value>,
    text: &Map<String, Value>,
) -> Result<Option<QuantizationConfig>> {
    let (name, q) = if let Some(q) = top.get("quantization").or_else(|| text.get("quantization")) {
        ("quantization", q)
    } else if let Some(q) = top
        .get("quantization_config")
        .or_else(|| text.get("quantization_config"))
    {
        if q.get("quant_method").is_some() && q.get("group_size").is_none() {
            return Err(Error::Config(format!(
                "quantization_config: quant_method {} is not supported (only MLX affine quantization)",
                q["quant_method"]
            )));
        }
        ("quantization_config", q)
    } else {
        return Ok(None);
    };
    if q.is_null() {
        return Ok(None);
    }
    let obj = q
        .as_object()
        .ok_or_else(|| Error::Config(format!("{name}: expected an object, found {q}")))?;
    let default = parse_quant_params(obj, name)?;
    let mut per_layer = BTreeMap::new();
    for (key, v) in obj {
        if matches!(
            key.as_str(),
            "group_size" | "bits" | "mode" | "quant_method"
        ) {
            continue;
        }
        let path = normalize_module_path(key);
        let params = match v {
            Value::Bool(false) => None,
            Value::Bool(true) => Some(default),
            Value::Object(o) => Some(parse_quant_params(o, &format!("{name}.{key}"))?),
            _ => {
                return Err(Error::Config(format!(
                    "{name}.{key}: expected an object or false, found {v}"
                )))
            }
        };
        per_layer.insert(path, params);
    }
    Ok(Some(QuantizationConfig { default, per_layer }))
}

fn parse_quant_params(obj: &Map<String, Value>, name: &str) -> Result<QuantParams> {
    let get = |k: &str| -> Result<i32> {
        let v = obj
            .get(k)
            .ok_or_else(|| Error::Config(format!("{name}.{k}: missing")))?;
        positive_int(v, &format!("{name}.{k}"))
    };
    let group_size = get("group_size")?;
    let bits = get("bits")?;
    if let Some(mode) = obj.get("mode") {
        if mode.as_str() != Some("affine") {
            return Err(Error::Config(format!(
                "{name}.mode: {mode} is not supported (only \"affine\")"
            )));
        }
    }
    check_quant_params(group_size, bits).map_err(|m| Error::Config(format!("{name}.{m}")))?;
    Ok(QuantParams { group_size, bits })
}

/// The most decoder layers a config may declare (a sanity bound; real models have a few
/// dozen).
pub const MAX_LAYERS: i32 = 4096;

/// Checks that MLX's affine quantization supports this group size and bit width.
pub(crate) fn check_quant_params(group_size: i32, bits: i32) -> std::result::Result<(), String> {
    if ![2, 3, 4, 5, 6, 8].contains(&bits) {
        return Err(format!("bits: {bits} is not one of 2, 3, 4, 5, 6, 8"));
    }
    if ![32, 64, 128].contains(&group_size) {
        return Err(format!(
            "group_size: {group_size} is not one of 32, 64, 128"
        ));
    }
    Ok(())
}

/// Module path relative to the text model: strips `language_model.`, `model.` and
/// `model.language_model.` prefixes (`language_model.model.layers.0.mlp.up_proj` →
/// `layers.0.mlp.up_proj`; `language_model.lm_head` → `lm_head`).
pub(crate) fn normalize_module_path(path: &str) -> String {
    for prefix in [
        "model.language_model.",
        "language_model.model.",
        "language_model.",
        "model.",
    ] {
        if let Some(rest) = path.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    path.to_string()
}
