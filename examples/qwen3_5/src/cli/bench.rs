//! `qwen3_5 bench`: prefill and decode speed and peak memory of a Qwen 3.5 model with
//! random weights of real (or any) shapes, optionally side by side with mlx-lm.
//!
//! The weights are drawn deterministically (tensor `i` of the sorted MLX-layout names with
//! `random::key(seed · 100000 + i)`: linear and embedding weights normal(0, 0.02), conv
//! weights normal(0, 0.5), norm weights and `dt_bias` ones, `A_log = log(uniform(1, 16))`
//! in float32), cast to the dtype and optionally quantized (affine, group 64, every
//! linear/embedding whose input width is a multiple of 64), then loaded through the same
//! checks as a checkpoint. `benches/qwen3_5_peer.py` builds mlx-lm's model with the same
//! values, so both sides compute the same function and their greedy tokens can be
//! compared as a sanity check.
//!
//! Each side warms up once (same prompt, a few tokens), then: peak memory reset, prefill of
//! the prompt (random ids) and greedy decode. Prefill tokens/s = prompt tokens / time until
//! the first generated token is available; decode tokens/s = (generated − 1) / time from
//! the first to the last token. With `--rounds R` the two sides run alternately R times and
//! the medians are reported (peak memory: the largest).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use mlx_rs::{ops, random, Array, Device, Dtype};
use qwen3_5::config::{Config, LayerType};
use qwen3_5::weights::Checkpoint;
use qwen3_5::{
    Decode, GenerateOptions, Model, ModelOptions, Prefill, SamplingParams, QWEN3_5_REAL_VOCAB_SIZE,
};
use serde_json::{json, Value};

use super::args::{DeviceArg, OptionsArgs};

/// `qwen3_5 bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model shapes: 2b, 0.8b (Qwen 3.5's, vocabulary 248320) or a config.json path.
    #[arg(long, value_name = "2b|0.8b|PATH")]
    pub config: String,
    /// Dtype of weights and activations.
    #[arg(long, value_enum, default_value_t = BenchDtype::Bfloat16)]
    pub dtype: BenchDtype,
    /// Prompt length in tokens (random ids).
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    pub prompt: u32,
    /// Tokens to generate (greedy).
    #[arg(long, value_name = "M", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    pub gen: u32,
    /// Quantize linear and embedding weights to 4 or 8 bits (affine, group 64).
    #[arg(long, value_name = "BITS", value_parser = parse_bits)]
    pub quantize: Option<i32>,
    /// Device to run on (default: the GPU when MLX has one, else the CPU).
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    #[command(flatten)]
    /// How our model runs.
    pub options: OptionsArgs,
    /// Also run the same benchmark with another implementation.
    #[arg(long, value_enum, value_name = "PEER")]
    pub compare: Option<Peer>,
    /// Python interpreter for --compare (with mlx and mlx-lm 0.32.2 installed).
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: String,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// MLX memory limit in GB (both sides).
    #[arg(long, value_name = "GB", value_parser = parse_gb, allow_negative_numbers = true)]
    pub memory_limit: Option<f64>,
    /// Timed runs per side, alternating ours and the peer; medians are reported.
    #[arg(long, value_name = "R", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    pub rounds: u32,
    /// Random seed of weights and prompt.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run prefill with the sequential gated delta rule instead of the chunked form.
    #[arg(long, hide = true)]
    pub sequential_prefill: bool,
    /// Chunk size of the chunked prefill.
    #[arg(long, hide = true, value_name = "C", default_value_t = mlx_lm::kernels::gated_delta::DEFAULT_CHUNK,
          value_parser = clap::value_parser!(i32).range(1..), allow_negative_numbers = true)]
    pub prefill_chunk: i32,
    /// The peer script (default: benches/qwen3_5_peer.py of this repository).
    #[arg(long, hide = true, value_name = "SCRIPT")]
    pub peer_script: Option<PathBuf>,
}

