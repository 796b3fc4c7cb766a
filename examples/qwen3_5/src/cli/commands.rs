//! The subcommands: `generate`, `chat` and `logits`.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mlx_rs::{Device, Dtype};
use qwen3_5::chat::{ChatOptions, ChatTemplate, Message};
use qwen3_5::hub::{self, HubOptions};
use qwen3_5::tokenizer::Tokenizer;

use super::args::{
    ChatArgs, Command, DeviceArg, GenerateArgs, LogitsArgs, ModelArgs, SamplingArgs,
};
use super::backend::{self, GenerateRequest, GenerationStats, Model};
use super::npy;

/// Runs a parsed command.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Generate(args) => generate(args),
        Command::Chat(args) => chat(args),
        Command::Logits(args) => logits(args),
        Command::Bench(args) => super::bench::run(args),
    }
}

/// The model folder with its tokenizer and chat template.
struct Assets {
    dir: PathBuf,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
}

fn resolve_dir(model: &ModelArgs) -> Result<PathBuf> {
    Ok(hub::resolve(&model.model, &HubOptions::default())?.dir)
}

fn load_assets(model: &ModelArgs, need_template: bool) -> Result<Assets> {
    let dir = resolve_dir(model)?;
    let tokenizer = Tokenizer::from_model_dir(&dir)?;
    let template = if need_template {
        Some(ChatTemplate::from_model_dir(&dir)?)
    } else {
        None
    };
    Ok(Assets {
        dir,
        tokenizer,
        template,
    })
}

fn select_device(arg: Option<DeviceArg>) -> Result<()> {
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
    Ok(())
}

fn load_model(dir: &Path, device: Option<DeviceArg>) -> Result<Model> {
    select_device(device)?;
    backend::load_model(dir)
}

fn request(sampling: &SamplingArgs, tokenizer: &Tokenizer) -> GenerateRequest {
    GenerateRequest {
        max_tokens: sampling.max_tokens,
        temperature: sampling.temp,
        top_k: sampling.top_k,
        top_p: sampling.top_p,
        min_p: sampling.min_p,
        repetition_penalty: sampling.repetition_penalty,
        presence_penalty: sampling.presence_penalty,
        seed: sampling.seed,
        stop_tokens: tokenizer.stop_tokens(),
    }
}

fn chat_options(sampling: &SamplingArgs) -> ChatOptions {
    ChatOptions {
        enable_thinking: sampling.enable_thinking(),
        ..ChatOptions::default()
    }
}

fn read_prompt(prompt: &str) -> Result<String> {
    if prompt != "-" {
        return Ok(prompt.to_string());
    }
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the prompt from stdin")?;
    Ok(text)
}

fn generate(args: GenerateArgs) -> Result<()> {
    let user = read_prompt(&args.prompt)?;
    let assets = load_assets(&args.model, !args.raw)?;
    let prompt_text = match &assets.template {
        Some(template) => {
            let mut messages = Vec::new();
            if let Some(system) = &args.sampling.system {
                messages.push(Message::system(system.clone()));
            }
            messages.push(Message::user(user));
            template.render(&messages, &chat_options(&args.sampling))?
        }
        None => user,
    };
    let ids = assets.tokenizer.encode(&prompt_text)?;
    if ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    if args.dry_run {
        let ids_text: Vec<String> = ids.iter().map(u32::to_string).collect();
        let mut out = io::stdout().lock();
        let written = write!(out, "{prompt_text}")
            .and_then(|_| writeln!(out, "\n[{} tokens] {}", ids.len(), ids_text.join(",")));
        return ignore_broken_pipe(written);
    }
    let model = load_model(&assets.dir, args.model.device)?;
    let request = request(&args.sampling, &assets.tokenizer);
    let (reply, stats) = stream_reply(&model, &assets.tokenizer, &ids, &request)?;
    if !reply.ends_with('\n') {
        ignore_broken_pipe(writeln!(io::stdout()))?;
    }
    report(&stats);
    Ok(())
}

