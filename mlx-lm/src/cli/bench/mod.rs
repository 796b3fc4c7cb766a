//! `bench`: prefill and decode speed and peak memory of a model with random weights of
//! real (or any) shapes, optionally side by side with mlx-lm.
//!
//! The model crate lists its tensors and loads them ([`ModelCli::random`]); the values
//! come from [`RandomWeights`] (see [`random`] for the scheme), which
//! `benches/mlx_lm_peer.py` follows for mlx-lm's model of the config's `model_type`, so
//! both sides compute the same function and their greedy tokens can be compared as a
//! sanity check.
//!
//! Each side warms up once (same prompt, a few tokens), then: peak memory reset, prefill of
//! the prompt (random ids) and greedy decode. Prefill tokens/s = prompt tokens / time until
//! the first generated token is available; decode tokens/s = (generated − 1) / time from
//! the first to the last token. With `--rounds R` the two sides run alternately R times and
//! the medians are reported (peak memory: the largest).
//!
//! Under a launcher (a group of more than one process) the model is sharded across the
//! ranks, which all run the same steps; rank 0 prints each rank's figures and the group's
//! (its speed is the slowest rank's, its memory the sum), and writes the JSON.

mod limit;
mod peer;
mod profiler;
pub mod random;
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use mlx_rs::distributed::{self as dist, Group};
use mlx_rs::{Array, Dtype};
use serde_json::{json, Value};

use super::commands::{join_group, shard_across};
use super::device::{describe_device, is_gpu, select_device, DeviceArg};
use super::progress::Progress;
use super::ModelCli;
use crate::generate::GenerateOptions;
use crate::model::LanguageModel;
use crate::sampling::SamplingParams;
use limit::{known_bandwidth, DecodeLimit};
use peer::{PeerRequest, PeerRun, TempFile};
use random::{prompt_ids, RandomWeights};
use report::{print_table, rate, Measured};

/// `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs<O: Args> {
    /// Model shapes: a preset name or a config.json path.
    #[arg(long, value_name = "NAME|PATH")]
    pub config: String,
    /// Dtype of the weights, as a checkpoint would store them (default: float32 on the CPU,
    /// bfloat16 on a GPU); they are then converted as a loaded checkpoint would be
    /// (`--float-dtype`; on the CPU by default float32 activations, bfloat16 matrices kept).
    #[arg(long, value_enum)]
    pub dtype: Option<BenchDtype>,
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
    /// Memory bandwidth in GB/s for the decode limit line (default: the card's, for the
    /// cards the bench knows by name; none elsewhere).
    #[arg(long, value_name = "GB/S", value_parser = parse_gbps, allow_negative_numbers = true)]
    pub bandwidth: Option<f64>,
    /// The peer script (default: the built-in copy of benches/mlx_lm_peer.py).
    #[arg(long, hide = true, value_name = "SCRIPT")]
    pub peer_script: Option<PathBuf>,
    /// Brackets the first timed decode with the CUDA driver's cuProfilerStart / Stop, for
    /// `ncu --profile-from-start off` (benches/gpu/kernel_ab.sh --decode).
    #[arg(long, hide = true)]
    pub cuda_profile_decode: bool,
    #[command(flatten)]
    /// The model's own flags.
    pub options: O,
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
    /// mlx-lm 0.32.2 (Python), through benches/mlx_lm_peer.py.
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
    positive(s, "GB")
}

fn parse_gbps(s: &str) -> std::result::Result<f64, String> {
    positive(s, "GB/s")
}

/// A finite number above 0, or a message naming its `unit`.
fn positive(s: &str, unit: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of {unit}")),
    }
}