/// `--dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchDtype {
    /// bfloat16.
    Bfloat16,
    /// float16.
    Float16,
    /// float32.
    Float32,
}

impl BenchDtype {
    fn dtype(self) -> Dtype {
        match self {
            BenchDtype::Bfloat16 => Dtype::Bfloat16,
            BenchDtype::Float16 => Dtype::Float16,
            BenchDtype::Float32 => Dtype::Float32,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BenchDtype::Bfloat16 => "bfloat16",
            BenchDtype::Float16 => "float16",
            BenchDtype::Float32 => "float32",
        }
    }
}

/// `--compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// mlx-lm 0.32.2 (Python), through benches/qwen3_5_peer.py.
    #[value(name = "mlx-lm")]
    MlxLm,
}

fn parse_bits(s: &str) -> std::result::Result<i32, String> {
    match s.trim() {
        "4" => Ok(4),
        "8" => Ok(8),
        _ => Err(format!("'{s}' is not 4 or 8")),
    }
}

fn parse_gb(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of GB")),
    }
}

/// One side's measurements.
#[derive(Debug, Clone, PartialEq)]
struct Measured {
    prefill_tps: f64,
    decode_tps: f64,
    peak_mem_bytes: u64,
    /// Prompt tokens per second of process CPU time (all threads): on a shared machine
    /// a steadier measure than wall-clock time of how much work each side does.
    prefill_tps_cpu: f64,
    /// Generated tokens per second of process CPU time.
    decode_tps_cpu: f64,
    /// Ours only: host microseconds per decode step spent building the step's graph and
    /// handing it to MLX (see `GenerationStats::build_time`).
    host_us: Option<(f64, f64)>,
}

impl Measured {
    fn to_json(&self) -> Value {
        json!({
            "prefill_tps": self.prefill_tps,
            "decode_tps": self.decode_tps,
            "peak_mem_bytes": self.peak_mem_bytes,
            "prefill_tps_cpu": self.prefill_tps_cpu,
            "decode_tps_cpu": self.decode_tps_cpu,
            "decode_build_us": self.host_us.map(|h| h.0),
            "decode_submit_us": self.host_us.map(|h| h.1),
        })
    }

