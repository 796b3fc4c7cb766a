//! Command-line arguments (clap derive) and the parsers that validate them.
//!
//! The argument types are generic over the model's own flags (`O`, [`ModelCli::Options`]),
//! flattened into every command that runs the model. [`parse`] sets what depends on the
//! model at run time: the command's name and description, the sampling defaults and the
//! `bench` presets in `--help`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::bench::BenchArgs;
use super::device::DeviceArg;
use super::ModelCli;

/// Language models on MLX: generate, chat, dump logits, benchmark.
#[derive(Debug, Parser)]
#[command(version, subcommand_required = true, arg_required_else_help = false)]
pub struct Cli<O: Args> {
    /// What to do.
    #[command(subcommand)]
    pub command: Command<O>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command<O: Args> {
    /// Answer one prompt, streaming the reply to stdout.
    Generate(GenerateArgs<O>),
    /// Chat interactively: one user turn per line of stdin (`/reset` clears, `/quit` ends).
    Chat(ChatArgs<O>),
    /// Run the model on a list of token ids and save the logits [n_tokens, vocab] as .npy.
    Logits(LogitsArgs<O>),
    /// Measure prefill/decode speed and peak memory with random weights (optionally
    /// against mlx-lm).
    Bench(BenchArgs<O>),
    /// Serve the model over HTTP with OpenAI's API (chat and text completions), batching
    /// concurrent requests.
    #[cfg(feature = "serve")]
    Serve(super::serve::ServeArgs<O>),
    /// Merge a fine-tuned adapter into the weights and save the model (mlx_lm.fuse).
    Fuse(super::fuse::FuseArgs<O>),
    /// Fine-tune LoRA or DoRA adapters on jsonl data (mlx_lm.lora's flags).
    Lora(super::lora::LoraArgs<O>),
}

/// Parses `args` (the program name first) into the command of model `M`.
pub fn parse<M: ModelCli>(
    args: impl IntoIterator<Item = OsString>,
) -> Result<Command<M::Options>, clap::Error> {
    let d = M::sampling_defaults();
    let sampling = |c: clap::Command| {
        c.mut_arg("temp", |a| a.default_value(d.temperature.to_string()))
            .mut_arg("top_k", |a| a.default_value(d.top_k.to_string()))
            .mut_arg("top_p", |a| a.default_value(d.top_p.to_string()))
            .mut_arg("min_p", |a| a.default_value(d.min_p.to_string()))
            .mut_arg("repetition_penalty", |a| {
                a.default_value(d.repetition_penalty.to_string())
            })
            .mut_arg("presence_penalty", |a| {
                a.default_value(d.presence_penalty.to_string())
            })
            .mut_arg("max_tokens", |a| a.default_value(d.max_tokens.to_string()))
    };
    let presets: Vec<&str> = M::bench_presets().iter().map(|(name, _)| *name).collect();
    let bench = |c: clap::Command| {
        if presets.is_empty() {
            return c;
        }
        c.mut_arg("config", |a| {
            a.value_name(format!("{}|PATH", presets.join("|")))
                .help(format!(
                    "Model shapes: {} or a config.json path",
                    presets.join(", ")
                ))
        })
    };
    let args = super::lora_config::expand(args.into_iter().collect())
        .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))?;
    let command = Cli::<M::Options>::command()
        .name(M::NAME)
        .bin_name(M::NAME)
        .about(M::ABOUT)
        .mut_subcommand("generate", sampling)
        .mut_subcommand("chat", sampling)
        .mut_subcommand("bench", bench)
        // A flag given again wins (a config file's flags come first, the command line's
        // after them), as in mlx_lm.lora.
        .mut_subcommand("lora", |c| c.args_override_self(true));
    let matches = command.try_get_matches_from(args)?;
    Ok(Cli::<M::Options>::from_arg_matches(&matches)?.command)
}