/// Runs `bench`.
pub fn run<M: ModelCli>(args: BenchArgs<M::Options>) -> Result<()> {
    let config_json = config_json::<M>(&args.config)?;
    let mut ours_json = config_json.clone();
    if let Some(bits) = args.quantize {
        ours_json["quantization"] = json!({"group_size": 64, "bits": bits});
    }
    let group = join_group()?;
    let (rank, size) = (group.rank(), group.size());
    if size > 1 && args.compare.is_some() {
        bail!("--compare does not run under a launcher (a group of {size} processes)");
    }
    let peer_script = match args.compare {
        Some(Peer::MlxLm) => {
            let script = peer::peer_script(args.peer_script.as_deref())?;
            let model_type = config_json["model_type"].as_str().unwrap_or_default();
            peer::check_peer_python(&args.python, model_type)?;
            Some(script)
        }
        None => None,
    };
    if let (Some(json), 0) = (&args.json, rank) {
        check_writable(json)?;
    }
    let device = select_device(args.device)?;
    let on_gpu = is_gpu(&device);
    let profiler = match args.cuda_profile_decode {
        true => Some(profiler::CudaProfiler::open()?),
        false => None,
    };
    if let Some(gb) = args.memory_limit {
        mlx_rs::memory::set_memory_limit((gb * 1e9) as usize)?;
    }
    // MLX's bfloat16 products on an x86 CPU run ~5x slower than float32 ones.
    let dtype = args.dtype.unwrap_or(if on_gpu {
        BenchDtype::Bfloat16
    } else {
        BenchDtype::Float32
    });
    check_sizes(&config_json, args.prompt, args.gen)?;
    let text = config_json.get("text_config").unwrap_or(&config_json);
    let field = |k: &str| text[k].as_i64().unwrap_or(0);
    let vocab = field("vocab_size");
    let what = format!(
        "config {} (hidden {}, {} layers, vocab {vocab}), {}{}, prompt {}, gen {}",
        args.config,
        field("hidden_size"),
        field("num_hidden_layers"),
        dtype.name(),
        args.quantize
            .map(|b| format!(", {b}-bit"))
            .unwrap_or_default(),
        args.prompt,
        args.gen
    );
    eprintln!("building the model with random weights: {what}");
    let progress = Progress::stderr();
    let built = Instant::now();
    let weights = RandomWeights::new(dtype.dtype(), args.quantize, args.seed, &progress);
    let mut model = M::random(&ours_json, &weights, &args.options)
        .with_context(|| format!("--config {}", args.config))?;
    // MLX keeps the group: a second init gives the same group, for the figures' gather.
    let gather = match size > 1 {
        true => Some(join_group()?),
        false => None,
    };
    shard_across::<M>(&mut model, group)?;
    progress.clear();
    eprintln!("built in {:.1} s", built.elapsed().as_secs_f64());
    let vocab = usize::try_from(vocab).unwrap_or(0).max(1);
    let vocab_limit = M::real_vocab_size(&config_json).map_or(vocab, |n| n.min(vocab));
    let prompt = prompt_ids(args.prompt as usize, vocab_limit, args.seed);

    // The peer gets the config without our quantization block (it quantizes itself).
    let peer_config = match &peer_script {
        Some(_) => Some(TempFile::new(
            "bench-config.json",
            &serde_json::to_string(&config_json)?,
        )?),
        None => None,
    };

    let warm_up = args.gen.min(4) as usize;
    generate(&model, &prompt, warm_up, &progress, "warm-up: ", None)?;
    let primitive_kinds = decode_primitives(&model, &prompt)?;
    let primitives: usize = primitive_kinds.iter().map(|(_, n)| n).sum();
    let mut ours_runs = Vec::new();
    let mut ours_tokens = Vec::new();
    let mut peer_runs = Vec::new();
    let mut peer_info: Option<PeerRun> = None;
    for round in 0..args.rounds {
        let profile = profiler.as_ref().filter(|_| round == 0);
        let (m, tokens) = timed(&model, &prompt, args.gen as usize, &progress, profile)?;
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
            progress.waiting(
                "mlx-lm: ",
                &format!(
                    "warm-up, prefill and decode ({} + {} tok)",
                    args.prompt, args.gen
                ),
            );
            let request = PeerRequest {
                python: &args.python,
                config: cfg.path(),
                dtype: dtype.name(),
                prompt: args.prompt,
                gen: args.gen,
                vocab_limit,
                seed: args.seed,
                quantize: args.quantize,
                device: args.device.map(DeviceArg::name),
                memory_limit: args.memory_limit,
            };
            let p = peer::run_peer(script.path(), &request);
            progress.clear();
            let p = p?;
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
    drop(progress);
    let ours = Measured::summarize(&ours_runs);
    let peer = (!peer_runs.is_empty()).then(|| Measured::summarize(&peer_runs));
    let ranks = match &gather {
        Some(g) => Some(gather_figures(&ours, g)?),
        None => None,
    };
    if rank != 0 {
        return Ok(());
    }

    let device_name = describe_device(&device);
    let limit = match args.bandwidth.or_else(|| known_bandwidth(&device_name)) {
        Some(bandwidth_gbps) => Some(DecodeLimit {
            weight_bytes: mlx_rs::nn::Module::parameters(&model)?
                .values()
                .map(|a| a.nbytes() as u64)
                .sum(),
            bandwidth_gbps,
        }),
        None => None,
    };
    let notes = M::bench_notes(&args.options, on_gpu);
    println!("{} bench: {what}", M::NAME);
    println!(
        "device: {device_name}; MLX {}{}",
        mlx_rs::version(),
        peer_info
            .as_ref()
            .map(|p| format!(" (mlx-lm side: MLX {}, {})", p.mlx_version, p.device))
            .unwrap_or_default(),
    );
    for text in notes.iter().filter_map(|n| n.text.as_ref()) {
        println!("{text}");
    }
    print_table(&ours, peer.as_ref(), !on_gpu);
    let kinds: Vec<String> = primitive_kinds
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "graph primitives per decode step (ours): {primitives} ({})",
        kinds.join(", ")
    );
    if let Some(l) = &limit {
        println!("{}", l.line(ours.decode_tps));
    }
    if let Some(ranks) = &ranks {
        print_ranks(ranks);
    }
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
        let mut doc = json!({
            "device": device_name,
            "mlx_version": mlx_rs::version(),
            "config": args.config,
            "dtype": dtype.name(),
            "quantize": args.quantize,
            "prompt": args.prompt,
            "gen": args.gen,
            "rounds": args.rounds,
            "ours": ours.to_json(),
            "peer": peer.as_ref().map(Measured::to_json),
            "decode_primitives": primitives,
            "decode_primitive_kinds": primitive_kinds
                .iter()
                .map(|(k, n)| (k.clone(), json!(n)))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "decode_limit": limit.map(DecodeLimit::to_json),
        });
        for note in notes {
            doc[note.key] = note.value;
        }
        if let Some(ranks) = &ranks {
            doc["ranks"] = ranks.iter().map(Measured::to_json).collect();
            doc["group"] = group_figures(ranks).to_json();
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A preset of the model (see [`ModelCli::bench_presets`]) or a config.json file.
/// Refuses, before anything is built, a prompt and generation that cannot fit: more
/// positions than the config's context (`max_position_embeddings`), or, without one, more
/// than an MLX dimension can hold.
fn check_sizes(config: &Value, prompt: u32, gen: u32) -> Result<()> {
    let total = u64::from(prompt) + u64::from(gen);
    match super::commands::context_length(config) {
        Some(context) if total > context => bail!(
            "--prompt {prompt} and --gen {gen} need {total} positions, more than the model's \
             context of {context} tokens (max_position_embeddings in the config)"
        ),
        None if total > i32::MAX as u64 => bail!(
            "--prompt {prompt} and --gen {gen} need {total} positions, more than an MLX \
             dimension can hold ({})",
            i32::MAX
        ),
        _ => Ok(()),
    }
}

fn config_json<M: ModelCli>(spec: &str) -> Result<Value> {
    let presets = M::bench_presets();
    if let Some((_, config)) = presets
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(spec))
    {
        return Ok(config.clone());
    }
    let path = Path::new(spec);
    if !path.is_file() {
        let names: Vec<&str> = presets.iter().map(|(name, _)| *name).collect();
        if names.is_empty() {
            bail!("--config {spec}: no such config.json file");
        }
        bail!(
            "--config {spec}: neither {} nor a config.json file",
            names.join(", ")
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// Greedy generation of `max_tokens` after `prompt`, timed: returns the tokens, the
/// wall-clock and process-CPU seconds until the first token was available and from
/// then to the last one. Shows its progress (`label` first). With `profiler`, the decode
/// (from the first token on) runs between its start and stop.
fn generate(
    model: &dyn LanguageModel,
    prompt: &[u32],
    max_tokens: usize,
    progress: &Progress,
    label: &str,
    profiler: Option<&profiler::CudaProfiler>,
) -> Result<(Vec<u32>, Timing)> {
    let options = GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        // As mlx-lm's generate_step (prefill_step_size 2048).
        prefill_step: 2048,
        ..Default::default()
    };
    progress.prefill(label, prompt.len());
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    let mut stream = crate::generate(model, prompt, options)?;
    let mut tokens = Vec::with_capacity(max_tokens);
    let mut first = None;
    let mut prefill_peak = 0;
    for token in &mut stream {
        tokens.push(token?);
        if first.is_none() {
            first = Some((Instant::now(), cpu_seconds()));
            prefill_peak = mlx_rs::memory::get_peak_memory()? as u64;
            if let Some(p) = profiler {
                p.start()?;
            }
        }
        progress.decode(label, tokens.len(), max_tokens);
    }
    let (wall2, cpu2) = (Instant::now(), cpu_seconds());
    if let Some(p) = profiler {
        p.stop()?;
    }
    progress.clear();
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
            prefill_peak,
        },
    ))
}