    /// Medians of the rates, the largest peak.
    fn summarize(runs: &[Measured]) -> Measured {
        Measured {
            prefill_tps: median(runs.iter().map(|r| r.prefill_tps).collect()),
            decode_tps: median(runs.iter().map(|r| r.decode_tps).collect()),
            peak_mem_bytes: runs.iter().map(|r| r.peak_mem_bytes).max().unwrap_or(0),
            prefill_tps_cpu: median(runs.iter().map(|r| r.prefill_tps_cpu).collect()),
            decode_tps_cpu: median(runs.iter().map(|r| r.decode_tps_cpu).collect()),
            host_us: runs.iter().all(|r| r.host_us.is_some()).then(|| {
                let build = median(runs.iter().filter_map(|r| r.host_us).map(|h| h.0).collect());
                let submit = median(runs.iter().filter_map(|r| r.host_us).map(|h| h.1).collect());
                (build, submit)
            }),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The peer's answer.
struct PeerRun {
    measured: Measured,
    tokens: Vec<u32>,
    device: String,
    mlx_version: String,
}

/// Runs `qwen3_5 bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let config_json = config_json(&args.config)?;
    let mut ours_json = config_json.clone();
    if let Some(bits) = args.quantize {
        ours_json["quantization"] = json!({"group_size": 64, "bits": bits});
    }
    let config =
        Config::from_json(&ours_json).with_context(|| format!("--config {}", args.config))?;
    let peer_script = match args.compare {
        Some(Peer::MlxLm) => {
            let script = find_peer_script(args.peer_script.as_deref())?;
            check_peer_python(&args.python)?;
            Some(script)
        }
        None => None,
    };
    if let Some(json) = &args.json {
        check_writable(json)?;
    }
    let device = select_device(args.device)?;
    let mut options = args.options.resolve(&device);
    options.prefill = if args.sequential_prefill {
        Prefill::Sequential
    } else {
        Prefill::Chunked(args.prefill_chunk)
    };
    if let Some(gb) = args.memory_limit {
        mlx_rs::memory::set_memory_limit((gb * 1e9) as usize)?;
    }
    let dtype = args.dtype.dtype();
    let t = &config.text;
    let what = format!(
        "config {} (hidden {}, {} layers, vocab {}), {}{}, prompt {}, gen {}",
        args.config,
        t.hidden_size,
        t.num_hidden_layers,
        t.vocab_size,
        args.dtype.name(),
        args.quantize
            .map(|b| format!(", {b}-bit"))
            .unwrap_or_default(),
        args.prompt,
        args.gen
    );
    eprintln!("building the model with random weights: {what}");
    let built = Instant::now();
    let model = random_model(&config, dtype, args.quantize, args.seed, options)?;
    eprintln!("built in {:.1} s", built.elapsed().as_secs_f64());
    let prompt = prompt_ids(
        args.prompt as usize,
        t.vocab_size.min(QWEN3_5_REAL_VOCAB_SIZE),
        args.seed,
    );

    // The peer gets the config without our quantization block (it quantizes itself).
    let peer_config = match &peer_script {
        Some(_) => Some(write_temp_config(&config_json)?),
        None => None,
    };

    generate(&model, &prompt, args.gen.min(4) as usize)?; // warm-up
    let mut ours_runs = Vec::new();
    let mut ours_tokens = Vec::new();
    let mut peer_runs = Vec::new();
    let mut peer_info: Option<PeerRun> = None;
    for round in 0..args.rounds {
        let (m, tokens) = timed(&model, &prompt, args.gen as usize)?;
        eprintln!(
            "round {}: ours prefill {:.1} tok/s ({:.1}/cpu-s), decode {:.1} tok/s ({:.1}/cpu-s); \
             host per step: {:.0} us building the graph, {:.0} us handing it to MLX",
            round + 1,
            m.prefill_tps,
            m.prefill_tps_cpu,
            m.decode_tps,
            m.decode_tps_cpu,
            m.host_us.map_or(f64::NAN, |h| h.0),
            m.host_us.map_or(f64::NAN, |h| h.1),
        );
        ours_runs.push(m);
        ours_tokens = tokens;
        if let (Some(script), Some(cfg)) = (&peer_script, &peer_config) {
            let p = run_peer(&args, script, cfg.path())?;
            eprintln!(
                "round {}: mlx-lm prefill {:.1} tok/s ({:.1}/cpu-s), decode {:.1} tok/s ({:.1}/cpu-s)",
                round + 1,
                p.measured.prefill_tps,
                p.measured.prefill_tps_cpu,
                p.measured.decode_tps,
                p.measured.decode_tps_cpu
            );
            peer_runs.push(p.measured.clone());
            peer_info = Some(p);
        }
    }
    let ours = Measured::summarize(&ours_runs);
    let peer = (!peer_runs.is_empty()).then(|| Measured::summarize(&peer_runs));

    let device_name = describe_device(&device);
    println!("qwen3_5 bench: {what}");
    println!(
        "device: {device_name}; MLX {}{}; prefill: {}",
        mlx_rs::version(),
        peer_info
            .as_ref()
            .map(|p| format!(" (mlx-lm side: MLX {}, {})", p.mlx_version, p.device))
            .unwrap_or_default(),
        match options.prefill {
            Prefill::Chunked(c) => format!("chunked ({c})"),
            Prefill::Sequential => "sequential".into(),
        }
    );
    println!("options: {}", options_json(&options));
    let on_gpu = !device_name.starts_with("cpu");
    if let (true, Ok(n)) = (on_gpu, std::env::var("MLX_MAX_OPS_PER_BUFFER")) {
        let both = if peer_info.is_some() {
            " (both sides)"
        } else {
            ""
        };
        println!("MLX_MAX_OPS_PER_BUFFER={n}{both}");
    }
    print_table(&ours, peer.as_ref(), device_name.starts_with("cpu"));
    if let Some(p) = &peer_info {
        let same = ours_tokens
            .iter()
            .zip(&p.tokens)
            .take_while(|(a, b)| a == b)
            .count();
        println!(
            "greedy tokens: the first {same} of {} agree (same random weights on both sides)",
            ours_tokens.len().min(p.tokens.len())
        );
    }

    if let Some(path) = &args.json {
        let doc = json!({
            "device": device_name,
            "mlx_version": mlx_rs::version(),
            "mlx_max_ops_per_buffer": std::env::var("MLX_MAX_OPS_PER_BUFFER").ok(),
            "config": args.config,
            "dtype": args.dtype.name(),
            "quantize": args.quantize,
            "prompt": args.prompt,
            "gen": args.gen,
            "rounds": args.rounds,
            "prefill": match options.prefill {
                Prefill::Chunked(c) => json!({"chunked": c}),
                Prefill::Sequential => json!("sequential"),
            },
            "options": options_json(&options),
            "ours": ours.to_json(),
            "peer": peer.as_ref().map(Measured::to_json),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The model options as the bench's JSON records them.
fn options_json(o: &ModelOptions) -> Value {
    json!({
        "decode": match o.decode {
            Decode::Fused => "fused",
            Decode::Reference => "reference",
        },
        "compile_layers": o.compile_layers,
        "cpu_gemm": o.cpu_gemm,
        "cpu_threads": o.cpu_threads,
    })
}

fn print_table(ours: &Measured, peer: Option<&Measured>, cpu: bool) {
    let gb = |b: u64| format!("{:.3} GB", b as f64 / 1e9);
    let tps = |x: f64| format!("{x:.1}");
    let ratio = |a: f64, b: f64| {
        if a.is_finite() && b.is_finite() && b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".into()
        }
    };
    type Row<'a> = (&'a str, fn(&Measured) -> f64, bool);
    let mut rows: Vec<Row> = vec![
        ("prefill tok/s", |m| m.prefill_tps, false),
        ("decode tok/s", |m| m.decode_tps, false),
    ];
    if cpu {
        rows.push(("prefill tok/cpu-s", |m| m.prefill_tps_cpu, false));
        rows.push(("decode tok/cpu-s", |m| m.decode_tps_cpu, false));
    }
    rows.push(("peak memory", |m| m.peak_mem_bytes as f64, true));
    let show = |m: &Measured, f: fn(&Measured) -> f64, mem: bool| {
        if mem {
            gb(m.peak_mem_bytes)
        } else {
            tps(f(m))
        }
    };
    match peer {
        Some(p) => {
            println!(
                "{:<18} {:>12} {:>12} {:>12}",
                "", "ours", "mlx-lm", "ours/mlx-lm"
            );
            for (name, f, mem) in rows {
                println!(
                    "{name:<18} {:>12} {:>12} {:>12}",
                    show(ours, f, mem),
                    show(p, f, mem),
                    ratio(f(ours), f(p))
                );
            }
        }
        None => {
            println!("{:<18} {:>12}", "", "ours");
            for (name, f, mem) in rows {
                println!("{name:<18} {:>12}", show(ours, f, mem));
            }
        }
    }
}

/// The built-in configurations (Qwen 3.5 2B and 0.8B text shapes) or a file.
fn config_json(spec: &str) -> Result<Value> {
    let (hidden, intermediate) = match spec.to_ascii_lowercase().as_str() {
        "2b" => (2048, 6144),
        "0.8b" => (1024, 3584),
        _ => {
            let path = Path::new(spec);
            if !path.is_file() {
                bail!("--config {spec}: neither 2b, 0.8b nor a config.json file");
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            return serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()));
        }
    };
    Ok(json!({
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
    }))
}

/// Every tensor of the model in the MLX layout (stored names and shapes).
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

/// The random value of one tensor (see the module docs), evaluated.
fn random_value(name: &str, shape: &[i32], key: &Array, dtype: Dtype) -> Result<Array> {
    let a = if name.ends_with("A_log") {
        ops::log(&random::uniform(
            &Array::scalar(1f32),
            &Array::scalar(16f32),
            shape,
            Dtype::Float32,
            Some(key),
        )?)?
    } else if name.ends_with("norm.weight") || name.ends_with("dt_bias") {
        ops::ones(shape, Dtype::Float32)?.astype(dtype)?
    } else {
        let scale = if name.ends_with("conv1d.weight") {
            0.5f32
        } else {
            0.02
        };
        random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(key))?
            .multiply(&Array::scalar(scale))?
            .astype(dtype)?
    };
    a.eval()?;
    Ok(a)
}

/// Builds the model from random weights (quantized when `bits` is set).
fn random_model(
    config: &Config,
    dtype: Dtype,
    bits: Option<i32>,
    seed: u64,
    options: ModelOptions,
) -> Result<Model> {
    let mut arrays = BTreeMap::new();
    for (i, (name, shape)) in tensor_shapes(config).into_iter().enumerate() {
        let key = random::key(seed.wrapping_mul(100_000).wrapping_add(i as u64))?;
        let value = random_value(&name, &shape, &key, dtype)?;
        let quantizable = shape.len() == 2 && shape[1] % 64 == 0 && name.ends_with(".weight");
        match bits {
            Some(b) if quantizable && !name.ends_with("norm.weight") => {
                let q = ops::quantize(
                    &value,
                    None,
                    ops::QuantizeOptions {
                        group_size: Some(64),
                        bits: Some(b),
                        mode: ops::QuantizationMode::Affine,
                    },
                )?;
                let stem = name.trim_end_matches(".weight");
                let biases = q
                    .biases
                    .ok_or_else(|| anyhow!("affine quantization returned no biases"))?;
                mlx_rs::eval(&[&q.w, &q.scales, &biases])?;
                arrays.insert(name.clone(), q.w);
                arrays.insert(format!("{stem}.scales"), q.scales);
                arrays.insert(format!("{stem}.biases"), biases);
            }
            _ => {
                arrays.insert(name, value);
            }
        }
    }
    let checkpoint = Checkpoint::from_arrays(arrays);
    Ok(Model::from_checkpoint(config.clone(), checkpoint, options)?)
}

/// Pseudo-random prompt ids in `0..limit` (a 64-bit LCG; the peer draws the same).
fn prompt_ids(n: usize, limit: i32, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % limit as u64) as u32
        })
        .collect()
}

