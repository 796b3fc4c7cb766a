//! `qwen3 MODEL --prompt TEXT --max-tokens N`: one chat turn, streamed.
//!
//! MODEL is a local folder or a Hugging Face model id (downloaded into the Hugging Face
//! cache). A failure prints one `error:` line and exits non-zero.

use anyhow::Context;
use clap::Parser;
use mlx_lm::chat::{ChatOptions, ChatTemplate, Message};
use mlx_lm::hub::{self, HubOptions};
use mlx_lm::tokenizer::Tokenizer;
use mlx_lm::{GenerateOptions, SamplingParams};
use std::io::Write;
use std::process::ExitCode;

/// Generate a reply with a Qwen3 model.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// A model folder or a Hugging Face model id (e.g. Qwen/Qwen3-0.6B).
    model: String,
    /// The user's message.
    #[arg(long, default_value = "Hello! Who are you?")]
    prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Let the model think first (Qwen3's `enable_thinking`).
    #[arg(long)]
    think: bool,
}

fn run(args: Args) -> anyhow::Result<()> {
    let dir = hub::resolve(&args.model, &HubOptions::default())?.dir;
    let tokenizer = Tokenizer::from_model_dir(&dir)?;
    let template = ChatTemplate::from_model_dir(&dir)?;
    let options = ChatOptions {
        enable_thinking: Some(args.think),
        ..Default::default()
    };
    let text = template.render(&[Message::user(args.prompt)], &options)?;
    let prompt = tokenizer.encode(&text)?;
    let model = qwen3::load(&dir).with_context(|| format!("loading {}", dir.display()))?;

    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temp,
            ..Default::default()
        },
        stop_tokens: tokenizer.stop_tokens(),
        ..Default::default()
    };
    let mut stream = mlx_lm::generate(&model, &prompt, options)?;
    let mut decoder = tokenizer.stream(true);
    let mut out = std::io::stdout().lock();
    for token in &mut stream {
        write!(out, "{}", decoder.push(token?)?)?;
        out.flush()?;
    }
    writeln!(out, "{}", decoder.finish())?;
    let s = stream.stats();
    eprintln!(
        "prompt: {} tokens, {:.1} tokens/s; generation: {} tokens, {:.1} tokens/s",
        s.prompt_tokens,
        s.prompt_tps(),
        s.generated_tokens,
        s.generation_tps()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            eprintln!("{} (see --help)", first.trim());
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