/// Where the model comes from and what runs it.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A local model folder (with config.json) or a Hugging Face model id such as
    /// Qwen/Qwen3.5-2B or mlx-community/Qwen3.5-2B-4bit.
    #[arg(long, value_name = "DIR|ID")]
    pub model: String,
    /// Device to run on (default: the GPU when MLX has one, else the CPU).
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// A fine-tuned adapter to apply (a folder with adapter_config.json and
    /// adapters.safetensors, as mlx_lm.lora writes it).
    #[arg(long, value_name = "DIR")]
    pub adapter_path: Option<PathBuf>,
}

/// Sampling and prompt options shared by `generate` and `chat`.
///
/// The defaults written here are mlx-lm's; [`parse`] replaces them with the model's
/// ([`ModelCli::sampling_defaults`]). `--temp 0` decodes greedily.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate per reply.
    #[arg(long, default_value_t = 512, value_parser = positive_u32, value_name = "N", allow_negative_numbers = true)]
    pub max_tokens: u32,
    /// Sampling temperature; 0 picks the most likely token.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_f32, value_name = "T", allow_negative_numbers = true)]
    pub temp: f32,
    /// Keep the K most likely tokens (0: all).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "K",
        allow_negative_numbers = true
    )]
    pub top_k: u32,
    /// Nucleus sampling: keep the most likely tokens up to this total probability, in (0, 1].
    #[arg(long, default_value_t = 1.0, value_parser = unit_interval_open_low, value_name = "P", allow_negative_numbers = true)]
    pub top_p: f32,
    /// Drop tokens less likely than P × the top token's probability, in [0, 1).
    #[arg(long, default_value_t = 0.0, value_parser = unit_interval_open_high, value_name = "P", allow_negative_numbers = true)]
    pub min_p: f32,
    /// Penalise tokens already seen: their positive logits are divided by R, negative ones
    /// multiplied; > 0, 1 is off.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f32, value_name = "R", allow_negative_numbers = true)]
    pub repetition_penalty: f32,
    /// Subtract R from the logits of tokens already seen; 0 is off.
    #[arg(long, default_value_t = 0.0, value_parser = finite_f32, value_name = "R",
          allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Random seed for sampling.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "S",
        allow_negative_numbers = true
    )]
    pub seed: u64,
    /// Turn thinking off (`enable_thinking=false` for the chat template; with Qwen-style
    /// templates the reply starts after an empty <think></think>).
    #[arg(long, conflicts_with = "think")]
    pub no_think: bool,
    /// Turn thinking on (`enable_thinking=true` for the chat template): a thinking model
    /// reasons in <think>…</think> before answering.
    #[arg(long)]
    pub think: bool,
}

impl SamplingArgs {
    /// `enable_thinking` for the chat template: `None` keeps the template's default.
    pub fn enable_thinking(&self) -> Option<bool> {
        match (self.think, self.no_think) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs<O: Args> {
    #[command(flatten)]
    /// The model.
    pub model: ModelArgs,
    #[command(flatten)]
    /// The model's own flags.
    pub options: O,
    /// The user's prompt (`-` reads it from stdin).
    #[arg(long, allow_hyphen_values = true)]
    pub prompt: String,
    #[command(flatten)]
    /// Sampling.
    pub sampling: SamplingArgs,
    /// Use the prompt as it is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Print the templated prompt and its token ids, then stop (no weights are loaded).
    #[arg(long)]
    pub dry_run: bool,
}

/// `chat`.
#[derive(Debug, Args)]
pub struct ChatArgs<O: Args> {
    #[command(flatten)]
    /// The model.
    pub model: ModelArgs,
    #[command(flatten)]
    /// The model's own flags.
    pub options: O,
    #[command(flatten)]
    /// Sampling.
    pub sampling: SamplingArgs,
}

/// `logits`.
#[derive(Debug, Args)]
pub struct LogitsArgs<O: Args> {
    #[command(flatten)]
    /// The model.
    pub model: ModelArgs,
    #[command(flatten)]
    /// The model's own flags.
    pub options: O,
    /// Comma-separated token ids, e.g. 248045,846,198.
    #[arg(long, value_parser = parse_token_list, allow_hyphen_values = true, value_name = "IDS")]
    pub tokens: TokenList,
    /// Where to write the float32 logits, shape [n_tokens, vocab] (.npy).
    #[arg(long, value_name = "FILE.npy")]
    pub out: PathBuf,
    /// Write the logits even when some are NaN or infinite (by default that is an error:
    /// the weights are likely corrupt).
    #[arg(long)]
    pub allow_nonfinite: bool,
}

/// A parsed `--tokens` list (a newtype so clap does not split it into many values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenList(pub Vec<u32>);

/// Parses `1,2,3`: non-empty, comma-separated, each a decimal id in 0..=4294967295.
pub fn parse_token_list(s: &str) -> Result<TokenList, String> {
    if s.trim().is_empty() {
        return Err("expected comma-separated token ids such as 1,2,3".into());
    }
    let mut ids = Vec::new();
    for (i, item) in s.split(',').enumerate() {
        let item = item.trim();
        let pos = i + 1;
        if item.is_empty() {
            return Err(format!(
                "token {pos} is empty (two commas in a row, or a trailing comma?)"
            ));
        }
        if item.starts_with('-') && item[1..].chars().all(|c| c.is_ascii_digit()) && item.len() > 1
        {
            return Err(format!("token {pos} is negative ({item}); ids are >= 0"));
        }
        if !item.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "token {pos} ('{item}') is not a non-negative integer"
            ));
        }
        let id: u32 = item
            .parse()
            .map_err(|_| format!("token {pos} ({item}) is larger than {}", u32::MAX))?;
        ids.push(id);
    }
    Ok(TokenList(ids))
}