/// Greedy generation of `max_tokens` after `prompt`, timed: returns the tokens, the
/// wall-clock and process-CPU seconds until the first token was available and from
/// then to the last one.
fn generate(model: &Model, prompt: &[u32], max_tokens: usize) -> Result<(Vec<u32>, Timing)> {
    let options = GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        // As mlx-lm's generate_step (prefill_step_size 2048).
        prefill_step: 2048,
        ..Default::default()
    };
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    let mut stream = model.generate(prompt, options)?;
    let mut tokens = Vec::with_capacity(max_tokens);
    let mut first = None;
    for token in &mut stream {
        tokens.push(token?);
        if first.is_none() {
            first = Some((Instant::now(), cpu_seconds()));
        }
    }
    let (wall2, cpu2) = (Instant::now(), cpu_seconds());
    let (wall1, cpu1) = first.ok_or_else(|| anyhow!("no token was generated"))?;
    let steps = stream.stats().generated_tokens.max(1) as f64;
    let host_us = (
        stream.stats().build_time.as_secs_f64() * 1e6 / steps,
        stream.stats().submit_time.as_secs_f64() * 1e6 / steps,
    );
    Ok((
        tokens,
        Timing {
            prefill_wall: (wall1 - wall0).as_secs_f64(),
            prefill_cpu: cpu1 - cpu0,
            decode_wall: (wall2 - wall1).as_secs_f64(),
            decode_cpu: cpu2 - cpu1,
            host_us,
        },
    ))
}

