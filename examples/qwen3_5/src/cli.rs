//! What the shared command line (`mlx_lm::cli`) needs to know about Qwen 3.5: how to load
//! it, its own flags, its sampling defaults, and for `bench` its tensors and the shapes of
//! the released models.

use std::collections::BTreeMap;
use std::path::Path;

use mlx_lm::cli::{BenchNote, CpuFlags, ModelCli, RandomWeights, Result, SamplingDefaults, Switch};
use mlx_lm::kernels::gated_delta::DEFAULT_CHUNK;
use mlx_lm::Checkpoint;
use mlx_rs::distributed::Group;
use mlx_rs::Device;
use qwen3_5::config::{Config, LayerType};
use qwen3_5::{Decode, Model, ModelOptions, Prefill, QWEN3_5_REAL_VOCAB_SIZE};
use serde_json::{json, Value};

/// Qwen 3.5 (text) for `mlx_lm::cli::main`.
pub struct Qwen35;

/// Qwen 3.5's own flags, taken by every command that runs the model (`generate`, `chat`,
/// `logits`, `bench`): the [`ModelOptions`] it is loaded with. A flag left out takes the
/// default of the device the model runs on ([`ModelOptions::for_device`]).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Decode steps: fused (kernels / compiled graphs, the default) or reference (the
    /// plain ops of the reference forward pass).
    #[arg(long, value_enum, value_name = "fused|reference")]
    pub decode: Option<DecodeArg>,
    /// Each layer's decode step as one compiled function (default: on for a CUDA GPU, off
    /// on the CPU and on macOS).
    #[arg(long, value_enum, value_name = "on|off")]
    pub compile_layers: Option<Switch>,
    /// The CPU paths and the load dtype.
    #[command(flatten)]
    pub cpu: CpuFlags,
    /// Run prefill with the sequential gated delta rule instead of the chunked form.
    #[arg(long, hide = true)]
    pub sequential_prefill: bool,
    /// Chunk size of the chunked prefill.
    #[arg(long, hide = true, value_name = "C", default_value_t = DEFAULT_CHUNK,
          value_parser = clap::value_parser!(i32).range(1..), allow_negative_numbers = true)]
    pub prefill_chunk: i32,
    /// Prompts of at most N tokens run the gated delta rule as the GPU step kernel
    /// (default: the device's; 0: never).
    #[arg(long, hide = true, value_name = "N",
          value_parser = clap::value_parser!(i32).range(0..), allow_negative_numbers = true)]
    pub kernel_prefill_max: Option<i32>,
    /// On CUDA, dense products of 2 to N rows (a served batch's decode step) in the
    /// small-batch tensor-core kernel instead of cuBLASLt (default: the device's, 16 on
    /// CUDA; 0: never).
    #[arg(long, hide = true, value_name = "N",
          value_parser = clap::value_parser!(i32).range(0..=mlx_lm::kernels::small_batch::MAX_ROWS as i64),
          allow_negative_numbers = true)]
    pub small_batch_rows: Option<i32>,
    /// On CUDA, one-row products with a quantized weight in the quantized GEMV kernel
    /// instead of MLX's quantized matmul (default: on for CUDA).
    #[arg(long, hide = true, value_enum, value_name = "on|off")]
    pub quantized_gemv: Option<Switch>,
}

impl Default for Options {
    /// No flag given: the device's defaults.
    fn default() -> Self {
        Options {
            decode: None,
            compile_layers: None,
            cpu: CpuFlags::default(),
            sequential_prefill: false,
            prefill_chunk: DEFAULT_CHUNK,
            kernel_prefill_max: None,
            small_batch_rows: None,
            quantized_gemv: None,
        }
    }
}

/// `--decode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecodeArg {
    /// The fused forms.
    Fused,
    /// The plain ops of the reference forward pass.
    Reference,
}

impl Options {
    /// The options for a model on `device`: its defaults, with the flags given.
    pub fn resolve(&self, device: &Device) -> ModelOptions {
        let mut o = ModelOptions::for_device(device);
        if let Some(d) = self.decode {
            o.decode = match d {
                DecodeArg::Fused => Decode::Fused,
                DecodeArg::Reference => Decode::Reference,
            };
        }
        if let Some(s) = self.compile_layers {
            o.compile_layers = s == Switch::On;
        }
        if let Some(s) = self.cpu.cpu_gemm {
            o.cpu_gemm = s == Switch::On;
        }
        if let Some(n) = self.cpu.cpu_threads {
            o.cpu_threads = n as usize;
        }
        if let Some(n) = self.kernel_prefill_max {
            o.kernel_prefill_max = n;
        }
        if let Some(n) = self.small_batch_rows {
            o.small_batch_rows = n;
        }
        if let Some(s) = self.quantized_gemv {
            o.quantized_gemv = s == Switch::On;
        }
        o.float_dtype = self.cpu.float_dtype(o.float_dtype);
        o.prefill = if self.sequential_prefill {
            Prefill::Sequential
        } else {
            Prefill::Chunked(self.prefill_chunk)
        };
        o
    }

    /// The options for the device the command line has selected (MLX's default device).
    fn for_current_device(&self) -> ModelOptions {
        self.resolve(&current_device())
    }
}

