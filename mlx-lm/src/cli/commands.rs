//! The subcommands: `generate`, `chat` and `logits`.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use mlx_rs::distributed::{Backend, Group};
use mlx_rs::Dtype;

use super::args::{ChatArgs, Command, GenerateArgs, LogitsArgs, ModelArgs, SamplingArgs};
use super::device::select_device;
use super::npy;
use super::progress::Progress;
use super::session::{GenerateRequest, GenerationStats, Model, Session};
use super::ModelCli;
use crate::chat::{ChatOptions, ChatTemplate, Message};
use crate::hub::{self, HubOptions};
use crate::model::LanguageModel;
use crate::tokenizer::Tokenizer;
use crate::tuner::{self, Adapter};

/// Runs a parsed command.
pub fn run<M: ModelCli>(command: Command<M::Options>) -> Result<()> {
    match command {
        Command::Generate(args) => generate::<M>(args),
        Command::Chat(args) => chat::<M>(args),
        Command::Logits(args) => logits::<M>(args),
        Command::Bench(args) => super::bench::run::<M>(args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => super::serve::run::<M>(args),
        Command::Fuse(args) => super::fuse::run::<M>(args),
        Command::Lora(args) => super::lora::run::<M>(args),
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

/// The group of processes that a launcher (`mlx-launch`, Python's `mlx.launch`) started
/// this one in: a group of this process alone without a launcher.
pub(super) fn join_group() -> Result<Group> {
    Group::init(Backend::Any, false).context("cannot join the launcher's group of processes")
}

/// Splits `model` across `group` ([`ModelCli::shard`]) when the group has more than one
/// process; every rank then runs the same commands on its share of the weights.
pub(super) fn shard_across<M: ModelCli>(model: &mut M::Model, group: Group) -> Result<()> {
    let size = group.size();
    if size > 1 {
        M::shard(model, group)
            .with_context(|| format!("cannot shard the model across {size} processes"))?;
    }
    Ok(())
}

/// Loads the model of `dir` with the model's options on MLX's default device, and
/// applies the adapter of `adapter` if given (`--adapter-path`).
pub(super) fn load_adapted<M: ModelCli>(
    dir: &Path,
    options: &M::Options,
    adapter: Option<&Path>,
) -> Result<M::Model> {
    let mut model =
        M::load(dir, options).with_context(|| format!("cannot load {}", dir.display()))?;
    if let Some(path) = adapter {
        let context = || format!("cannot apply the adapter at {}", path.display());
        let adapter = Adapter::load(path).with_context(context)?;
        tuner::apply_adapter(&mut model, &adapter).with_context(context)?;
    }
    Ok(model)
}

/// Selects the device, loads the model of `dir` with the model's options and the
/// adapter, if any, and shards it across `group` when that has more than one process.
fn load_model<M: ModelCli>(
    dir: &Path,
    model: &ModelArgs,
    options: &M::Options,
    group: Group,
) -> Result<Model<M::Model>> {
    select_device(model.device)?;
    let mut model = load_adapted::<M>(dir, options, model.adapter_path.as_deref())?;
    shard_across::<M>(&mut model, group)?;
    Ok(Model::new(model))
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
        valid_vocab_size: Some(tokenizer.vocab_size()),
    }
}

fn chat_options(sampling: &SamplingArgs) -> ChatOptions {
    ChatOptions {
        enable_thinking: sampling.enable_thinking(),
        ..ChatOptions::default()
    }
}

/// Memory a template's rendering may add to the process (resident set) before the
/// command gives up on it.
const TEMPLATE_MEMORY: u64 = 2 << 30;

/// Time a template's rendering may take (the budget's 16 million steps take a second or
/// two; a real template renders a long conversation in milliseconds).
const TEMPLATE_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Renders with the template's budget, watching the process's memory as well: the
/// budget bounds loops and the text a template makes, but not every structure (minijinja
/// 3.1 materializes a deep `list + list` chain without charging it: a template that
/// doubles a list 40 times would take all memory, for hours). The render runs on a thread
/// of its own; when the resident set grows by more than [`TEMPLATE_MEMORY`] or the render
/// takes longer than [`TEMPLATE_TIME`], the command ends with one error line (a render
/// cannot be stopped from outside). The memory watch needs `/proc/self/status` (Linux).
fn render_guarded(
    template: &ChatTemplate,
    messages: &[Message],
    options: &ChatOptions,
) -> Result<String> {
    let start = resident_bytes();
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        let render = scope.spawn(|| template.render(messages, options));
        while !render.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(2));
            let grown = match (start, resident_bytes()) {
                (Some(start), Some(now)) => now.saturating_sub(start),
                _ => 0,
            };
            let why = if grown > TEMPLATE_MEMORY {
                format!("more than {} MiB of memory", TEMPLATE_MEMORY >> 20)
            } else if started.elapsed() > TEMPLATE_TIME {
                format!("more than {} s", TEMPLATE_TIME.as_secs())
            } else {
                continue;
            };
            eprintln!(
                "error: chat template: rendering took {why}; the template loops too long or \
                 builds too much data"
            );
            std::process::exit(1);
        }
        match render.join() {
            Ok(result) => Ok(result?),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The process's resident set (`VmRSS` of `/proc/self/status`), where the system has it.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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

fn generate<M: ModelCli>(args: GenerateArgs<M::Options>) -> Result<()> {
    let user = read_prompt(&args.prompt)?;
    let assets = load_assets(&args.model, !args.raw)?;
    let prompt_text = match &assets.template {
        Some(template) => {
            let mut messages = Vec::new();
            if let Some(system) = &args.sampling.system {
                messages.push(Message::system(system.clone()));
            }
            messages.push(Message::user(user));
            render_guarded(template, &messages, &chat_options(&args.sampling))?
        }
        None => user,
    };
    let ids = assets.tokenizer.encode(&prompt_text)?;
    if ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    check_context(
        &assets.dir,
        ids.len() as u64,
        u64::from(args.sampling.max_tokens),
    )?;
    if args.dry_run {
        let ids_text: Vec<String> = ids.iter().map(u32::to_string).collect();
        let mut out = io::stdout().lock();
        let written = write!(out, "{prompt_text}")
            .and_then(|_| writeln!(out, "\n[{} tokens] {}", ids.len(), ids_text.join(",")));
        return ignore_broken_pipe(written);
    }
    // Under a launcher every rank generates (the same tokens); rank 0 prints.
    let group = join_group()?;
    let quiet = group.rank() != 0;
    let model = load_model::<M>(&assets.dir, &args.model, &args.options, group)?;
    let request = request(&args.sampling, &assets.tokenizer);
    let mut session = model.new_session();
    let (reply, stats, _) = stream_reply(
        &model,
        &mut session,
        &assets.tokenizer,
        &ids,
        &request,
        quiet,
    )?;
    if quiet {
        return Ok(());
    }
    if !reply.ends_with('\n') {
        ignore_broken_pipe(writeln!(io::stdout()))?;
    }
    report(&stats);
    Ok(())
}

/// The context length of a `config.json` document: `max_position_embeddings` (in
/// `text_config` for a multimodal config), when it has one.
pub(super) fn context_length(config: &serde_json::Value) -> Option<u64> {
    let text = config.get("text_config").unwrap_or(config);
    text.get("max_position_embeddings")
        .or_else(|| config.get("max_position_embeddings"))
        .and_then(serde_json::Value::as_u64)
        .filter(|&n| n > 0)
}

/// Refuses a prompt of `prompt` tokens followed by `max_tokens` generated ones when they
/// do not fit the model's context (`max_position_embeddings` of `dir/config.json`); an
/// unreadable config is left for the model's loading to report.
fn check_context(dir: &Path, prompt: u64, max_tokens: u64) -> Result<()> {
    let Some(config) = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    else {
        return Ok(());
    };
    let Some(context) = context_length(&config) else {
        return Ok(());
    };
    if prompt + max_tokens > context {
        if prompt == 0 {
            bail!(
                "--max-tokens {max_tokens} is more than the model's context of {context} \
                 tokens (max_position_embeddings in config.json)"
            );
        }
        bail!(
            "the prompt ({prompt} tokens) and --max-tokens {max_tokens} need {} positions, \
             more than the model's context of {context} tokens (max_position_embeddings in \
             config.json); lower --max-tokens to {} or less",
            prompt + max_tokens,
            context.saturating_sub(prompt)
        );
    }
    Ok(())
}

/// Generates after `prompt`, continuing `session`, and prints the reply as it comes,
/// flushed chunk by chunk (whole characters: the tokenizer's streaming decoder holds back
/// a character cut across tokens). Returns the reply's text (stop token excluded), the
/// statistics, and whether stdout was closed (the reply then ends early). `quiet`: print
/// nothing (a rank other than 0 of a group).
fn stream_reply<L: LanguageModel>(
    model: &Model<L>,
    session: &mut Session,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    request: &GenerateRequest,
    quiet: bool,
) -> Result<(String, GenerationStats, bool)> {
    let mut stream = tokenizer.stream(false);
    let mut reply = String::new();
    let mut failure: Option<anyhow::Error> = None;
    let mut out: Box<dyn Write> = match quiet {
        true => Box::new(io::sink()),
        false => Box::new(io::stdout().lock()),
    };
    let mut closed = false;
    // A long prompt shows its progress until the first token (on a terminal).
    let progress = match quiet {
        true => Progress::hidden(),
        false => Progress::stderr(),
    };
    progress.prefill("", prompt.len() + session.pending());
    let stats = model.continue_session(session, prompt, request, &mut |token| {
        progress.clear();
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
    progress.clear();
    if stats.nonfinite_logits && !NONFINITE_WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "warning: the model's logits are not finite (NaN or infinite): its weights are \
             likely corrupt, and what it generates means nothing"
        );
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let rest = stream.finish();
    reply.push_str(&rest);
    if !closed {
        ignore_broken_pipe(out.write_all(rest.as_bytes()).and_then(|_| out.flush()))?;
    }
    Ok((reply, stats, closed))
}

/// Whether the warning about non-finite logits was given (once per process).
static NONFINITE_WARNED: AtomicBool = AtomicBool::new(false);

/// Prints the statistics of a generation to stderr, in mlx-lm's format.
fn report(stats: &GenerationStats) {
    eprintln!("==========");
    eprintln!(
        "Prompt: {} tokens, {:.3} tokens-per-sec",
        stats.prompt_tokens, stats.prompt_tps
    );
    eprintln!(
        "Generation: {} tokens, {:.3} tokens-per-sec",
        stats.generated_tokens, stats.generation_tps
    );
    eprintln!("Peak memory: {:.3} GB", stats.peak_memory as f64 / 1e9);
}

/// `Ok(true)` when the write failed because stdout was closed.
fn is_broken_pipe(result: io::Result<()>) -> Result<bool> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(true),
        other => other.map(|()| false).context("cannot write to stdout"),
    }
}

fn ignore_broken_pipe(result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Interactive chat, one user turn per line of stdin.
///
/// The model's cache is kept from turn to turn, so a turn runs only its new tokens through
/// the model: the end of the previous reply (the end-of-turn token and a newline, as a
/// ChatML template such as Qwen's closes a turn: `<|im_end|>\n`)
/// and the new user turn, templated on its own with the generation prompt (the system
/// prompt goes with the first turn). This is what mlx-lm's chat does. Earlier replies thus
/// stay in context exactly as the model produced them (after the empty think block of
/// non-thinking chat, which a re-render of the whole conversation would drop).
fn chat<M: ModelCli>(args: ChatArgs<M::Options>) -> Result<()> {
    let assets = load_assets(&args.model, true)?;
    let Some(template) = &assets.template else {
        bail!("this model has no chat template");
    };
    check_context(&assets.dir, 0, u64::from(args.sampling.max_tokens))?;
    let group = join_group()?;
    if group.size() > 1 {
        bail!("chat reads its turns from stdin and does not run under a launcher; use generate");
    }
    let model = load_model::<M>(&assets.dir, &args.model, &args.options, group)?;
    let request = request(&args.sampling, &assets.tokenizer);
    let options = chat_options(&args.sampling);
    let im_end = assets.tokenizer.specials().im_end;
    let newline = assets.tokenizer.encode("\n")?;
    let mut session = model.new_session();
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
                session = model.new_session();
                continue;
            }
            _ => {}
        }
        let mut messages = Vec::new();
        if session.is_empty() {
            if let Some(system) = &args.sampling.system {
                messages.push(Message::system(system.clone()));
            }
        }
        messages.push(Message::user(line));
        let prompt = render_guarded(template, &messages, &options)?;
        let ids = assets.tokenizer.encode(&prompt)?;
        let (_, stats, closed) = stream_reply(
            &model,
            &mut session,
            &assets.tokenizer,
            &ids,
            &request,
            false,
        )?;
        // Nobody reads the replies any more (e.g. `| head`): stop.
        if closed || is_broken_pipe(writeln!(io::stdout()).and_then(|_| io::stdout().flush()))? {
            break;
        }
        // Close the assistant turn as the template does.
        if stats.stopped_by != Some(im_end) {
            session.push(&[im_end]);
        }
        session.push(&newline);
        if interactive {
            report(&stats);
        }
    }
    Ok(())
}