/// Seconds of one generation.
struct Timing {
    prefill_wall: f64,
    prefill_cpu: f64,
    decode_wall: f64,
    decode_cpu: f64,
    /// Host microseconds per step: graph building, handing to MLX.
    host_us: (f64, f64),
}

/// CPU time of this process's live threads in seconds (Linux: the sum of
/// `/proc/self/task/*/schedstat`, nanoseconds on the CPU); NaN elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        match stat.split_whitespace().next().map(str::parse::<u64>) {
            Some(Ok(n)) => ns += n,
            _ => return f64::NAN,
        }
    }
    ns as f64 * 1e-9
}

/// `n / seconds`, 0 when no time passed.
fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// One timed run: peak memory reset first.
fn timed(model: &Model, prompt: &[u32], gen: usize) -> Result<(Measured, Vec<u32>)> {
    mlx_rs::memory::clear_cache()?;
    mlx_rs::memory::reset_peak_memory()?;
    let (tokens, t) = generate(model, prompt, gen)?;
    if tokens.len() != gen {
        bail!("generated {} tokens instead of {gen}", tokens.len());
    }
    Ok((
        Measured {
            prefill_tps: rate(prompt.len(), t.prefill_wall),
            decode_tps: rate(gen - 1, t.decode_wall),
            peak_mem_bytes: mlx_rs::memory::get_peak_memory()? as u64,
            prefill_tps_cpu: rate(prompt.len(), t.prefill_cpu),
            decode_tps_cpu: rate(gen - 1, t.decode_cpu),
            host_us: Some(t.host_us),
        },
        tokens,
    ))
}

