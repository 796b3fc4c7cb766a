//! `serve`: the OpenAI-compatible server ([`crate::serve`]) on a model folder.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::args::ModelArgs;
use super::device::select_device;
use super::ModelCli;
use crate::chat::ChatTemplate;
use crate::hub::{self, HubOptions};
use crate::serve::engine::{self, EngineOptions};
use crate::serve::http::{router, HttpOptions};
use crate::serve::{ctrl_c, serve_http};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs<O: Args> {
    #[command(flatten)]
    /// The model.
    pub model: ModelArgs,
    #[command(flatten)]
    /// The model's own flags.
    pub options: O,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    pub port: u16,
    /// Most requests decoded together (one batched step over all of them).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub max_concurrency: u32,
    /// Most requests waiting for a free row; more are answered 429.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub queue_size: u32,
    /// Bytes of model states kept for prompts that extend earlier ones (0 turns the prefix
    /// cache off); suffixes K, M, G (powers of 1024) are accepted.
    #[arg(long, default_value = "1G", value_parser = parse_bytes, value_name = "B")]
    pub prompt_cache_bytes: u64,
    /// Most prompt tokens of a newcomer run between two decode steps of the others.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub prefill_step: u32,
    /// Most tokens (padding included) of the first chunks of requests that arrive
    /// together, prefilled as one batch.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub prefill_batch: u32,
    /// Longest prompt plus reply, in tokens (default: the model's max_position_embeddings).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub max_context: Option<u32>,
    /// Largest request body accepted (413 above it); suffixes K, M, G.
    #[arg(long, default_value = "16M", value_parser = parse_bytes, value_name = "B")]
    pub max_body_bytes: u64,
    /// The model's name in `/v1/models` and in replies (default: the --model value).
    #[arg(long, value_name = "NAME")]
    pub model_id: Option<String>,
}

/// `4096`, `512K`, `16M`, `1G` (powers of 1024).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, scale) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let scale: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix '{c}' (use K, M or G)")),
            };
            (&t[..i], scale)
        }
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a size such as 4096, 512K, 16M or 1G, got '{s}'"))?;
    n.checked_mul(scale)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// The context length of a model folder: `max_position_embeddings` at the top of
/// `config.json` or in its `text_config`.
fn config_context(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let get = |o: &serde_json::Value| o.get("max_position_embeddings")?.as_u64();
    get(&v)
        .or_else(|| get(v.get("text_config")?))
        .map(|n| n.min(u32::MAX as u64) as u32)
}

/// Runs `serve` until Ctrl-C.
pub fn run<M: ModelCli>(args: ServeArgs<M::Options>) -> Result<()> {
    let size = super::commands::join_group()?.size();
    if size > 1 {
        bail!("serve runs in one process and not under a launcher (a group of {size} processes)");
    }
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (args.host.as_str(), args.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|()| {
            anyhow::anyhow!(
                "--host {}: not an address this machine can listen on",
                args.host
            )
        })?;
    let dir = hub::resolve(&args.model.model, &HubOptions::default())?.dir;
    let tokenizer = Tokenizer::from_model_dir(&dir)?;
    let template = match ChatTemplate::from_model_dir(&dir) {
        Ok(t) => Some(t),
        Err(crate::chat::ChatError::Missing(_)) => {
            eprintln!(
                "warning: {} has no chat template: /v1/chat/completions answers 400, \
                 /v1/completions works",
                dir.display()
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    let max_context = match args.max_context.or_else(|| config_context(&dir)) {
        Some(n) => n as usize,
        None => bail!(
            "{}: config.json has no max_position_embeddings; give --max-context",
            dir.display()
        ),
    };
    let device = select_device(args.model.device)?;
    let options = EngineOptions {
        device: Some(device),
        max_concurrency: args.max_concurrency as usize,
        queue_size: args.queue_size as usize,
        prefill_chunk: args.prefill_step as usize,
        prefill_batch_tokens: args.prefill_batch as usize,
        prompt_cache_bytes: usize::try_from(args.prompt_cache_bytes).unwrap_or(usize::MAX),
        stop_tokens: tokenizer.stop_tokens(),
        valid_vocab: i32::try_from(tokenizer.vocab_size()).ok(),
        warm_up: true,
    };
    let model_options = args.options;
    let load_dir = dir.clone();
    let adapter = args.model.adapter_path.clone();
    eprintln!("loading {} …", dir.display());
    let (handle, engine_thread) = engine::spawn(
        move || {
            super::commands::load_adapted::<M>(&load_dir, &model_options, adapter.as_deref())
                .map_err(|e| super::error_chain(&e))
        },
        options,
    )?;
    let http = HttpOptions {
        model_id: args.model_id.unwrap_or_else(|| args.model.model.clone()),
        max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
        max_context,
        default_max_tokens: HttpOptions::default().default_max_tokens.min(max_context),
        ..HttpOptions::default()
    };
    let app = router(
        handle.clone(),
        Arc::new(tokenizer),
        template.map(Arc::new),
        http,
    );
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    eprintln!(
        "listening on http://{bound} (the model is loading and warming up; GET /health answers 200 once it is ready)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let failed = Arc::new(std::sync::Mutex::new(None));
        let watch = engine_stopped(handle, failed.clone());
        let shutdown = async move {
            tokio::select! {
                _ = ctrl_c() => eprintln!("shutting down"),
                _ = watch => {}
            }
        };
        serve_http(listener, app, shutdown).await?;
        let failed = failed.lock().map(|f| f.clone()).unwrap_or(None);
        Ok::<_, anyhow::Error>(failed)
    });
    drop(runtime);
    // Every handle is gone with the HTTP side: the engine finishes its step and exits.
    // Wait for it, so that MLX is not torn down under a running step.
    let _ = engine_thread.join();
    match served? {
        Some(why) => bail!("{why}"),
        None => Ok(()),
    }
}

/// Completes when the engine stops on its own (the model failed to load), recording why
/// in `failed`; reports once on stderr when the model is ready.
async fn engine_stopped(
    handle: crate::serve::protocol::EngineHandle,
    failed: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut announced = false;
    loop {
        if let Some(why) = handle.stopped() {
            if let Ok(mut f) = failed.lock() {
                *f = Some(why);
            }
            return;
        }
        if !announced && handle.ready() {
            eprintln!("ready");
            announced = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