/// The device of the current default stream (the CPU when MLX cannot say).
fn current_device() -> Device {
    mlx_rs::current_stream()
        .and_then(|s| s.device())
        .unwrap_or_else(|_| Device::cpu())
}

/// The options as the bench's JSON records them (`"options"`) and its text report shows
/// them (`options: …`). The prefill form has its own entry (`"prefill"`).
fn options_json(o: &ModelOptions) -> Value {
    json!({
        "decode": match o.decode {
            Decode::Fused => "fused",
            Decode::Reference => "reference",
        },
        "compile_layers": o.compile_layers,
        "cpu_gemm": o.cpu_gemm,
        "cpu_threads": o.cpu_threads,
        "quantized_gemv": o.quantized_gemv,
    })
}

impl ModelCli for Qwen35 {
    type Model = Model;
    type Options = Options;
    const NAME: &'static str = "qwen3_5";
    const ABOUT: &'static str = "Qwen 3.5 (text) on MLX: generate, chat, dump logits.";

    fn load(dir: &Path, options: &Options) -> Result<Model> {
        Ok(qwen3_5::load_with(dir, options.for_current_device())?)
    }

    /// [`ModelOptions::for_training`](qwen3_5::ModelOptions::for_training).
    fn load_for_training(dir: &Path, options: &Options) -> Result<Model> {
        let options = options.for_current_device().for_training();
        Ok(qwen3_5::load_with(dir, options)?)
    }

    /// Tensor parallelism: [`Model::shard`].
    fn shard(model: &mut Model, group: Group) -> Result<()> {
        Ok(model.shard(group)?)
    }

    fn random(config: &Value, weights: &RandomWeights, options: &Options) -> Result<Model> {
        let config = Config::from_json(config)?;
        let arrays = weights.generate(&tensor_shapes(&config))?;
        let checkpoint = Checkpoint::from_arrays(arrays);
        // Converted as a checkpoint of `bench --dtype` would be at load.
        let o = options.for_current_device();
        Ok(Model::from_checkpoint(config, checkpoint, o)?)
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

    fn bench_notes(options: &Options, on_gpu: bool) -> Vec<BenchNote> {
        let options = options.for_current_device();
        let prefill = match options.prefill {
            Prefill::Chunked(c) => (json!({"chunked": c}), format!("prefill: chunked ({c})")),
            Prefill::Sequential => (json!("sequential"), "prefill: sequential".into()),
        };
        let ops = crate::mlx_max_ops_per_buffer();
        vec![
            BenchNote {
                key: "prefill",
                value: prefill.0,
                text: Some(prefill.1),
            },
            BenchNote {
                key: "options",
                value: options_json(&options),
                text: Some(format!("options: {}", options_json(&options))),
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
    use mlx_lm::cli::FloatDtypeArg;
    use mlx_lm::load::FloatDtype;

    #[test]
    fn options_flags_override_the_device_defaults() {
        let cpu = Device::cpu();
        let defaults = ModelOptions::for_device(&cpu);
        assert_eq!(Options::default().resolve(&cpu), defaults);
        let args = Options {
            decode: Some(DecodeArg::Reference),
            compile_layers: Some(Switch::On),
            cpu: CpuFlags {
                cpu_gemm: Some(Switch::Off),
                cpu_threads: Some(3),
                float_dtype: Some(FloatDtypeArg::Bfloat16),
            },
            sequential_prefill: true,
            prefill_chunk: DEFAULT_CHUNK,
            kernel_prefill_max: Some(32),
            small_batch_rows: Some(12),
            quantized_gemv: Some(Switch::On),
        };
        let o = args.resolve(&cpu);
        assert_eq!(o.decode, Decode::Reference);
        assert!(o.compile_layers && !o.cpu_gemm && o.quantized_gemv && !defaults.quantized_gemv);
        assert_eq!(o.cpu_threads, 3);
        assert_eq!(o.prefill, Prefill::Sequential);
        assert_eq!((defaults.kernel_prefill_max, o.kernel_prefill_max), (0, 32));
        assert_eq!((defaults.small_batch_rows, o.small_batch_rows), (0, 12));
        assert_eq!(defaults.float_dtype, FloatDtype::Float32Activations);
        assert_eq!(o.float_dtype, FloatDtype::Cast(mlx_rs::Dtype::Bfloat16));
    }

    #[test]
    fn options_flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            options: Options,
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["qwen3_5"], args].concat());
        let o = parse(&[]).unwrap().options;
        assert_eq!(
            o.resolve(&Device::cpu()),
            ModelOptions::for_device(&Device::cpu())
        );
        let o = parse(&[
            "--decode",
            "reference",
            "--compile-layers",
            "on",
            "--cpu-gemm",
            "off",
            "--cpu-threads",
            "2",
            "--prefill-chunk",
            "16",
        ])
        .unwrap()
        .options
        .resolve(&Device::cpu());
        assert_eq!(o.decode, Decode::Reference);
        assert!(o.compile_layers && !o.cpu_gemm);
        assert_eq!((o.cpu_threads, o.prefill), (2, Prefill::Chunked(16)));
        for bad in [
            &["--cpu-threads", "0"][..],
            &["--cpu-threads", "-1"],
            &["--decode", "fast"],
            &["--cpu-gemm", "yes"],
            &["--prefill-chunk", "0"],
            &["--small-batch-rows", "-2"],
            &["--small-batch-rows", "33"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

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
