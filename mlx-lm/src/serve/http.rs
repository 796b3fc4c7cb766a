//! The HTTP side: an axum [`Router`] with OpenAI's `POST /v1/chat/completions`,
//! `POST /v1/completions`, `GET /v1/models` and `GET /health`, over an [`EngineHandle`].
//!
//! A request is checked, rendered with the chat template and tokenized (off the async
//! threads), then submitted; the engine's events come back through the streaming
//! detokenizer, the stop strings and the reasoning / tool-call parser. Every error is
//! answered in OpenAI's shape, axum's own rejections and handler panics included.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::{
    self, ApiError, ChatChoice, ChatCompletion, ChatCompletionRequest, CommonFields,
    CompletionChoice, CompletionRequest, Delta, FunctionCall, Generation, ModelCard, PromptInput,
    TextCompletion, ToolCall, ToolForcing,
};
use super::protocol::{EngineHandle, Submission, SubmitError};
use super::stream::{chat_logprobs, completion_logprobs, End, Pipeline, Run, Step};
use super::tools::{forced_opening, ParserOptions, Piece};
use crate::chat::{ChatOptions, ChatTemplate};
use crate::sampling::SamplingParams;
use crate::tokenizer::Tokenizer;

/// The HTTP side's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// The model's id, as `/v1/models` lists it and responses name it.
    pub model_id: String,
    /// Largest request body; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// Most tokens of prompt plus completion.
    pub max_context: usize,
    /// `max_tokens` when a request gives none (capped by what the context leaves).
    pub default_max_tokens: usize,
    /// Sampling for fields a request leaves out (greedy by default, as mlx-lm's server).
    pub default_sampling: SamplingParams,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            model_id: "default".into(),
            max_body_bytes: 16 << 20,
            max_context: 32768,
            default_max_tokens: 4096,
            default_sampling: SamplingParams::default(),
        }
    }
}

struct Shared {
    engine: EngineHandle,
    tokenizer: Arc<Tokenizer>,
    template: Option<Arc<ChatTemplate>>,
    options: HttpOptions,
    created: u64,
}

type AppState = Arc<Shared>;