/// Generates and prints the reply as it comes; returns its text (stop token excluded).
fn stream_reply(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    request: &GenerateRequest,
) -> Result<(String, GenerationStats)> {
    let mut stream = tokenizer.stream(false);
    let mut reply = String::new();
    let mut failure: Option<anyhow::Error> = None;
    let mut out = io::stdout().lock();
    let mut closed = false;
    let stats = model.generate(prompt, request, &mut |token| {
        if request.stop_tokens.contains(&token) {
            return ControlFlow::Break(());
        }
        let text = match stream.push(token) {
            Ok(text) => text,
            Err(e) => {
                failure = Some(e.into());
                return ControlFlow::Break(());
            }
        };
        reply.push_str(&text);
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                closed = true;
                ControlFlow::Break(())
            }
            Err(e) => {
                failure = Some(anyhow::Error::new(e).context("cannot write to stdout"));
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let rest = stream.finish();
    reply.push_str(&rest);
    if !closed {
        ignore_broken_pipe(out.write_all(rest.as_bytes()).and_then(|_| out.flush()))?;
    }
    Ok((reply, stats))
}

fn report(stats: &GenerationStats) {
    let rate = |n: usize, d: std::time::Duration| {
        let secs = d.as_secs_f64();
        if secs > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    };
    eprintln!(
        "prompt: {} tokens, {:.1} tokens/s | generation: {} tokens, {:.1} tokens/s",
        stats.prompt_tokens,
        rate(stats.prompt_tokens, stats.prefill),
        stats.generated_tokens,
        rate(stats.generated_tokens.saturating_sub(1), stats.decode),
    );
}

fn ignore_broken_pipe(result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

fn chat(args: ChatArgs) -> Result<()> {
    let assets = load_assets(&args.model, true)?;
    let Some(template) = &assets.template else {
        bail!("this model has no chat template");
    };
    let model = load_model(&assets.dir, args.model.device)?;
    let request = request(&args.sampling, &assets.tokenizer);
    let options = chat_options(&args.sampling);
    let base: Vec<Message> = args
        .sampling
        .system
        .iter()
        .map(|s| Message::system(s.clone()))
        .collect();
    let mut messages = base.clone();
    let interactive = io::stdin().is_terminal();
    if interactive {
        eprintln!("/reset clears the conversation, /quit (or Ctrl-D) ends it.");
    }
    let mut lines = io::stdin().lock();
    loop {
        if interactive {
            eprint!("> ");
        }
        let mut line = String::new();
        if lines.read_line(&mut line).context("cannot read stdin")? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                messages = base.clone();
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(line));
        let prompt = template.render(&messages, &options)?;
        let ids = assets.tokenizer.encode(&prompt)?;
        let (reply, stats) = stream_reply(&model, &assets.tokenizer, &ids, &request)?;
        ignore_broken_pipe(writeln!(io::stdout()))?;
        if interactive {
            report(&stats);
        }
        messages.push(Message::assistant(reply));
    }
    Ok(())
}

fn logits(args: LogitsArgs) -> Result<()> {
    let tokens = args.tokens.0;
    check_output_path(&args.out)?;
    let dir = resolve_dir(&args.model)?;
    let model = load_model(&dir, args.model.device)?;
    let vocab = model.vocab_size();
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
        bail!("token id {bad} is outside the model's vocabulary (0..{vocab})");
    }
    let logits = model.forward_logits(&tokens)?;
    let logits = logits.astype(Dtype::Float32)?;
    let shape: Vec<usize> = logits.shape().iter().map(|&d| d as usize).collect();
    if shape != [tokens.len(), vocab] {
        bail!(
            "the model returned logits of shape {shape:?}, expected [{}, {vocab}]",
            tokens.len()
        );
    }
    let data = logits.to_vec::<f32>()?;
    let file =
        File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    npy::write_f32(BufWriter::new(file), &shape, &data)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} x {} float32)",
        args.out.display(),
        shape[0],
        shape[1]
    );
    Ok(())
}

/// Fails early (before loading weights) when `--out` cannot be written.
fn check_output_path(out: &Path) -> Result<()> {
    if out.is_dir() {
        bail!(
            "--out {} is a folder; give a file name such as logits.npy",
            out.display()
        );
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "--out {}: folder {} does not exist",
            out.display(),
            parent.display()
        );
    }
    Ok(())
}
