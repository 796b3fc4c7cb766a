//! What the shared command line (`mlx_lm::cli`) needs to know about Qwen 3.5: how to load
//! it, its own flags, its sampling defaults, and for `bench` its tensors and the shapes of
//! the released models.

use std::collections::BTreeMap;
use std::path::Path;

use mlx_lm::cli::{BenchNote, ModelCli, RandomWeights, Result, SamplingDefaults};
use qwen3_5::config::{Config, LayerType};
use qwen3_5::model::chunked;
use qwen3_5::weights::{Checkpoint, Weights};
use qwen3_5::{Model, QWEN3_5_REAL_VOCAB_SIZE};
use serde_json::{json, Value};

/// How many ops MLX's CUDA backend puts in one CUDA graph before handing it to the GPU
/// (MLX's default is 20). A decode step of the 2B is ~550 ops; on an H200, alternating the
/// two settings three times in one session, 100 decoded at 351/263/349 tokens/s against
/// 288/244/221 at the default.
const MAX_OPS_PER_BUFFER: &str = "100";

/// Sets `MLX_MAX_OPS_PER_BUFFER` to [`MAX_OPS_PER_BUFFER`] unless the user has set it, so
/// that every command (and the `bench` peer, which inherits the environment) runs with
/// it; not on macOS, where Metal picks its own per device. Call it first thing in `main`,
/// before MLX reads it and while no other thread exists.
pub fn set_mlx_environment() {
    if cfg!(not(target_os = "macos")) && std::env::var_os("MLX_MAX_OPS_PER_BUFFER").is_none() {
        std::env::set_var("MLX_MAX_OPS_PER_BUFFER", MAX_OPS_PER_BUFFER);
    }
}

/// Qwen 3.5 (text) for `mlx_lm::cli::main`.
pub struct Qwen35;

/// Qwen 3.5's own flags, taken by every command that runs the model (`generate`, `chat`,
/// `logits`, `bench`) and applied in [`Qwen35::load`] and [`Qwen35::random`]. Options of
/// the model chosen at load (the decode path, compiled layers, the CPU GEMM and its
/// threads) belong here as fields, passed on to the loader.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Run prefill with the sequential gated delta rule instead of the chunked form.
    #[arg(long, hide = true)]
    pub sequential_prefill: bool,
    /// Chunk size of the chunked prefill.
    #[arg(long, hide = true, value_name = "C", default_value_t = chunked::DEFAULT_CHUNK,
          value_parser = clap::value_parser!(i32).range(1..), allow_negative_numbers = true)]
    pub prefill_chunk: i32,
}

impl Options {
    /// Applies the process-wide settings (the prefill form).
    fn apply(&self) -> Result<()> {
        chunked::set_prefill_chunk((!self.sequential_prefill).then_some(self.prefill_chunk))?;
        Ok(())
    }
}

impl ModelCli for Qwen35 {
    type Model = Model;
    type Options = Options;
    const NAME: &'static str = "qwen3_5";
    const ABOUT: &'static str = "Qwen 3.5 (text) on MLX: generate, chat, dump logits.";

    fn load(dir: &Path, options: &Options) -> Result<Model> {
        options.apply()?;
        Ok(qwen3_5::load(dir)?)
    }

    fn random(config: &Value, weights: &RandomWeights, options: &Options) -> Result<Model> {
        options.apply()?;
        let config = Config::from_json(config)?;
        let arrays = weights.generate(&tensor_shapes(&config))?;
        let mut weights = Weights::from_checkpoint(Checkpoint::from_arrays(arrays), &config)?;
        let model = Model::from_weights(config, &mut weights)?;
        weights.finish()?;
        Ok(model)
    }

    fn bench_presets() -> Vec<(&'static str, Value)> {
        vec![("2b", preset(2048, 6144)), ("0.8b", preset(1024, 3584))]
    }

    /// The model card's for non-thinking chat.
    fn sampling_defaults() -> SamplingDefaults {
        SamplingDefaults {
            temperature: 0.7,
            top_k: 20,
            top_p: 0.8,
            presence_penalty: 1.5,
            ..SamplingDefaults::default()
        }
    }

    fn real_vocab_size(_config: &Value) -> Option<usize> {
        Some(QWEN3_5_REAL_VOCAB_SIZE as usize)
    }

    fn bench_notes(_options: &Options, on_gpu: bool) -> Vec<BenchNote> {
        let prefill = match chunked::prefill_chunk() {
            Some(c) => (json!({"chunked": c}), format!("prefill: chunked ({c})")),
            None => (json!("sequential"), "prefill: sequential".into()),
        };
        // The binary reads the environment it set up (`set_mlx_environment`).
        let ops = std::env::var("MLX_MAX_OPS_PER_BUFFER").ok();
        vec![
            BenchNote {
                key: "prefill",
                value: prefill.0,
                text: Some(prefill.1),
            },
            BenchNote {
                key: "mlx_max_ops_per_buffer",
                value: json!(ops),
                text: ops
                    .filter(|_| on_gpu)
                    .map(|n| format!("MLX_MAX_OPS_PER_BUFFER={n} (the peer inherits it)")),
            },
        ]
    }
}

