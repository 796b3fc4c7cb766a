//! What the shared command line (`mlx_lm::cli`) needs to know about Qwen3: how to load
//! it, its sampling defaults, and for `bench` its tensors and the shapes of a released
//! model.

use std::collections::BTreeMap;
use std::path::Path;

use mlx_lm::cli::{BenchNote, CpuFlags, ModelCli, RandomWeights, Result, SamplingDefaults};
use mlx_rs::distributed::Group;
use qwen3::{Config, Model, ModelOptions};
use serde_json::{json, Value};

/// Qwen3 (dense) for `mlx_lm::cli::main`.
pub struct Qwen3Cli;

/// Qwen3's own flags, taken by every command that runs the model: the [`ModelOptions`]
/// it is loaded with. A flag left out takes the default of the device the model runs on.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Options {
    /// The CPU paths and the load dtype.
    #[command(flatten)]
    pub cpu: CpuFlags,
}

impl Options {
    /// The options for the device the command line has selected (MLX's default device):
    /// its defaults, with the flags given.
    pub fn resolve(&self) -> ModelOptions {
        let o = ModelOptions::for_current_device();
        ModelOptions {
            cpu: self.cpu.products(o.cpu),
            float_dtype: self.cpu.float_dtype(o.float_dtype),
        }
    }
}

impl ModelCli for Qwen3Cli {
    type Model = Model;
    type Options = Options;
    const NAME: &'static str = "qwen3";
    const ABOUT: &'static str = "Qwen3 (dense) on MLX: generate, chat, dump logits, benchmark.";

    fn load(dir: &Path, options: &Options) -> Result<Model> {
        Ok(qwen3::load_with(dir, options.resolve())?)
    }

    /// [`ModelOptions::for_training`](qwen3::ModelOptions::for_training): MLX does the
    /// products inside the gradient.
    fn load_for_training(dir: &Path, options: &Options) -> Result<Model> {
        Ok(qwen3::load_with(dir, options.resolve().for_training())?)
    }

    fn random(config: &Value, weights: &RandomWeights, options: &Options) -> Result<Model> {
        let config: Config = serde_json::from_value(config.clone())?;
        config.check()?;
        let arrays = weights.generate(&tensor_shapes(&config))?;
        let mut model = Model::new(config.clone())?;
        let arrays = qwen3::model::sanitize(&config, arrays)?;
        let quantized = config.quantization.is_some();
        // Converted as a checkpoint of `bench --dtype` would be at load.
        let o = options.resolve();
        let arrays = o.load_float_dtype().apply(arrays, quantized)?;
        mlx_lm::load::apply_weights(&mut model, arrays, config.quantization.as_ref())?;
        model.set_options(o)?;
        Ok(model)
    }

    /// The CPU products the model runs with.
    fn bench_notes(options: &Options, _on_gpu: bool) -> Vec<BenchNote> {
        let cpu = options.resolve().cpu;
        let value = match cpu {
            Some(c) => json!({"cpu_gemm": c.gemm, "cpu_threads": c.threads}),
            None => Value::Null,
        };
        vec![BenchNote {
            key: "options",
            text: cpu.map(|_| format!("options: {value}")),
            value,
        }]
    }

    /// Qwen3-0.6B's shapes (its `config.json`).
    fn bench_presets() -> Vec<(&'static str, Value)> {
        vec![(
            "0.6b",
            json!({
                "model_type": "qwen3",
                "hidden_size": 1024,
                "num_hidden_layers": 28,
                "intermediate_size": 3072,
                "num_attention_heads": 16,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "vocab_size": 151936,
                "tie_word_embeddings": true,
                "rope_theta": 1000000,
                "rms_norm_eps": 1e-6,
                "max_position_embeddings": 40960,
                "attention_bias": false,
                "rope_scaling": null
            }),
        )]
    }

    /// The model card's for non-thinking chat (`--no-think`).
    fn sampling_defaults() -> SamplingDefaults {
        SamplingDefaults {
            temperature: 0.7,
            top_p: 0.8,
            top_k: 20,
            min_p: 0.0,
            ..SamplingDefaults::default()
        }
    }

    /// Tensor parallelism: [`Model::shard`].
    fn shard(model: &mut Model, group: Group) -> Result<()> {
        Ok(model.shard(group)?)
    }

    /// Qwen3's tokenizer has 151669 ids; `vocab_size` (151936) pads the embedding.
    fn real_vocab_size(_config: &Value) -> Option<usize> {
        Some(151_669)
    }
}

/// Every tensor of the model in the MLX layout (mlx-lm's parameter names and shapes).
fn tensor_shapes(c: &Config) -> BTreeMap<String, Vec<i32>> {
    let (h, v, inter) = (c.hidden_size, c.vocab_size, c.intermediate_size);
    let (nh, kv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    let mut m = BTreeMap::new();
    m.insert("model.embed_tokens.weight".into(), vec![v, h]);
    m.insert("model.norm.weight".into(), vec![h]);
    if !c.tie_word_embeddings {
        m.insert("lm_head.weight".into(), vec![v, h]);
    }
    for i in 0..c.num_hidden_layers {
        let l = format!("model.layers.{i}");
        m.insert(format!("{l}.input_layernorm.weight"), vec![h]);
        m.insert(format!("{l}.post_attention_layernorm.weight"), vec![h]);
        m.insert(format!("{l}.self_attn.q_proj.weight"), vec![nh * d, h]);
        m.insert(format!("{l}.self_attn.k_proj.weight"), vec![kv * d, h]);
        m.insert(format!("{l}.self_attn.v_proj.weight"), vec![kv * d, h]);
        m.insert(format!("{l}.self_attn.o_proj.weight"), vec![h, nh * d]);
        m.insert(format!("{l}.self_attn.q_norm.weight"), vec![d]);
        m.insert(format!("{l}.self_attn.k_norm.weight"), vec![d]);
        m.insert(format!("{l}.mlp.gate_proj.weight"), vec![inter, h]);
        m.insert(format!("{l}.mlp.up_proj.weight"), vec![inter, h]);
        m.insert(format!("{l}.mlp.down_proj.weight"), vec![h, inter]);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_is_qwen3_0_6b() {
        let (name, config) = &Qwen3Cli::bench_presets()[0];
        let c: Config = serde_json::from_value(config.clone()).unwrap();
        c.check().unwrap();
        assert_eq!(*name, "0.6b");
        assert_eq!(
            (c.hidden_size, c.num_hidden_layers, c.vocab_size),
            (1024, 28, 151936)
        );
        assert_eq!(c.rope_base().unwrap(), 1e6);
        // 0.6B parameters (0.44B without the embedding), as the model card says.
        let n: i64 = tensor_shapes(&c)
            .values()
            .map(|s| s.iter().map(|&d| d as i64).product::<i64>())
            .sum();
        assert_eq!(n / 10_000_000, 59);
    }
}