fn select_device(arg: Option<DeviceArg>) -> Result<Device> {
    let gpu = Device::gpu();
    let device = match arg {
        Some(DeviceArg::Cpu) => Device::cpu(),
        Some(DeviceArg::Gpu) if gpu.is_available() => gpu,
        Some(DeviceArg::Gpu) => {
            bail!("--device gpu: this MLX build has no GPU backend; use --device cpu")
        }
        None if gpu.is_available() => gpu,
        None => Device::cpu(),
    };
    Device::set_default(&device).context("cannot select the device")?;
    Ok(device)
}

/// `cpu (AMD EPYC)` / `gpu (NVIDIA H100 80GB HBM3)`, from MLX's device info.
fn describe_device(device: &Device) -> String {
    let kind = match device.kind() {
        Ok(mlx_rs::DeviceType::Gpu) => "gpu",
        _ => "cpu",
    };
    let info = device.info().unwrap_or_default();
    let get = |k: &str| {
        info.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let name = get("device_name")
        .or_else(|| get("architecture"))
        .unwrap_or_else(|| "unknown".into());
    let name = if kind == "cpu" {
        cpu_model().unwrap_or(name)
    } else {
        name
    };
    format!("{kind} ({name})")
}

/// The CPU model from /proc/cpuinfo (Linux), which names it more fully than MLX.
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn find_peer_script(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--peer-script {}: no such file", p.display());
    }
    let candidates = [
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../benches/qwen3_5_peer.py"
        )),
        PathBuf::from("benches/qwen3_5_peer.py"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| anyhow!("cannot find benches/qwen3_5_peer.py (run from the repository root or pass --peer-script)"))
}

/// A config file for the peer, removed when dropped.
struct TempConfig(PathBuf);