fn logits<M: ModelCli>(args: LogitsArgs<M::Options>) -> Result<()> {
    let tokens = args.tokens.0;
    // Under a launcher every rank computes the logits; rank 0 writes them.
    let group = join_group()?;
    let writes = group.rank() == 0;
    if writes {
        check_output_path(&args.out)?;
    }
    // Created before the weights are loaded, so an unwritable --out fails at once; renamed
    // to --out only once the whole file is written.
    let partial = match writes {
        true => Some(PartialFile::create(&args.out)?),
        false => None,
    };
    let dir = resolve_dir(&args.model)?;
    let model = load_model::<M>(&dir, &args.model, &args.options, group)?;
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
    if !args.allow_nonfinite {
        if let Some(first) = data.iter().position(|x| !x.is_finite()) {
            let count = data.iter().filter(|x| !x.is_finite()).count();
            bail!(
                "{count} of the {} logits are not finite (NaN or infinite; the first at token \
                 {} of {}, id {}): the weights are likely corrupt; pass --allow-nonfinite to \
                 write them anyway",
                data.len(),
                first / vocab + 1,
                tokens.len(),
                first % vocab
            );
        }
    }
    let Some(partial) = partial else {
        return Ok(());
    };
    partial.write(|file| npy::write_f32(BufWriter::new(file), &shape, &data))?;
    eprintln!(
        "wrote {} ({} x {} float32)",
        args.out.display(),
        shape[0],
        shape[1]
    );
    Ok(())
}

