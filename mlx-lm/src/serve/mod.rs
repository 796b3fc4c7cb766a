//! `serve`: an OpenAI-compatible HTTP server over a [`LanguageModel`](crate::LanguageModel),
//! with continuous batching and a prefix cache that works for hybrid (recurrent +
//! attention) models.
//!
//! - [`protocol`]: what the HTTP side and the engine say to each other;
//! - [`engine`]: the model's thread: one batched forward per step over every active
//!   sequence, newcomers prefilled in chunks between steps, finished or cancelled ones
//!   leaving at once;
//! - [`prefix`]: the prefix cache (states saved at request boundaries, LRU by bytes);
//! - [`http`]: the routes (`/v1/chat/completions`, `/v1/completions`, `/v1/models`,
//!   `/health`) over an [`EngineHandle`](protocol::EngineHandle);
//! - [`api`]: OpenAI's request and response types, and the checks of a request;
//! - [`tools`]: the model's output split into reasoning, content and tool calls.
//!
//! On CUDA, a process that serves for long should start with
//! `MLX_ENABLE_CACHE_THRASHING_CHECK=0` in its environment (the `qwen3_5` and `qwen3`
//! binaries set it): MLX 0.32 counts the CUDA graphs its cache did not hold over the
//! process's life and from the 801st on throws instead of running them, so every later
//! step that needs a new graph would fail.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! # let (engine, tokenizer, template): (mlx_lm::serve::protocol::EngineHandle, std::sync::Arc<mlx_lm::tokenizer::Tokenizer>, Option<std::sync::Arc<mlx_lm::chat::ChatTemplate>>) = todo!();
//! use mlx_lm::serve::{http::{router, HttpOptions}, run_http, ctrl_c};
//! let options = HttpOptions { model_id: "qwen3.5-0.8b".into(), ..Default::default() };
//! let app = router(engine, tokenizer, template, options);
//! run_http("127.0.0.1:8080".parse().unwrap(), app, ctrl_c())?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;

pub mod api;
pub mod engine;
pub mod http;
pub mod prefix;
pub mod protocol;
mod request;
mod stream;
pub mod tools;

/// Serves `router` on `listener` until `shutdown` completes (then stops taking
/// connections and waits for open ones to finish).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` and serves `router` until `shutdown` completes, on a runtime of its own
/// (blocking: the caller's thread waits). The engine runs on its own thread, started
/// before.
pub fn run_http(
    addr: SocketAddr,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        serve_http(listener, router, shutdown).await
    })
}

/// Completes on Ctrl-C (or never, where the signal cannot be watched): the usual
/// `shutdown` of [`run_http`].
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
