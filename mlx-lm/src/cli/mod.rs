//! The command line every model crate shares: `generate`, `chat`, `logits`, `bench` and
//! `serve`.
//!
//! A model crate's binary implements [`ModelCli`] for a marker type and calls [`main`]:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     mlx_lm::cli::main::<Qwen35>()
//! }
//! ```
//!
//! [`main`] parses the arguments with clap, runs the command, and turns every failure into
//! one `error: …` line on stderr: exit status 2 for bad arguments, 1 for anything else. A
//! panic also ends with one such line (`error: internal error: …`).
//!
//! - `generate`: applies the chat template, streams the reply to stdout, statistics to
//!   stderr in mlx-lm's format;
//! - `chat`: one user turn per line of stdin, the model's cache kept between turns;
//! - `logits`: float32 logits `[n_tokens, vocab]` of a list of ids, as a NumPy `.npy`;
//! - `bench`: prefill and decode speed and peak memory with random weights, optionally
//!   side by side with mlx-lm (`benches/mlx_lm_peer.py`, which builds mlx-lm's model of
//!   the config's `model_type` with the same weights);
//! - `serve` (feature `serve`): the OpenAI-compatible server of `crate::serve` on the
//!   model folder, until Ctrl-C;
//! - `fuse`: a fine-tuned adapter merged into the weights, saved as a model folder that
//!   mlx-lm and these commands load (mlx-lm's `mlx_lm.fuse`);
//! - `lora`: LoRA or DoRA fine-tuning on jsonl data (mlx-lm's `mlx_lm.lora`, its flag
//!   names), the adapter written in mlx-lm's format.
//!
//! `generate`, `chat`, `logits` and `serve` take `--adapter-path DIR`: an adapter in
//! mlx-lm's format ([`crate::tuner::Adapter`]) applied to the model after loading.
//!
//! Under a launcher (`mlx-launch -n 2 -- qwen3 generate …`), `generate`, `logits` and
//! `bench` shard the model across the group's processes ([`ModelCli::shard`]): every
//! rank runs the model on its share of the weights, rank 0 prints the reply and writes the
//! files, and `bench` prints each rank's figures and the group's.
//!
//! Long work shows its progress on stderr when stderr is a terminal ([`progress`]).
//!
//! This module reads no environment variables beyond the Hugging Face ones of
//! [`crate::hub`]; a binary that sets up the process (e.g. an MLX variable) does so before
//! calling [`main`].

mod args;
mod bench;
mod commands;
mod device;
mod fuse;
mod lora;
mod lora_config;
pub mod npy;
pub mod progress;
#[cfg(feature = "serve")]
mod serve;
mod session;

use std::path::Path;
use std::process::ExitCode;

use clap::error::ErrorKind;
use mlx_rs::distributed::Group;
use serde_json::Value;

use crate::model::LanguageModel;
use crate::tuner::Adaptable;

pub use bench::random::{prompt_ids, RandomWeights};

/// The error type of the command line's hooks: any error, with context.
pub type Result<T> = anyhow::Result<T>;

/// What a model crate tells the shared command line.
///
/// Only [`load`](ModelCli::load) and [`random`](ModelCli::random) are required; the rest
/// have defaults. Tokenizer-dependent choices need no hook: the stop tokens are the
/// tokenizer's end-of-turn and end-of-text tokens, and ids at or above the tokenizer's
/// size (padding rows of the output layer) are never sampled.
///
/// ```ignore
/// use mlx_lm::cli::{ModelCli, RandomWeights, Result};
///
/// struct Tiny;
///
/// /// Flags of this model only (every command that runs the model takes them).
/// #[derive(Debug, clap::Args)]
/// struct TinyOptions {
///     /// Keep the KV cache in float32.
///     #[arg(long)]
///     f32_cache: bool,
/// }
///
/// impl ModelCli for Tiny {
///     type Model = tiny::Model;
///     type Options = TinyOptions;
///     const NAME: &'static str = "tiny";
///     const ABOUT: &'static str = "Tiny on MLX: generate, chat, dump logits, benchmark.";
///
///     fn load(dir: &std::path::Path, options: &TinyOptions) -> Result<tiny::Model> {
///         Ok(tiny::Model::load_with(dir, options.f32_cache)?)
///     }
///
///     fn random(config: &serde_json::Value, weights: &RandomWeights, options: &TinyOptions)
///         -> Result<tiny::Model> {
///         let config = tiny::Config::from_json(config)?;
///         let arrays = weights.generate(&config.tensor_shapes())?;
///         Ok(tiny::Model::from_arrays(config, arrays, options.f32_cache)?)
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     mlx_lm::cli::main::<Tiny>()
/// }
/// ```
pub trait ModelCli {
    /// The model the commands run; its linear layers take adapters (`--adapter-path`,
    /// `fuse`; see [`crate::tuner`]).
    type Model: LanguageModel + Adaptable + 'static;

