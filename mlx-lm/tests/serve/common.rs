//! The stand-in engine, the server on a free port and a small HTTP client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mlx_lm::chat::ChatTemplate;
use mlx_lm::serve::http::{router, HttpOptions};
use mlx_lm::serve::protocol::{EngineHandle, EngineStatus, Event, Finish, Submission, TokenEvent};
use mlx_lm::tokenizer::Tokenizer;
use serde_json::Value;

pub fn tokenizer() -> Arc<Tokenizer> {
    static TOKENIZER: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("mlx-serve-tok-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            crate::tiny_tokenizer::write_tiny_tokenizer(&dir);
            Arc::new(Tokenizer::from_model_dir(&dir).unwrap())
        })
        .clone()
}

pub fn template() -> Arc<ChatTemplate> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/qwen3_5/tests/fixtures/qwen3_5_chat_template.jinja"
    );
    Arc::new(ChatTemplate::new(std::fs::read_to_string(path).unwrap()).unwrap())
}

/// The id of `<|im_end|>` in the tiny tokenizer (a special token: not shown).
pub const IM_END: u32 = 263;

/// What the stand-in saw of a submission.
#[derive(Debug, Clone)]
pub struct Seen {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: mlx_lm::SamplingParams,
    pub logprobs: Option<usize>,
    /// Set when the stand-in found the events receiver dropped.
    pub closed: bool,
}

/// How the stand-in answers.
#[derive(Clone)]
pub enum Script {
    /// Prefilled (with `cached` tokens), the text's tokens, `<|im_end|>`, Finished(Stop).
    Text { text: String, cached: usize },
    /// The text's tokens then Finished(Length).
    Length(String),
    /// The text's tokens with log-probabilities (top alternatives: ids 65, 66).
    Logprobs(String),
    /// The text, then more tokens every 20 ms until the receiver is dropped (up to 10 s).
    Endless(String),
    /// Failed at once.
    Fail(String),
}

pub struct Server {
    pub addr: SocketAddr,
    pub status: Arc<EngineStatus>,
    pub handle: EngineHandle,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub script: Arc<Mutex<Script>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    pub fn last_seen(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

fn tokens_of(text: &str) -> Vec<u32> {
    tokenizer().encode(text).unwrap()
}

fn answer(sub: Submission, script: &Script, seen: &Arc<Mutex<Vec<Seen>>>) {
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            prompt: sub.prompt.clone(),
            max_tokens: sub.max_tokens,
            sampling: sub.sampling.clone(),
            logprobs: sub.logprobs,
            closed: false,
        });
        seen.len() - 1
    };
    let ev = &sub.events;
    let token = |id: u32| {
        Event::Token(TokenEvent {
            id,
            logprob: None,
            top_logprobs: Vec::new(),
        })
    };
    let _ = ev.send(Event::Prefilled {
        prompt_tokens: sub.prompt.len(),
        cached_tokens: match script {
            Script::Text { cached, .. } => *cached,
            _ => 0,
        },
    });
    match script {
        Script::Text { text, .. } => {
            for id in tokens_of(text) {
                let _ = ev.send(token(id));
            }
            let _ = ev.send(token(IM_END));
            let _ = ev.send(Event::Finished(Finish::Stop));
        }
        Script::Length(text) => {
            for id in tokens_of(text) {
                let _ = ev.send(token(id));
            }
            let _ = ev.send(Event::Finished(Finish::Length));
        }
        Script::Logprobs(text) => {
            for id in tokens_of(text) {
                let _ = ev.send(Event::Token(TokenEvent {
                    id,
                    logprob: Some(-0.5),
                    top_logprobs: vec![(65, -0.25), (66, -1.5)],
                }));
            }
            let _ = ev.send(Event::Finished(Finish::Length));
        }
        Script::Endless(text) => {
            for id in tokens_of(text) {
                let _ = ev.send(token(id));
            }
            for _ in 0..500 {
                if ev.is_closed() {
                    seen.lock().unwrap()[index].closed = true;
                    return;
                }
                let _ = ev.send(token(b'x' as u32));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Script::Fail(why) => {
            let _ = ev.send(Event::Failed(why.clone()));
        }
    }
}

/// A server over a stand-in engine that answers one submission at a time (each on its own
/// thread, so an endless one does not block the next).
pub fn server(options: HttpOptions) -> Server {
    let (tx, rx) = sync_channel::<Submission>(4);
    let status = Arc::new(EngineStatus::default());
    status.ready.store(true, Ordering::SeqCst);
    let handle = EngineHandle::new(tx, status.clone(), 4);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(Script::Text {
        text: "Hello!".into(),
        cached: 0,
    }));
    {
        let (seen, script, status) = (seen.clone(), script.clone(), status.clone());
        std::thread::spawn(move || {
            for sub in rx {
                status.waiting.fetch_sub(1, Ordering::SeqCst);
                let script = script.lock().unwrap().clone();
                let seen = seen.clone();
                std::thread::spawn(move || answer(sub, &script, &seen));
            }
        });
    }
    serve(handle.clone(), status, seen, script, options)
}

/// A server whose engine never reads its queue (of `queue` places).
pub fn stuck_server(queue: usize) -> (Server, Receiver<Submission>) {
    let (tx, rx) = sync_channel::<Submission>(queue);
    let status = Arc::new(EngineStatus::default());
    status.ready.store(true, Ordering::SeqCst);
    let handle = EngineHandle::new(tx, status.clone(), queue);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(Script::Fail("unused".into())));
    let server = serve(handle, status, seen, script, HttpOptions::default());
    (server, rx)
}

fn serve(
    handle: EngineHandle,
    status: Arc<EngineStatus>,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<Script>>,
    options: HttpOptions,
) -> Server {
    let app = router(handle.clone(), tokenizer(), Some(template()), options);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            mlx_lm::serve::serve_http(listener, app, std::future::pending())
                .await
                .unwrap();
        });
    });
    Server {
        addr: addr_rx.recv().unwrap(),
        status,
        handle,
        seen,
        script,
    }
}

/// POSTs JSON; returns the status and the body parsed as JSON.
pub fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    post_raw(server, path, "application/json", &body.to_string())
}

pub fn post_raw(server: &Server, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let result = ureq::post(&server.url(path))
        .set("Content-Type", content_type)
        .send_string(body);
    read(result)
}

pub fn get(server: &Server, path: &str) -> (u16, Value) {
    read(ureq::get(&server.url(path)).call())
}

fn read(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, value)
}

/// POSTs a streamed request; returns the status and the events' JSON (`[DONE]` checked
/// last and left out).
pub fn post_stream(server: &Server, path: &str, body: &Value) -> Vec<Value> {
    let response = ureq::post(&server.url(path))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap();
    assert_eq!(response.content_type(), "text/event-stream");
    let mut events = Vec::new();
    let mut done = false;
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.unwrap();
        if line.is_empty() {
            continue;
        }
        assert!(!done, "data after [DONE]: {line}");
        let data = line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("{line}"));
        if data == "[DONE]" {
            done = true;
        } else {
            events.push(serde_json::from_str(data).unwrap());
        }
    }
    assert!(done, "no [DONE]");
    events
}

/// Checks an error body's shape; returns it.
pub fn error_of(status: u16, body: &Value) -> &Value {
    let e = &body["error"];
    assert!(e["message"].is_string(), "{body}");
    let kind = if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    assert_eq!(e["type"], kind, "{body}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
    e
}
