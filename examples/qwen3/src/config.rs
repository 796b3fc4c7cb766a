//! `config.json` of a Qwen3 model (Hugging Face `Qwen3ForCausalLM`, or its mlx-lm
//! conversion).

use mlx_lm::load::Quantization;
use mlx_lm::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The fields of Qwen3's `config.json` that the model uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Width of the residual stream.
    pub hidden_size: i32,
    /// Number of decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// Key/value heads (grouped-query attention: divides the query heads).
    pub num_key_value_heads: i32,
    /// Features per head.
    pub head_dim: i32,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f32,
    /// Rows of the embedding and the output head.
    pub vocab_size: i32,
    /// RoPE base; transformers ≥ 5 nests it in `rope_parameters`.
    #[serde(default)]
    pub rope_theta: Option<f32>,
    /// Longest context the model was trained for.
    pub max_position_embeddings: i32,
    /// Whether the output head is the embedding table.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// RoPE scaling; only `null`, `default` and `linear` are supported.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers ≥ 5's form of `rope_theta` and `rope_scaling`.
    #[serde(default)]
    pub rope_parameters: Option<RopeScaling>,
    /// MLX quantization (mlx-lm's `quantization` entry).
    #[serde(default)]
    pub quantization: Option<Quantization>,
    /// A non-MLX quantization (FP8, AWQ, …), which this crate does not run.
    #[serde(default)]
    pub quantization_config: Option<serde_json::Value>,
}

/// `rope_scaling` / `rope_parameters`.
#[derive(Debug, Clone, Deserialize)]
pub struct RopeScaling {
    /// `default`, `linear`, `yarn`, …
    pub rope_type: Option<String>,
    /// The older name of `rope_type` (preferred when both are given, as mlx-lm does).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The scaling factor (`linear`: positions are divided by it).
    pub factor: Option<f64>,
    /// The RoPE base (in `rope_parameters`).
    pub rope_theta: Option<f32>,
}

impl Config {
    /// Reads and checks `dir/config.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Config> {
        let c: Config = mlx_lm::load::read_config(dir)?;
        c.check()?;
        Ok(c)
    }

    /// The RoPE base.
    pub fn rope_base(&self) -> Result<f32> {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref().and_then(|p| p.rope_theta))
            .ok_or_else(|| Error::Config("missing field `rope_theta`".into()))
    }

    /// The factor positions are multiplied by (`1 / factor` for `linear` scaling).
    pub fn rope_scale(&self) -> Result<f32> {
        let Some(s) = self.rope_scaling.as_ref().or(self.rope_parameters.as_ref()) else {
            return Ok(1.0);
        };
        let kind = s.kind.as_deref().or(s.rope_type.as_deref());
        match (kind.unwrap_or("default"), s.factor) {
            ("default", _) => Ok(1.0),
            ("linear", Some(f)) if f > 0.0 => Ok((1.0 / f) as f32),
            ("linear", _) => Err(Error::Config(
                "rope_scaling: linear scaling needs a positive `factor`".into(),
            )),
            (other, _) => Err(Error::Config(format!(
                "rope_scaling: type {other:?} is not supported (default, linear)"
            ))),
        }
    }

    /// Checks that the sizes fit together and that the model is one this crate runs.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(Error::Config(format!("{name} must be positive, got {v}")));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(Error::Config(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if self.head_dim % 2 != 0 {
            return Err(Error::Config(format!(
                "head_dim must be even (RoPE), got {}",
                self.head_dim
            )));
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            return Err(Error::Config(format!(
                "rms_norm_eps must be positive, got {}",
                self.rms_norm_eps
            )));
        }
        if let (None, Some(q)) = (&self.quantization, &self.quantization_config) {
            let method = q.get("quant_method").unwrap_or(&serde_json::Value::Null);
            return Err(Error::Config(format!(
                "quantization_config (quant_method {method}) is not supported: convert the \
                 model with mlx_lm.convert"
            )));
        }
        self.rope_base()?;
        self.rope_scale()?;
        Ok(())
    }
}