    /// The model's own flags (`#[derive(clap::Args)]`), accepted by every command that
    /// runs the model (`generate`, `chat`, `logits`, `bench`) and passed to
    /// [`load`](ModelCli::load) and [`random`](ModelCli::random). [`NoOptions`] when the
    /// model has none.
    type Options: clap::Args + std::fmt::Debug + Send + 'static;

    /// The command's name, as in usage lines and `--help` (e.g. `qwen3_5`).
    const NAME: &'static str;

    /// One line for `--help`, e.g. `Qwen 3.5 (text) on MLX: generate, chat, dump logits.`
    const ABOUT: &'static str;

    /// Loads the model of a folder (`config.json` and weights) on MLX's default device,
    /// which the command line has already chosen (`--device`).
    fn load(dir: &Path, options: &Self::Options) -> Result<Self::Model>;

    /// Loads the model for training (`lora`): a forward pass that MLX can differentiate
    /// (no products done outside MLX's graph). The default is [`load`](ModelCli::load).
    fn load_for_training(dir: &Path, options: &Self::Options) -> Result<Self::Model> {
        Self::load(dir, options)
    }

    /// Builds the model of `config` (a `config.json` document) with random weights, for
    /// `bench`. `config` has mlx-lm's `quantization` block (`{"group_size": 64, "bits":
    /// b}`) when `bench --quantize` asks for it. An implementation lists its tensors in
    /// the MLX layout (the parameter names of mlx-lm's model of the same `model_type`, so
    /// that the mlx-lm peer draws the same values), gets their values from
    /// [`RandomWeights::generate`], and loads them as it loads a checkpoint.
    fn random(
        config: &Value,
        weights: &RandomWeights,
        options: &Self::Options,
    ) -> Result<Self::Model>;

    /// Named configurations for `bench --config NAME` (e.g. `2b`: the real shapes of a
    /// released model), matched without regard to case; any other value is read as a
    /// `config.json` path.
    fn bench_presets() -> Vec<(&'static str, Value)> {
        Vec::new()
    }

    /// The sampling defaults of `generate` and `chat` (a model card's recommendation).
    fn sampling_defaults() -> SamplingDefaults {
        SamplingDefaults::default()
    }

    /// How many ids the model's tokenizer has when `config`'s `vocab_size` counts padding
    /// rows beyond them: `bench` draws its random prompt below it (as the peer does).
    fn real_vocab_size(config: &Value) -> Option<usize> {
        let _ = config;
        None
    }

    /// Settings worth recording with a `bench` run (each shown on a line of its own after
    /// the device line, and added to the JSON report under its key), e.g. the options the
    /// model was built with. MLX's default device is already the one the run uses.
    fn bench_notes(options: &Self::Options, on_gpu: bool) -> Vec<BenchNote> {
        let _ = (options, on_gpu);
        Vec::new()
    }

    /// Splits a loaded model across the processes of `group` (tensor parallelism, as
    /// mlx-lm's `model.shard(group)`), called when `generate`, `logits` or `bench` run
    /// under a launcher in a group of more than one process (`mlx-launch -n 2 -- qwen3
    /// generate …`). Every rank then runs the same forward passes and gets the same
    /// logits; rank 0 prints the reply and writes the files. The default refuses: the
    /// model cannot be sharded.
    fn shard(model: &mut Self::Model, group: Group) -> Result<()> {
        let _ = model;
        anyhow::bail!(
            "{} cannot be sharded across processes (group of {})",
            Self::NAME,
            group.size()
        )
    }
}

/// An on/off value of a model's flag (`--cpu-gemm on|off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// A value of a model's `--float-dtype` flag: the dtype its floating-point parameters take
/// at load ([`crate::load::FloatDtype`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloatDtypeArg {
    /// As the checkpoint stores them.
    Stored,
    /// Float32.
    Float32,
    /// Bfloat16.
    Bfloat16,
    /// Float16.
    Float16,
    /// Float32 activations, bfloat16 weight matrices kept (a dense bfloat16 checkpoint on
    /// the CPU at its stored size).
    Float32Activations,
}

impl FloatDtypeArg {
    /// The load option it names.
    pub fn option(self) -> crate::load::FloatDtype {
        use crate::load::FloatDtype;
        match self {
            FloatDtypeArg::Stored => FloatDtype::Stored,
            FloatDtypeArg::Float32 => FloatDtype::Cast(mlx_rs::Dtype::Float32),
            FloatDtypeArg::Bfloat16 => FloatDtype::Cast(mlx_rs::Dtype::Bfloat16),
            FloatDtypeArg::Float16 => FloatDtype::Cast(mlx_rs::Dtype::Float16),
            FloatDtypeArg::Float32Activations => FloatDtype::Float32Activations,
        }
    }
}