/// The server's routes over `engine`; `template` is needed for chat completions.
pub fn router(
    engine: EngineHandle,
    tokenizer: Arc<Tokenizer>,
    template: Option<Arc<ChatTemplate>>,
    options: HttpOptions,
) -> Router {
    let max_body = options.max_body_bytes;
    let state = Arc::new(Shared {
        engine,
        tokenizer,
        template,
        options,
        created: now(),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(|| async { ApiError::new(404, "no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(405, "method not allowed on this route").into_response()
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(catch_panic))
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

/// A handler that panics answers 500 instead of dropping the connection.
pub(crate) async fn catch_panic(request: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(500, "internal error: the request handler panicked").into_response()
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{nanos:08x}{:06x}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn health(State(state): State<AppState>) -> Response {
    if state.engine.ready() {
        let status = state.engine.status();
        let load = |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::SeqCst);
        Json(json!({
            "status": "ok",
            "requests": {"active": load(&status.active), "waiting": load(&status.waiting)},
            "memory": {
                "mlx_active_bytes": mlx_rs::memory::get_active_memory().unwrap_or(0),
                "mlx_cache_bytes": mlx_rs::memory::get_cache_memory().unwrap_or(0),
                "prefix_cache_bytes": load(&status.prefix_bytes),
            },
            "engine": status.timing.to_json(),
        }))
        .into_response()
    } else {
        let why = state
            .engine
            .stopped()
            .unwrap_or_else(|| "the model is loading".into());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": why})),
        )
            .into_response()
    }
}

async fn models(State(state): State<AppState>) -> Response {
    let card = ModelCard {
        id: state.options.model_id.clone(),
        object: "model",
        created: state.created,
        owned_by: "mlx-lm",
    };
    Json(json!({"object": "list", "data": [card]})).into_response()
}

/// The body as a JSON object: 415 without a JSON content type, 413 over the limit.
fn read_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json") || v.to_ascii_lowercase().ends_with("+json")
        });
    if !json_type {
        return Err(ApiError::new(
            415,
            "expected a body with Content-Type: application/json",
        ));
    }
    let body = body.map_err(|r| ApiError::new(r.status().as_u16(), r.body_text()))?;
    api::parse_body(&body)
}

fn ensure_ready(engine: &EngineHandle) -> Result<(), ApiError> {
    if engine.ready() {
        return Ok(());
    }
    let why = engine.stopped().map_or_else(
        || "the model is not ready yet".to_string(),
        |why| format!("the model engine has stopped: {why}"),
    );
    Err(ApiError::new(503, why))
}

async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    chat_request(state, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn chat_request(
    state: AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_body(headers, body)?;
    let request: ChatCompletionRequest = api::from_value(&body)?;
    let common: CommonFields = api::from_value(&body)?;
    let mut generation = common.validate(&state.options.default_sampling)?;
    let (prompt, logprobs) = request.validate()?;
    generation.logprobs = logprobs;
    ensure_ready(&state.engine)?;
    let template = state.template.clone().ok_or_else(|| {
        ApiError::new(400, "this model has no chat template: use /v1/completions")
    })?;
    let tokenizer = state.tokenizer.clone();
    let tools = prompt.tools.is_some();
    let rendered = tokio::task::spawn_blocking(move || {
        let forced = prompt.forcing != ToolForcing::Auto;
        let options = ChatOptions {
            add_generation_prompt: true,
            // A forced tool call is the whole reply: no thinking before it.
            enable_thinking: if forced {
                Some(false)
            } else {
                prompt.enable_thinking
            },
            tools: prompt.tools,
        };
        let mut text = template
            .render_json(&prompt.messages, &options)
            .map_err(|e| {
                ApiError::invalid("messages", format!("cannot apply the chat template: {e}"))
            })?;
        // The tools' instructions in the prompt show the model's call format.
        let xml = text.contains("<function=");
        let primer = match &prompt.forcing {
            ToolForcing::Auto => String::new(),
            ToolForcing::Required => forced_opening(None, xml),
            ToolForcing::Named(name) => forced_opening(Some(name), xml),
        };
        text.push_str(&primer);
        let in_think = !forced && text.trim_end().ends_with("<think>");
        let ids = tokenizer
            .encode(&text)
            .map_err(|e| ApiError::new(500, format!("cannot tokenize the prompt: {e}")))?;
        // The conversation without the opening of the reply: the next turn's prompt
        // starts with it, so the engine saves its state there (a hybrid model's state
        // cannot be cut back from the end of this prompt).
        let history = ChatOptions {
            add_generation_prompt: false,
            ..options
        };
        let save_at = template
            .render_json(&prompt.messages, &history)
            .ok()
            .filter(|h| text.starts_with(h.as_str()))
            .and_then(|h| tokenizer.encode(&h).ok())
            .filter(|h| h.len() < ids.len() && ids.starts_with(h))
            .map(|h| vec![h.len()])
            .unwrap_or_default();
        Ok::<_, ApiError>((ids, in_think, save_at, primer))
    })
    .await
    .map_err(|e| ApiError::new(500, format!("prompt rendering failed: {e}")))?;
    let (ids, in_think, save_at, primer) = rendered?;
    let parser = ParserOptions {
        in_think,
        tools,
        primer,
    };
    start(state, ids, save_at, "messages", generation, Some(parser)).await
}

async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    completion_request(state, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn completion_request(
    state: AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_body(headers, body)?;
    let request: CompletionRequest = api::from_value(&body)?;
    let common: CommonFields = api::from_value(&body)?;
    let mut generation = common.validate(&state.options.default_sampling)?;
    let (prompt, logprobs) = request.validate()?;
    generation.logprobs = logprobs;
    ensure_ready(&state.engine)?;
    let ids = match prompt {
        PromptInput::Tokens(ids) => {
            let vocab = state.tokenizer.vocab_size();
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(ApiError::invalid(
                    "prompt",
                    format!("token id {bad} is outside the vocabulary ({vocab} ids)"),
                ));
            }
            ids
        }
        PromptInput::Text(text) => {
            let tokenizer = state.tokenizer.clone();
            tokio::task::spawn_blocking(move || tokenizer.encode(&text))
                .await
                .map_err(|e| ApiError::new(500, format!("tokenizing failed: {e}")))?
                .map_err(|e| ApiError::new(500, format!("cannot tokenize the prompt: {e}")))?
        }
    };
    if ids.is_empty() {
        return Err(ApiError::invalid("prompt", "the prompt must not be empty"));
    }
    start(state, ids, Vec::new(), "prompt", generation, None).await
}

/// Checks the lengths, submits, and answers (streamed or whole). `parser` is `None` for
/// text completions.
async fn start(
    state: AppState,
    ids: Vec<u32>,
    save_at: Vec<usize>,
    prompt_param: &str,
    generation: Generation,
    parser: Option<ParserOptions>,
) -> Result<Response, ApiError> {
    let (n, context) = (ids.len(), state.options.max_context);
    if n >= context {
        return Err(ApiError::invalid(
            prompt_param,
            format!("the prompt has {n} tokens, but the model's context is {context} tokens"),
        )
        .with_code("context_length_exceeded"));
    }
    let max_tokens = match generation.max_tokens {
        Some(m) if m > context - n => {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "the model's context is {context} tokens, but {} were requested \
                     ({n} in the prompt, {m} for the completion)",
                    n.saturating_add(m)
                ),
            )
            .with_code("context_length_exceeded"))
        }
        Some(m) => m,
        None => (context - n).min(state.options.default_max_tokens.max(1)),
    };
    let (tx, events) = mpsc::unbounded_channel();
    state
        .engine
        .submit(Submission {
            prompt: ids,
            save_at,
            max_tokens,
            sampling: generation.sampling.clone(),
            logprobs: generation.logprobs,
            events: tx,
        })
        .map_err(|e| match e {
            SubmitError::QueueFull(_) => ApiError::new(429, e.to_string()).with_code("queue_full"),
            SubmitError::Stopped(_) => ApiError::new(503, e.to_string()),
        })?;
    let chat = parser.is_some();
    let out = Output {
        id: response_id(if chat { "chatcmpl" } else { "cmpl" }),
        created: now(),
        model: state.options.model_id.clone(),
        logprobs: generation.logprobs.is_some(),
        chat,
        call_index: 0,
        text_offset: 0,
        pending: Vec::new(),
    };
    let tokenizer = state.tokenizer.clone();
    let stops = generation.stop.clone();
    if generation.stream {
        Ok(stream_response(
            tokenizer,
            events,
            n,
            stops,
            parser,
            out,
            generation.include_usage,
        ))
    } else {
        let pipeline = Pipeline::new(&tokenizer, stops, parser);
        let run = Run::new(events, pipeline, n, out.logprobs);
        whole_response(run, out).await
    }
}