/// The primitives MLX runs for one greedy decode step of `model` (its forward pass over one
/// token, the cache updates and the arg-max), by kind, most frequent first (see
/// [`mlx_rs::graph::count_primitives_by_kind`]). Counted on the graph of a step after the
/// first tokens of `prompt`, never evaluated: what the host builds and hands to MLX per
/// token (an element-wise chain that a compiled function fused counts as one). A model that
/// runs part of a step outside MLX evaluates what comes before that part while building the
/// step, so only the rest is counted (Qwen 3.5 on the CPU with its CPU GEMM: the layers
/// after the last attention).
fn decode_primitives(model: &dyn LanguageModel, prompt: &[u32]) -> Result<Vec<(String, usize)>> {
    // Up to 8 tokens of the prompt into the cache, the next one stepped.
    let Some(n) = prompt.len().min(9).checked_sub(1) else {
        bail!("the prompt is empty");
    };
    let (head, last) = (&prompt[..n], prompt[n]);
    let mut cache = model.new_cache();
    if !head.is_empty() {
        model.prefill(&Array::from_slice(head, &[1, n as i32])?, &mut cache)?;
        mlx_rs::eval(&cache.arrays())?;
    }
    let logits = model.forward_last(&Array::from_slice(&[last], &[1, 1])?, &mut cache)?;
    let token = mlx_rs::ops::argmax_axis(&logits, -1, false)?;
    let mut outputs = vec![&token];
    outputs.extend(cache.arrays());
    Ok(mlx_rs::graph::count_primitives_by_kind(&outputs)?)
}

