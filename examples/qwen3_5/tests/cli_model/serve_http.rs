//! `qwen3_5 serve` end to end: the built binary on a fixture model (bf16, CPU), spoken to
//! over real HTTP. Greedy replies equal `generate`'s, batched replies equal lone ones, a
//! second chat turn starts from the prefix cache and answers as a cold server does, bad
//! requests are answered 4xx in OpenAI's shape by the real engine (which goes on serving),
//! a client that hangs up frees its row, bad command lines fail at once, and the official
//! `openai` Python client reads what the server answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{ids_of, model_with_tokenizer, run, run_ok, s, BIN, SPECIALS};

/// A running `qwen3_5 serve`, killed when dropped (so a failing test leaves no server).
pub(super) struct Server {
    pub(super) child: Child,
    pub(super) port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the server on `model` with `--port 0 --device cpu` and `extra`; returns once
    /// `/health` answers 200.
    pub(super) fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--model",
                s(model),
                "--port",
                "0",
                "--device",
                "cpu",
            ])
            .args(extra)
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the qwen3_5 binary runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines): (_, Receiver<String>) = channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            port: 0,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("listening on http://127.0.0.1:") {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        server.port = digits.parse().unwrap();
                    }
                }
                Err(_) => panic!("no address printed: {}", server.log()),
            }
        }
        while Instant::now() < deadline {
            if let Ok((200, _)) = server.get("/health") {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("/health never answered 200: {}", server.log());
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(super) fn get(&self, path: &str) -> Result<(u16, Value), String> {
        answer(agent().get(&self.url(path)).call())
    }

    /// POSTs `body` (raw bytes, as JSON): (status, parsed body).
    fn post_raw(&self, path: &str, body: &[u8]) -> (u16, Value) {
        answer(
            agent()
                .post(&self.url(path))
                .set("Content-Type", "application/json")
                .send_bytes(body),
        )
        .unwrap_or_else(|e| panic!("POST {path}: {e}; server: {}", self.log()))
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().as_bytes())
    }

    /// A successful non-streamed request.
    #[track_caller]
    pub(super) fn ok(&self, path: &str, body: &Value) -> Value {
        let (status, reply) = self.post(path, body);
        assert_eq!(status, 200, "{body}: {reply}");
        reply
    }

    /// A streamed request: its chunks (the `data:` events before `[DONE]`).
    pub(super) fn stream(&self, path: &str, body: &Value) -> Vec<Value> {
        let mut body = body.clone();
        body["stream"] = json!(true);
        let response = agent()
            .post(&self.url(path))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
            .unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(response.content_type(), "text/event-stream");
        let mut chunks = Vec::new();
        for line in BufReader::new(response.into_reader()).lines() {
            let line = line.unwrap();
            let Some(data) = line.strip_prefix("data: ") else {
                assert!(line.is_empty(), "{line:?}");
                continue;
            };
            if data == "[DONE]" {
                return chunks;
            }
            chunks.push(serde_json::from_str(data).unwrap());
        }
        panic!("the stream ended without [DONE]: {chunks:?}");
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<(u16, Value), String> {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = response.status();
    let text = response.into_string().map_err(|e| e.to_string())?;
    let value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text:?}"))?;
    Ok((status, value))
}

/// The text of a chat or text completion, streamed or not.
pub(super) fn text(reply: &Value) -> String {
    let choice = &reply["choices"][0];
    if let Some(t) = choice["text"].as_str() {
        return t.to_string();
    }
    choice["message"]["content"].as_str().unwrap().to_string()
}

/// The text of a stream's chunks (chat deltas or text pieces), and its finish reason.
fn streamed_text(chunks: &[Value]) -> (String, String) {
    let mut out = String::new();
    let mut finish = String::new();
    for c in chunks {
        let Some(choice) = c["choices"].get(0) else {
            continue;
        };
        let piece = choice["text"]
            .as_str()
            .or_else(|| choice["delta"]["content"].as_str());
        out.push_str(piece.unwrap_or(""));
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (out, finish)
}

/// `generate` on the same model, greedy, no presence penalty: (reply, prompt tokens,
/// generated tokens).
pub(super) fn generate(model: &Path, extra: &[&str], max_tokens: usize) -> (String, usize, usize) {
    let n = max_tokens.to_string();
    let mut args = vec![
        "generate",
        "--model",
        s(model),
        "--temp",
        "0",
        "--presence-penalty",
        "0",
        "--max-tokens",
        &n,
        "--device",
        "cpu",
    ];
    args.extend(extra);
    let (stdout, stderr) = run_ok(&args, "");
    let count = |prefix: &str| -> usize {
        let line = stderr.lines().find(|l| l.starts_with(prefix)).unwrap();
        line[prefix.len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // The command adds a newline when the reply lacks one.
    let reply = stdout.strip_suffix('\n').unwrap_or(&stdout).to_string();
    (reply, count("Prompt: "), count("Generation: "))
}

#[track_caller]
pub(super) fn assert_same_reply(reply: &str, generated: &str) {
    // `generate` prints a newline after a reply unless it ends with one.
    assert!(
        reply == generated
            || format!("{reply}\n") == generated
            || reply == format!("{generated}\n"),
        "served {reply:?}, generated {generated:?}"
    );
}

#[test]
fn served_greedy_replies_equal_generate() {
    let model = model_with_tokenizer("mlx-bf16-untied", "serve-greedy", SPECIALS);
    let server = Server::start(&model, &[]);
    let max_tokens = 24;

    // Chat: the template applied as `generate` applies it.
    let chat = json!({
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Hello there"}],
        "temperature": 0, "max_tokens": max_tokens,
    });
    let (want, prompt_n, gen_n) = generate(
        &model,
        &["--system", "Be brief.", "--prompt", "Hello there"],
        max_tokens,
    );
    let whole = server.ok("/v1/chat/completions", &chat);
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    assert_same_reply(&text(&whole), &want);
    let usage = &whole["usage"];
    assert_eq!(usage["prompt_tokens"], prompt_n, "{whole}");
    assert_eq!(usage["completion_tokens"], gen_n, "{whole}");
    assert_eq!(usage["total_tokens"], prompt_n + gen_n, "{whole}");
    let finish = whole["choices"][0]["finish_reason"].as_str().unwrap();
    assert_eq!(finish == "length", gen_n == max_tokens, "{whole}");

    let mut streamed_req = chat.clone();
    streamed_req["stream_options"] = json!({"include_usage": true});
    let chunks = server.stream("/v1/chat/completions", &streamed_req);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    let (streamed, streamed_finish) = streamed_text(&chunks);
    assert_eq!(streamed, text(&whole));
    assert_eq!(streamed_finish, finish);
    // The last chunk carries the usage and no choice.
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]), "{last}");
    assert_eq!(last["usage"]["prompt_tokens"], prompt_n);
    assert_eq!(last["usage"]["completion_tokens"], gen_n);
    // The same request again: the same text (the prefix cache holds its prompt now).
    let again = server.ok("/v1/chat/completions", &chat);
    assert_eq!(text(&again), text(&whole));
    assert!(again["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64() > Some(0));

    // Text completion: the raw prompt, as `generate --raw`.
    let prompt = "The quick brown fox";
    let (want, prompt_n, gen_n) = generate(&model, &["--raw", "--prompt", prompt], max_tokens);
    let completion = json!({"prompt": prompt, "temperature": 0, "max_tokens": max_tokens});
    let whole = server.ok("/v1/completions", &completion);
    assert_eq!(whole["object"], "text_completion");
    assert_same_reply(&text(&whole), &want);
    assert_eq!(whole["usage"]["prompt_tokens"], prompt_n);
    assert_eq!(whole["usage"]["completion_tokens"], gen_n);
    let (streamed, _) = streamed_text(&server.stream("/v1/completions", &completion));
    assert_eq!(streamed, text(&whole));
    // Token ids as the prompt: the same reply.
    let ids = ids_of(prompt, SPECIALS);
    let by_ids = server.ok(
        "/v1/completions",
        &json!({"prompt": ids, "temperature": 0, "max_tokens": max_tokens}),
    );
    assert_eq!(text(&by_ids), text(&whole));
}

/// Chat requests of different lengths, greedy, streamed.
fn batch_requests() -> Vec<Value> {
    let users = [
        "Hi",
        "What is the capital of France?",
        "Tell me a long story about a cat and a dog who travel the world together.",
        "x",
        "Count: 1 2 3 4 5 6 7 8 9",
        "Why?",
    ];
    users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            json!({"messages": [{"role": "user", "content": u}],
                   "temperature": 0, "max_tokens": 6 + 5 * i})
        })
        .collect()
}

#[test]
fn concurrent_requests_get_their_lone_replies() {
    let model = model_with_tokenizer("mlx-bf16-untied", "serve-batch", SPECIALS);
    let server = Server::start(&model, &["--max-concurrency", "3", "--prefill-step", "4"]);
    let requests = batch_requests();
    let alone: Vec<String> = requests
        .iter()
        .map(|r| streamed_text(&server.stream("/v1/chat/completions", r)).0)
        .collect();
    // Not all the same (the comparison below could not tell requests apart otherwise).
    assert!(alone.iter().any(|a| a != &alone[0]), "{alone:?}");
    for round in 0..2 {
        let runs: Vec<(String, Instant, Instant)> = std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let server = &server;
                    scope.spawn(move || {
                        // Staggered, so that requests join while others decode.
                        std::thread::sleep(Duration::from_millis(15 * i as u64));
                        let t0 = Instant::now();
                        let text = streamed_text(&server.stream("/v1/chat/completions", r)).0;
                        (text, t0, Instant::now())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // They did run at the same time: some request started before another ended.
        let overlapping = runs
            .iter()
            .enumerate()
            .any(|(i, a)| runs[i + 1..].iter().any(|b| a.1 < b.2 && b.1 < a.2));
        assert!(
            overlapping,
            "round {round}: the requests ran one after another"
        );
        let together: Vec<String> = runs.into_iter().map(|r| r.0).collect();
        assert_eq!(together, alone, "round {round}");
    }
}

/// A two-turn chat: the second request (the first turn, its reply, a new question)
/// starts from the state the first one left, and answers as a server without the prefix
/// cache does.
#[test]
fn a_second_chat_turn_uses_the_prefix_cache() {
    let model = model_with_tokenizer("mlx-bf16-untied", "serve-prefix", SPECIALS);
    let cached = Server::start(&model, &[]);
    let cold = Server::start(&model, &["--prompt-cache-bytes", "0"]);
    let mut messages = vec![
        json!({"role": "system", "content": "You are a helpful assistant. Be brief."}),
        json!({"role": "user", "content": "Hello, who are you?"}),
    ];
    let turn = |server: &Server, messages: &[Value]| {
        server.ok(
            "/v1/chat/completions",
            &json!({"messages": messages, "temperature": 0, "max_tokens": 10}),
        )
    };
    let first = turn(&cached, &messages);
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(text(&first), text(&turn(&cold, &messages)));
    messages.push(json!({"role": "assistant", "content": text(&first)}));
    messages.push(json!({"role": "user", "content": "And what can you do?"}));
    let second = turn(&cached, &messages);
    let hit = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(hit > 0 && hit < prompt, "{second}");
    let cold_second = turn(&cold, &messages);
    assert_eq!(
        cold_second["usage"]["prompt_tokens_details"]["cached_tokens"],
        0
    );
    assert_eq!(text(&second), text(&cold_second));

    // Text completions that continue the previous prompt and reply start from the state
    // at the end of that reply, also when the client has hung up at once (the engine used
    // to skip saving it when it saw the client gone, which a whole-answer client always
    // is a moment after the last token). The saved state covers the reply's last token
    // too: the engine had started the step that feeds it before it read that token.
    for i in 0..6 {
        let prompt = format!("Story {i}: once upon a time");
        let body = |p: &str| json!({"prompt": p, "temperature": 0, "max_tokens": 9});
        let first = cached.ok("/v1/completions", &body(&prompt));
        let usage = &first["usage"];
        let seen =
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
        let next = format!("{prompt}{} and then", text(&first));
        let second = cached.ok("/v1/completions", &body(&next));
        assert_eq!(
            second["usage"]["prompt_tokens_details"]["cached_tokens"], seen,
            "{i}: {first} {second}"
        );
        assert_eq!(
            text(&second),
            text(&cold.ok("/v1/completions", &body(&next)))
        );
    }
}

/// Asserts an OpenAI error answer.
#[track_caller]
fn assert_error(answer: (u16, Value), status: u16, param: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    if let Some(p) = param {
        assert_eq!(error["param"], p, "{body}");
    }
}

#[test]
fn bad_requests_are_answered_and_the_server_goes_on() {
    let model = model_with_tokenizer("mlx-bf16-untied", "serve-bad", SPECIALS);
    let server = Server::start(
        &model,
        &[
            "--max-context",
            "64",
            "--max-body-bytes",
            "1K",
            "--max-concurrency",
            "1",
            "--model-id",
            "tiny-qwen",
        ],
    );
    let chat = "/v1/chat/completions";
    let good = json!({"messages": [{"role": "user", "content": "Hi"}],
                      "temperature": 0, "max_tokens": 8});
    let want = text(&server.ok(chat, &good));

    assert_error(server.post_raw(chat, b"{\"messages\": ["), 400, None);
    assert_error(server.post_raw(chat, b"[1, 2]"), 400, None);
    assert_error(
        server.post(chat, &json!({"messages": "hi"})),
        400,
        Some("messages"),
    );
    assert_error(
        server.post(
            chat,
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": "8"}),
        ),
        400,
        Some("max_tokens"),
    );
    assert_error(
        server.post(
            chat,
            &json!({"messages": [{"role": "wizard", "content": "Hi"}]}),
        ),
        400,
        Some("messages[0].role"),
    );
    assert_error(
        server.post(
            chat,
            &json!({"messages": [{"role": "user", "content": "Hi"}], "n": 2}),
        ),
        400,
        Some("n"),
    );
    // Longer than the context of 64 tokens (but under the body limit).
    let long = "word ".repeat(30);
    let (status, body) = server.post(
        chat,
        &json!({"messages": [{"role": "user", "content": long}]}),
    );
    assert_error((status, body.clone()), 400, Some("messages"));
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_error(
        server.post("/v1/completions", &json!({"prompt": long})),
        400,
        Some("prompt"),
    );
    // A reply that would not fit.
    assert_error(
        server.post(
            chat,
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 60}),
        ),
        400,
        Some("max_tokens"),
    );
    // Over the body limit of 1 KiB.
    let big = json!({"messages": [{"role": "user", "content": "a".repeat(2000)}]});
    assert_error(server.post(chat, &big), 413, None);
    // Unknown route.
    let (status, body) = server.get("/v1/nothing").unwrap();
    assert_eq!(status, 404, "{body}");

    // /v1/models lists the --model-id, and replies name it.
    let (status, models) = server.get("/v1/models").unwrap();
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny-qwen", "{models}");
    assert_eq!(models["data"].as_array().unwrap().len(), 1);

    // Still serving, and with the same answer.
    let again = server.ok(chat, &good);
    assert_eq!(text(&again), want);
    assert_eq!(again["model"], "tiny-qwen");
}

#[test]
fn a_client_that_hangs_up_frees_its_row() {
    let model = model_with_tokenizer("mlx-bf16-untied", "serve-hangup", SPECIALS);
    let server = Server::start(
        &model,
        &["--max-concurrency", "1", "--max-context", "1000000"],
    );
    let good = json!({"prompt": "Hi", "temperature": 0, "max_tokens": 8});
    let want = text(&server.ok("/v1/completions", &good));
    // A streamed request for 500000 tokens (many minutes of decoding) whose client hangs up
    // after a few chunks: the only row is freed, so the next requests complete at once.
    let mut conn = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = json!({"prompt": "Once upon a time", "stream": true, "temperature": 0,
                      "max_tokens": 500000})
    .to_string();
    write!(
        conn,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen).matches("data: ").count() < 3 {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend(&buf[..n]);
    }
    let seen = String::from_utf8_lossy(&seen).to_string();
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        !seen.contains("[DONE]") && !seen.contains("finish_reason\":\"stop"),
        "{seen}"
    );
    drop(conn);
    let t = Instant::now();
    for _ in 0..3 {
        assert_eq!(text(&server.ok("/v1/completions", &good)), want);
    }
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "{:?}: was the row freed?",
        t.elapsed()
    );
}