/// The response's identity and the state of its chunks.
struct Output {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    chat: bool,
    /// Tool calls streamed so far.
    call_index: usize,
    /// Characters of completion text streamed so far.
    text_offset: usize,
    /// Tokens whose log-probabilities wait for the next chunk.
    pending: Vec<super::protocol::TokenEvent>,
}

impl Output {
    fn chat(&self, choices: Vec<ChatChoice>, usage: Option<api::Usage>, chunk: bool) -> Value {
        to_json(&ChatCompletion {
            id: self.id.clone(),
            object: if chunk {
                "chat.completion.chunk"
            } else {
                "chat.completion"
            },
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }

    fn text(&self, choices: Vec<CompletionChoice>, usage: Option<api::Usage>) -> Value {
        to_json(&TextCompletion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }

    /// The stream chunks of one step (a final chunk with the finish reason when it ends).
    fn chunks(&mut self, run: &Run<'_>, step: Step) -> Vec<Value> {
        self.pending.extend(step.tokens);
        let finish = match &step.end {
            Some(End::Finish(reason)) => Some(*reason),
            _ => None,
        };
        let mut out = Vec::new();
        let count = step.pieces.len();
        for (i, piece) in step.pieces.into_iter().enumerate() {
            let last = i + 1 == count;
            let reason = if last { finish } else { None };
            out.push(self.chunk(run, Some(piece), reason, last));
        }
        if count == 0 && finish.is_some() {
            out.push(self.chunk(run, None, finish, true));
        }
        out
    }

    fn chunk(
        &mut self,
        run: &Run<'_>,
        piece: Option<Piece>,
        finish: Option<&'static str>,
        flush: bool,
    ) -> Value {
        let tokens = if flush || finish.is_some() {
            std::mem::take(&mut self.pending)
        } else {
            Vec::new()
        };
        if self.chat {
            let logprobs = self.logprobs.then(|| chat_logprobs(&run.pipeline, &tokens));
            let mut delta = Delta::default();
            match piece {
                Some(Piece::Content(t)) => delta.content = Some(t),
                Some(Piece::Reasoning(t)) => delta.reasoning_content = Some(t),
                Some(Piece::ToolCall(call)) => {
                    delta.tool_calls = Some(vec![tool_call(call, Some(self.call_index))]);
                    self.call_index += 1;
                }
                None => {}
            }
            let choice = ChatChoice {
                index: 0,
                message: None,
                delta: Some(delta),
                logprobs,
                finish_reason: finish,
            };
            self.chat(vec![choice], None, true)
        } else {
            let text = match piece {
                Some(Piece::Content(t) | Piece::Reasoning(t)) => t,
                _ => String::new(),
            };
            let logprobs = self
                .logprobs
                .then(|| completion_logprobs(&run.pipeline, &tokens, self.text_offset));
            self.text_offset += text.chars().count();
            let choice = CompletionChoice {
                index: 0,
                text,
                logprobs,
                finish_reason: finish,
            };
            self.text(vec![choice], None)
        }
    }
}

fn tool_call(call: super::tools::ParsedToolCall, index: Option<usize>) -> ToolCall {
    ToolCall {
        index,
        id: call.id,
        kind: "function",
        function: FunctionCall {
            name: call.name,
            arguments: call.arguments,
        },
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({"error": e.to_string()}))
}

/// Waits for the whole answer.
async fn whole_response(mut run: Run<'_>, out: Output) -> Result<Response, ApiError> {
    let (mut content, mut reasoning, mut calls, mut tokens) =
        (String::new(), String::new(), Vec::new(), Vec::new());
    let finish = loop {
        let step = run.next().await;
        tokens.extend(step.tokens);
        for piece in step.pieces {
            match piece {
                Piece::Content(t) => content.push_str(&t),
                Piece::Reasoning(t) => reasoning.push_str(&t),
                Piece::ToolCall(c) => calls.push(tool_call(c, None)),
            }
        }
        match step.end {
            Some(End::Finish(reason)) => break reason,
            Some(End::Failed(why)) => return Err(ApiError::new(500, why)),
            None => {}
        }
    };
    let usage = Some(run.usage.clone());
    let body = if out.chat {
        let message = Delta {
            role: Some("assistant"),
            content: (!content.is_empty() || calls.is_empty()).then_some(content),
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls: (!calls.is_empty()).then_some(calls),
        };
        let choice = ChatChoice {
            index: 0,
            message: Some(message),
            delta: None,
            logprobs: out.logprobs.then(|| chat_logprobs(&run.pipeline, &tokens)),
            finish_reason: Some(finish),
        };
        out.chat(vec![choice], usage, false)
    } else {
        let choice = CompletionChoice {
            index: 0,
            logprobs: out
                .logprobs
                .then(|| completion_logprobs(&run.pipeline, &tokens, 0)),
            text: content + &reasoning,
            finish_reason: Some(finish),
        };
        out.text(vec![choice], usage)
    };
    Ok(Json(body).into_response())
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// Streams the answer as server-sent events. The events receiver lives in the task that
/// feeds the body; when the client goes away the body is dropped, the task sees its
/// channel closed at once and ends, dropping the receiver (which cancels the request).
fn stream_response(
    tokenizer: Arc<Tokenizer>,
    events: mpsc::UnboundedReceiver<super::protocol::Event>,
    prompt_tokens: usize,
    stops: Vec<String>,
    parser: Option<ParserOptions>,
    mut out: Output,
    include_usage: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        let pipeline = Pipeline::new(&tokenizer, stops, parser);
        let mut run = Run::new(events, pipeline, prompt_tokens, out.logprobs);
        if out.chat {
            let first = ChatChoice {
                index: 0,
                message: None,
                delta: Some(Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    ..Delta::default()
                }),
                logprobs: None,
                finish_reason: None,
            };
            if tx
                .send(sse(&out.chat(vec![first], None, true)))
                .await
                .is_err()
            {
                return;
            }
        }
        loop {
            let step = tokio::select! {
                step = run.next() => step,
                _ = tx.closed() => return,
            };
            let end = step.end.clone();
            for chunk in out.chunks(&run, step) {
                if tx.send(sse(&chunk)).await.is_err() {
                    return;
                }
            }
            match end {
                None => continue,
                Some(End::Failed(why)) => {
                    let error = ApiError::new(500, why).body();
                    if tx.send(sse(&error)).await.is_err() {
                        return;
                    }
                }
                Some(End::Finish(_)) if include_usage => {
                    let usage = Some(run.usage.clone());
                    let chunk = if out.chat {
                        out.chat(Vec::new(), usage, true)
                    } else {
                        out.text(Vec::new(), usage)
                    };
                    if tx.send(sse(&chunk)).await.is_err() {
                        return;
                    }
                }
                Some(End::Finish(_)) => {}
            }
            break;
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| ApiError::new(500, "cannot build the response").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A handler that panics answers 500 in the error shape, and the server goes on.
    #[test]
    fn a_panicking_handler_answers_500() {
        async fn boom() -> Response {
            panic!("boom")
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(middleware::from_fn(catch_panic));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        let fetch = |path: &str| {
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            write!(
                conn,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut text = String::new();
            conn.read_to_string(&mut text).unwrap();
            text
        };
        for _ in 0..2 {
            let text = fetch("/boom");
            assert!(text.starts_with("HTTP/1.1 500"), "{text}");
            assert!(text.contains(r#""type":"server_error""#), "{text}");
            assert!(fetch("/fine").ends_with("fine"));
        }
    }
}