/// Seconds of one generation.
struct Timing {
    prefill_wall: f64,
    prefill_cpu: f64,
    decode_wall: f64,
    decode_cpu: f64,
    /// Host microseconds per step: graph building, handing to MLX.
    host_us: (f64, f64),
    /// Peak memory when the first token was out.
    prefill_peak: u64,
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

/// One timed run: peak memory reset first.
fn timed(
    model: &dyn LanguageModel,
    prompt: &[u32],
    gen: usize,
    progress: &Progress,
    profiler: Option<&profiler::CudaProfiler>,
) -> Result<(Measured, Vec<u32>)> {
    mlx_rs::memory::clear_cache()?;
    mlx_rs::memory::reset_peak_memory()?;
    let (tokens, t) = generate(model, prompt, gen, progress, "ours: ", profiler)?;
    if tokens.len() != gen {
        bail!("generated {} tokens instead of {gen}", tokens.len());
    }
    Ok((
        Measured {
            prefill_tps: rate(prompt.len(), t.prefill_wall),
            decode_tps: rate(gen - 1, t.decode_wall),
            peak_mem_bytes: mlx_rs::memory::get_peak_memory()? as u64,
            prefill_peak_bytes: t.prefill_peak,
            prefill_tps_cpu: rate(prompt.len(), t.prefill_cpu),
            decode_tps_cpu: rate(gen - 1, t.decode_cpu),
            host_us: Some(t.host_us),
        },
        tokens,
    ))
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

/// Every rank's figures (in rank order), gathered from the group.
fn gather_figures(ours: &Measured, group: &Group) -> Result<Vec<Measured>> {
    let mine = [
        ours.prefill_tps,
        ours.decode_tps,
        ours.peak_mem_bytes as f64 / 1e6,
        ours.prefill_tps_cpu,
        ours.decode_tps_cpu,
    ];
    let mine: Vec<f32> = mine.iter().map(|&x| x as f32).collect();
    let all = dist::all_gather(&Array::from_slice(&mine, &[1, 5])?, Some(group))?;
    let all = all.to_vec::<f32>()?;
    Ok(all
        .chunks(5)
        .map(|r| Measured {
            prefill_tps: r[0] as f64,
            decode_tps: r[1] as f64,
            peak_mem_bytes: (r[2] as f64 * 1e6) as u64,
            prefill_peak_bytes: 0,
            prefill_tps_cpu: r[3] as f64,
            decode_tps_cpu: r[4] as f64,
            host_us: None,
        })
        .collect())
}

/// The group's figures: its speed is the slowest rank's (all run the same steps in
/// lockstep), its memory the sum, and its tokens per CPU-second count every rank's CPU.
fn group_figures(ranks: &[Measured]) -> Measured {
    let slowest = |f: fn(&Measured) -> f64| ranks.iter().map(f).fold(f64::INFINITY, f64::min);
    let per_cpu = |f: fn(&Measured) -> f64| 1.0 / ranks.iter().map(|r| 1.0 / f(r)).sum::<f64>();
    Measured {
        prefill_tps: slowest(|r| r.prefill_tps),
        decode_tps: slowest(|r| r.decode_tps),
        peak_mem_bytes: ranks.iter().map(|r| r.peak_mem_bytes).sum(),
        prefill_peak_bytes: ranks.iter().map(|r| r.prefill_peak_bytes).sum(),
        prefill_tps_cpu: per_cpu(|r| r.prefill_tps_cpu),
        decode_tps_cpu: per_cpu(|r| r.decode_tps_cpu),
        host_us: None,
    }
}

/// One line per rank, then the group's.
fn print_ranks(ranks: &[Measured]) {
    let line = |who: String, m: &Measured| {
        println!(
            "{who}: prefill {:.1} tok/s ({:.1}/cpu-s), decode {:.1} tok/s ({:.1}/cpu-s), \
             peak memory {:.3} GB",
            m.prefill_tps,
            m.prefill_tps_cpu,
            m.decode_tps,
            m.decode_tps_cpu,
            m.peak_mem_bytes as f64 / 1e9
        )
    };
    println!("tensor parallel over {} processes:", ranks.len());
    for (r, m) in ranks.iter().enumerate() {
        line(format!("  rank {r}"), m);
    }
    line(
        "  group (slowest rank, summed memory and CPU)".into(),
        &group_figures(ranks),
    );
}