#[test]
fn serve_rejects_bad_command_lines() {
    let model = model_with_tokenizer("mlx-bf16-untied", "serve-cli", SPECIALS);
    let m = s(&model);
    for (args, needle) in [
        (vec!["--port", "99999"], "--port"),
        (vec!["--prompt-cache-bytes", "1X"], "--prompt-cache-bytes"),
        (vec!["--host", "not-a-host"], "--host not-a-host"),
    ] {
        let mut all = vec!["serve", "--model", m, "--device", "cpu"];
        if args[0] != "--port" {
            all.extend(["--port", "0"]);
        }
        all.extend(&args);
        let out = run(&all, "");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_ne!(out.status.code(), Some(0), "{all:?}");
        let line = stderr.trim_end();
        assert!(!line.contains('\n'), "{all:?}: {stderr:?}");
        assert!(
            line.starts_with("error: ") && line.contains(needle),
            "{stderr:?}"
        );
    }

    // A folder without weights: the server listens, then ends with the loading error.
    let empty = super::scratch("serve-no-weights");
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model.join(f), empty.join(f)).unwrap();
    }
    let t = Instant::now();
    let out = run(
        &[
            "serve",
            "--model",
            s(&empty),
            "--port",
            "0",
            "--device",
            "cpu",
        ],
        "",
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(stderr.trim_end().ends_with(errors[0]), "{stderr}");
    assert!(errors[0].contains("no model.safetensors"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The official `openai` Python client (from the provisioned oracle) reads the same texts
/// as raw HTTP, and raises `BadRequestError` (400) on a bad request.
#[test]
fn the_openai_python_client_reads_the_server() {
    let model = model_with_tokenizer("mlx-bf16-untied", "serve-openai", SPECIALS);
    let server = Server::start(&model, &["--model-id", "tiny-qwen"]);
    let max_tokens = 16;
    let chat = server.ok(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Hello there"}],
                "temperature": 0, "max_tokens": max_tokens}),
    );
    let completion = server.ok(
        "/v1/completions",
        &json!({"prompt": "The quick brown fox", "temperature": 0, "max_tokens": max_tokens}),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = oracle::python()
        .unwrap_or_else(|e| panic!("{e}"))
        .arg(&script)
        .args([&server.url("/v1"), "tiny-qwen", &max_tokens.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\nserver: {}", server.log());
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["chat"].as_str(), Some(text(&chat).as_str()), "{got}");
    assert_eq!(got["chat_stream"], got["chat"], "{got}");
    assert_eq!(got["chat_finish"], chat["choices"][0]["finish_reason"]);
    assert_eq!(got["chat_stream_finish"], got["chat_finish"]);
    let usage = json!([
        chat["usage"]["prompt_tokens"],
        chat["usage"]["completion_tokens"]
    ]);
    assert_eq!(got["chat_usage"], usage);
    assert_eq!(got["chat_stream_usage"], usage);
    assert_eq!(got["completion"].as_str(), Some(text(&completion).as_str()));
    assert_eq!(got["models"], json!(["tiny-qwen"]));
    assert_eq!(got["bad"], json!({"status": 400, "param": "n"}), "{got}");
}