fn parse_f32(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if !v.is_finite() {
        return Err(format!("'{s}' is not a finite number"));
    }
    Ok(v)
}

fn finite_f32(s: &str) -> Result<f32, String> {
    parse_f32(s)
}

fn non_negative_f32(s: &str) -> Result<f32, String> {
    let v = parse_f32(s)?;
    if v < 0.0 {
        return Err(format!("{v} is negative; use 0 or more"));
    }
    Ok(v)
}

fn positive_f32(s: &str) -> Result<f32, String> {
    let v = parse_f32(s)?;
    if v <= 0.0 {
        return Err(format!("{v} is not > 0"));
    }
    Ok(v)
}

fn unit_interval_open_low(s: &str) -> Result<f32, String> {
    let v = parse_f32(s)?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!("{v} is outside (0, 1]"));
    }
    Ok(v)
}

fn unit_interval_open_high(s: &str) -> Result<f32, String> {
    let v = parse_f32(s)?;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("{v} is outside [0, 1)"));
    }
    Ok(v)
}

fn positive_u32(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number between 1 and {}", u32::MAX))?;
    if v == 0 {
        return Err("must be at least 1".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lists() {
        assert_eq!(parse_token_list("1,2,3").unwrap().0, vec![1, 2, 3]);
        assert_eq!(parse_token_list(" 7 , 8 ").unwrap().0, vec![7, 8]);
        assert_eq!(parse_token_list("4294967295").unwrap().0, vec![u32::MAX]);
        for bad in [
            "",
            " ",
            "1,,2",
            "1,",
            ",1",
            "a",
            "1,b",
            "-1",
            "1,-2",
            "4294967296",
            "1.5",
            "0x10",
            "+3",
        ] {
            assert!(parse_token_list(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_token_list("-1").unwrap_err().contains("negative"));
        assert!(parse_token_list("99999999999")
            .unwrap_err()
            .contains("larger"));
        assert!(parse_token_list("1,,2")
            .unwrap_err()
            .contains("token 2 is empty"));
    }

    #[test]
    fn numbers() {
        assert!(unit_interval_open_low("0").is_err());
        assert!(unit_interval_open_low("1").is_ok());
        assert!(unit_interval_open_high("1").is_err());
        assert!(unit_interval_open_high("0").is_ok());
        assert!(non_negative_f32("-0.1").is_err());
        assert!(non_negative_f32("nan").is_err());
        assert!(positive_f32("0").is_err());
        assert!(positive_u32("0").is_err());
        assert!(finite_f32("inf").is_err());
        assert_eq!(finite_f32("-1.5"), Ok(-1.5));
    }
}