/// A file written beside its destination and renamed over it once complete; removed if
/// dropped before [`PartialFile::write`] succeeds. A destination that exists and is not a
/// regular file (a device such as `/dev/stdout`, a pipe) is written in place: renaming over
/// it would replace the device node.
struct PartialFile {
    /// The temporary file, or `None` when writing straight into `dest`.
    path: Option<PathBuf>,
    dest: PathBuf,
    file: Option<File>,
}

impl PartialFile {
    fn create(dest: &Path) -> Result<PartialFile> {
        // A symbolic link is written through: the file it points to gets the data, and the
        // link stays (renaming over the link would replace it with a file). A dangling link
        // is refused, as `cp` does.
        let resolved;
        let dest = match std::fs::symlink_metadata(dest) {
            Ok(meta) if meta.file_type().is_symlink() => {
                resolved = std::fs::canonicalize(dest).map_err(|_| {
                    let target = std::fs::read_link(dest).unwrap_or_default();
                    anyhow::anyhow!(
                        "--out {} is a symbolic link to {}, which does not exist; \
                         not writing through a dangling link",
                        dest.display(),
                        target.display()
                    )
                })?;
                resolved.as_path()
            }
            _ => dest,
        };
        if let Ok(meta) = std::fs::metadata(dest) {
            if !meta.is_file() {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dest)
                    .with_context(|| format!("cannot write --out {}", dest.display()))?;
                return Ok(PartialFile {
                    path: None,
                    dest: dest.to_path_buf(),
                    file: Some(file),
                });
            }
        }
        let name = dest
            .file_name()
            .with_context(|| format!("--out {} has no file name", dest.display()))?;
        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(format!(".partial-{}", std::process::id()));
        let path = dest.with_file_name(partial_name);
        let file = File::create(&path)
            .with_context(|| format!("cannot write --out {}", dest.display()))?;
        Ok(PartialFile {
            path: Some(path),
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    fn write(mut self, fill: impl FnOnce(&File) -> io::Result<()>) -> Result<()> {
        let file = self.file.take().expect("written once");
        let dest = self.dest.clone();
        fill(&file)
            .and_then(|()| match self.path.take() {
                Some(path) => file
                    .sync_all()
                    .and_then(|()| std::fs::rename(&path, &dest))
                    .inspect_err(|_| {
                        let _ = std::fs::remove_file(&path);
                    }),
                None => Ok(()),
            })
            .with_context(|| format!("cannot write {}", dest.display()))
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
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
    if parent.exists() && !parent.is_dir() {
        bail!(
            "--out {}: {} is not a folder",
            out.display(),
            parent.display()
        );
    }
    if !parent.is_dir() {
        bail!(
            "--out {}: folder {} does not exist",
            out.display(),
            parent.display()
        );
    }
    Ok(())
}