/// The flags of a model's CPU paths and load dtype, the same in every model binary:
/// `#[command(flatten)]` them into the model's [`ModelCli::Options`].
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct CpuFlags {
    /// On the CPU, float32 products of 2+ rows in the packed GEMM and quantized products
    /// with float32 input in the CPU quantized kernels instead of MLX's (default: on for
    /// the CPU except on macOS).
    #[arg(long, value_enum, value_name = "on|off")]
    pub cpu_gemm: Option<Switch>,
    /// Threads a CPU product is spread over (default: the cores, at most 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
          allow_negative_numbers = true)]
    pub cpu_threads: Option<u32>,
    /// The dtype of the floating-point parameters (and activations) at load, `bench`'s
    /// random weights too (default: float32-activations on the CPU, stored on a GPU).
    #[arg(long, value_enum, value_name = "DTYPE")]
    pub float_dtype: Option<FloatDtypeArg>,
}

impl CpuFlags {
    /// `cpu` (a model's default CPU products; `None` on a GPU) with the flags given.
    pub fn products(
        &self,
        cpu: Option<crate::kernels::cpu_gemm::CpuProducts>,
    ) -> Option<crate::kernels::cpu_gemm::CpuProducts> {
        cpu.map(|mut c| {
            if let Some(s) = self.cpu_gemm {
                c.gemm = s == Switch::On;
            }
            if let Some(n) = self.cpu_threads {
                c.threads = n as usize;
            }
            c
        })
    }

    /// `default` with `--float-dtype` applied.
    pub fn float_dtype(&self, default: crate::load::FloatDtype) -> crate::load::FloatDtype {
        self.float_dtype.map_or(default, FloatDtypeArg::option)
    }
}

/// [`ModelCli::Options`] of a model without flags of its own.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct NoOptions {}

/// Defaults of the sampling flags of `generate` and `chat`; each flag overrides its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingDefaults {
    /// `--temp`: sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// `--top-k`: keep the K most likely tokens; 0 is off.
    pub top_k: u32,
    /// `--top-p`: nucleus sampling, in (0, 1].
    pub top_p: f32,
    /// `--min-p`: drop tokens below P × the top probability, in [0, 1).
    pub min_p: f32,
    /// `--repetition-penalty`: 1 is off.
    pub repetition_penalty: f32,
    /// `--presence-penalty`: 0 is off.
    pub presence_penalty: f32,
    /// `--max-tokens`: most tokens per reply.
    pub max_tokens: u32,
}

impl Default for SamplingDefaults {
    /// mlx-lm's: greedy, no filter, no penalty; at most 512 tokens.
    fn default() -> Self {
        SamplingDefaults {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            max_tokens: 512,
        }
    }
}

/// One setting recorded with a `bench` run (see [`ModelCli::bench_notes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchNote {
    /// Its key in the JSON report.
    pub key: &'static str,
    /// Its value in the JSON report.
    pub value: Value,
    /// Its line in the text report (after the device line), or `None` to leave it out
    /// there.
    pub text: Option<String>,
}

/// Runs the command line of model `M` on the process's arguments and returns the exit
/// status: 0 on success, 2 for bad arguments, 1 for any other failure, each failure
/// reported as one `error: …` line on stderr. Installs a panic hook that does the same
/// for a panic.
pub fn main<M: ModelCli>() -> ExitCode {
    // A bug must still end with one readable line, not a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        let message = crate::error::panic_message(info.payload());
        eprintln!("error: internal error: {}", one_line(&message));
    }));
    let command = match args::parse::<M>(std::env::args_os()) {
        Ok(command) => command,
        Err(err) => {
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = err.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!("error: {} (see --help)", usage_message(&err));
                    ExitCode::from(2)
                }
            };
        }
    };
    match commands::run::<M>(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&error_chain(&err)));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes as `outer: inner: …`, as anyhow's `{:#}` prints them, but
/// without a cause that the text so far already holds: many errors (`thiserror`'s
/// `"{path}: {source}"` with a `source` field, an `io::Error` wrapping another) print their
/// cause in their own message, and `{:#}` then repeated it (`…(os error 19): …(os error
/// 19)`).
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.contains(cause.trim()) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Folds a multi-line message onto one line (error output is one line per failure).
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one-line form of a clap error: its first paragraph (the message, without the usage
/// and tips that follow), e.g. `invalid value 'x' for '--temp <T>': 'x' is not a number`.
fn usage_message(err: &clap::Error) -> String {
    let text = err.to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let line = one_line(first);
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use anyhow::Context;

    /// Causes already in the message are not printed twice; others are appended.
    #[test]
    fn error_chains_do_not_repeat_their_causes() {
        let io = || std::io::Error::from_raw_os_error(19);
        let lib = crate::Error::io("/m/config.json", io());
        let cases: Vec<(anyhow::Error, String)> = vec![
            (
                anyhow::Error::new(lib).context("cannot load /m"),
                format!("cannot load /m: /m/config.json: {}", io()),
            ),
            (
                anyhow::Error::new(io()).context("cannot write x"),
                format!("cannot write x: {}", io()),
            ),
            (
                Err::<(), _>(io())
                    .context(format!("read failed: {}", io()))
                    .unwrap_err(),
                format!("read failed: {}", io()),
            ),
            (
                anyhow::anyhow!("inner").context("middle").context("outer"),
                "outer: middle: inner".into(),
            ),
        ];
        for (err, want) in cases {
            assert_eq!(error_chain(&err), want);
        }
    }
}