impl TempConfig {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_temp_config(config: &Value) -> Result<TempConfig> {
    let path = std::env::temp_dir().join(format!("qwen3_5-bench-{}.json", std::process::id()));
    let mut f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(serde_json::to_string(config)?.as_bytes())?;
    Ok(TempConfig(path))
}

/// Fails early (before building our model) when the peer's Python cannot import mlx-lm.
fn check_peer_python(python: &str) -> Result<()> {
    let out = Command::new(python)
        .args([
            "-c",
            "import mlx.core, mlx_lm, mlx_lm.generate, mlx_lm.models.qwen3_5",
        ])
        .output()
        .with_context(|| format!("--compare mlx-lm: cannot run {python}"))?;
    if !out.status.success() {
        let last = last_line(&out.stderr);
        bail!("--compare mlx-lm: {python} cannot import mlx-lm's qwen3_5 model: {last}");
    }
    Ok(())
}

/// The last non-empty line of a child's stderr (where Python puts the exception).
fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

fn run_peer(args: &BenchArgs, script: &Path, config: &Path) -> Result<PeerRun> {
    let mut cmd = Command::new(&args.python);
    cmd.arg(script)
        .arg("--config")
        .arg(config)
        .args(["--dtype", args.dtype.name()])
        .args(["--prompt", &args.prompt.to_string()])
        .args(["--gen", &args.gen.to_string()])
        .args(["--seed", &args.seed.to_string()]);
    if let Some(b) = args.quantize {
        cmd.args(["--quantize", &b.to_string()]);
    }
    if let Some(d) = args.device {
        cmd.args(["--device", if d == DeviceArg::Gpu { "gpu" } else { "cpu" }]);
    }
    if let Some(gb) = args.memory_limit {
        cmd.args(["--memory-limit", &gb.to_string()]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", args.python))?;
    if !out.status.success() {
        let last = last_line(&out.stderr);
        bail!(
            "the mlx-lm peer ({} {}) failed ({}): {last}",
            args.python,
            script.display(),
            out.status
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow!("the mlx-lm peer printed no JSON"))?;
    let v: Value = serde_json::from_str(line).context("the mlx-lm peer's JSON")?;
    let num = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| anyhow!("the mlx-lm peer's JSON lacks {k}"))
    };
    Ok(PeerRun {
        measured: Measured {
            prefill_tps: num("prefill_tps")?,
            decode_tps: num("decode_tps")?,
            peak_mem_bytes: num("peak_mem_bytes")? as u64,
            prefill_tps_cpu: v["prefill_tps_cpu"].as_f64().unwrap_or(f64::NAN),
            decode_tps_cpu: v["decode_tps_cpu"].as_f64().unwrap_or(f64::NAN),
            host_us: None,
        },
        tokens: v["tokens"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_u64().map(|t| t as u32))
                    .collect()
            })
            .unwrap_or_default(),
        device: v["device"].as_str().unwrap_or("?").to_string(),
        mlx_version: v["mlx_version"].as_str().unwrap_or("?").to_string(),
    })
}

/// Fails early when the --json file cannot be written.
fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("--json {} is a folder; give a file name", path.display());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "--json {}: folder {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_configs_parse() {
        for spec in ["2b", "0.8b", "2B"] {
            let c = Config::from_json(&config_json(spec).unwrap()).unwrap();
            assert_eq!(c.text.vocab_size, 248320);
            assert_eq!(c.text.num_hidden_layers, 24);
            assert_eq!(
                c.text
                    .layer_types
                    .iter()
                    .filter(|t| **t == LayerType::FullAttention)
                    .count(),
                6
            );
        }
        assert!(config_json("3b").is_err());
    }

    #[test]
    fn prompt_ids_match_the_peer() {
        // benches/qwen3_5_peer.py: prompt_ids(4, 32000, 0) and prompt_ids(3, 248320, 7), which
        // clamps the vocabulary to the 248077 real ids.
        assert_eq!(prompt_ids(4, 32000, 0), [2774, 24153, 21196, 16870]);
        assert_eq!(prompt_ids(3, 248077, 7), [1532, 125147, 83072]);
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