/// The text shapes of Qwen 3.5 2B (`hidden` 2048) and 0.8B (1024): 24 layers, every
/// fourth one attention, vocabulary 248320, tied embeddings.
fn preset(hidden: i32, intermediate: i32) -> Value {
    json!({
        "model_type": "qwen3_5",
        "tie_word_embeddings": true,
        "text_config": {
            "model_type": "qwen3_5_text",
            "hidden_size": hidden,
            "intermediate_size": intermediate,
            "num_hidden_layers": 24,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 256,
            "linear_num_key_heads": 16,
            "linear_num_value_heads": 16,
            "linear_key_head_dim": 128,
            "linear_value_head_dim": 128,
            "linear_conv_kernel_dim": 4,
            "vocab_size": 248320,
            "rms_norm_eps": 1e-6,
            "full_attention_interval": 4,
            "tie_word_embeddings": true,
            "attn_output_gate": true,
            "max_position_embeddings": 262144,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000000,
                "partial_rotary_factor": 0.25,
                "mrope_section": [11, 11, 10],
                "mrope_interleaved": true
            },
            "eos_token_id": 248044
        }
    })
}

/// Every tensor of the model in the MLX layout (mlx-lm's parameter names and shapes).
fn tensor_shapes(config: &Config) -> BTreeMap<String, Vec<i32>> {
    let c = &config.text;
    let (h, v) = (c.hidden_size, c.vocab_size);
    let p = "language_model.model";
    let mut m = BTreeMap::new();
    m.insert(format!("{p}.embed_tokens.weight"), vec![v, h]);
    m.insert(format!("{p}.norm.weight"), vec![h]);
    if !c.tie_word_embeddings {
        m.insert("language_model.lm_head.weight".into(), vec![v, h]);
    }
    for (i, kind) in c.layer_types.iter().enumerate() {
        let l = format!("{p}.layers.{i}");
        m.insert(format!("{l}.input_layernorm.weight"), vec![h]);
        m.insert(format!("{l}.post_attention_layernorm.weight"), vec![h]);
        let inter = c.intermediate_size;
        m.insert(format!("{l}.mlp.gate_proj.weight"), vec![inter, h]);
        m.insert(format!("{l}.mlp.up_proj.weight"), vec![inter, h]);
        m.insert(format!("{l}.mlp.down_proj.weight"), vec![h, inter]);
        match kind {
            LayerType::LinearAttention => {
                let a = format!("{l}.linear_attn");
                let hv = c.linear_num_value_heads;
                let vd = c.linear_value_dim();
                let conv = c.linear_conv_dim();
                m.insert(format!("{a}.in_proj_qkv.weight"), vec![conv, h]);
                m.insert(format!("{a}.in_proj_z.weight"), vec![vd, h]);
                m.insert(format!("{a}.in_proj_b.weight"), vec![hv, h]);
                m.insert(format!("{a}.in_proj_a.weight"), vec![hv, h]);
                m.insert(
                    format!("{a}.conv1d.weight"),
                    vec![conv, c.linear_conv_kernel_dim, 1],
                );
                m.insert(format!("{a}.A_log"), vec![hv]);
                m.insert(format!("{a}.dt_bias"), vec![hv]);
                m.insert(format!("{a}.norm.weight"), vec![c.linear_value_head_dim]);
                m.insert(format!("{a}.out_proj.weight"), vec![h, vd]);
            }
            LayerType::FullAttention => {
                let a = format!("{l}.self_attn");
                let (nh, kv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
                m.insert(format!("{a}.q_proj.weight"), vec![2 * nh * d, h]);
                m.insert(format!("{a}.k_proj.weight"), vec![kv * d, h]);
                m.insert(format!("{a}.v_proj.weight"), vec![kv * d, h]);
                m.insert(format!("{a}.o_proj.weight"), vec![h, nh * d]);
                m.insert(format!("{a}.q_norm.weight"), vec![d]);
                m.insert(format!("{a}.k_norm.weight"), vec![d]);
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse() {
        for (name, config) in Qwen35::bench_presets() {
            let c = Config::from_json(&config).unwrap();
            assert_eq!(c.text.vocab_size, 248320, "{name}");
            assert_eq!(c.text.num_hidden_layers, 24, "{name}");
            let attention = c
                .text
                .layer_types
                .iter()
                .filter(|t| **t == LayerType::FullAttention)
                .count();
            assert_eq!(attention, 6, "{name}");
        }
    }
}
