//! Bad input, overload and disconnects: every error in OpenAI's shape, and the server still
//! answering afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::chat::wait_closed;
use crate::common::{error_of, post, post_raw, server, stuck_server, Script, Server};
use mlx_lm::serve::http::HttpOptions;

fn still_answers(s: &Server) {
    s.set(Script::Text {
        text: "ok".into(),
        cached: 0,
    });
    let (status, r) = post(
        s,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        (status, &r["choices"][0]["message"]["content"]),
        (200, &json!("ok")),
        "{r}"
    );
}

#[test]
fn bad_requests_name_the_parameter() {
    let s = server(HttpOptions::default());
    let chat = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", json!({"model": "m"}), 400, None),
        (
            "/v1/chat/completions",
            chat(json!({"messages": []})),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"messages": "hi"})),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"messages": [{"role": "wizard", "content": "x"}]})),
            400,
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"messages": [{"role": "user", "content": 5}]})),
            400,
            Some("messages[0].content"),
        ),
        (
            "/v1/chat/completions",
            chat(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            ),
            400,
            Some("messages[0].content[0]"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"temperature": "hot"})),
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"temperature": 2.5})),
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"temperature": -0.1})),
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"top_p": 0})),
            400,
            Some("top_p"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"top_p": 1.5})),
            400,
            Some("top_p"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"top_k": -2})),
            400,
            Some("top_k"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"min_p": 2})),
            400,
            Some("min_p"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"presence_penalty": 3})),
            400,
            Some("presence_penalty"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"frequency_penalty": -2.5})),
            400,
            Some("frequency_penalty"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"repetition_penalty": 0})),
            400,
            Some("repetition_penalty"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_tokens": 0})),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_completion_tokens": -1})),
            400,
            Some("max_completion_tokens"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_tokens": 1.5})),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"logprobs": true, "top_logprobs": 21})),
            400,
            Some("top_logprobs"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"n": 2})),
            400,
            Some("n"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"stop": 5})),
            400,
            Some("stop"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"stream": "yes"})),
            400,
            Some("stream"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"tool_choice": "sometimes"})),
            400,
            Some("tool_choice"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"tool_choice": "required"})),
            400,
            Some("tool_choice"),
        ),
        (
            "/v1/chat/completions",
            chat(
                json!({"tools": [{"type": "function", "function": {"name": "a"}}],
                        "tool_choice": {"type": "function", "function": {"name": "b"}}}),
            ),
            400,
            Some("tool_choice"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"chat_template_kwargs": {"enable_thinking": "yes"}})),
            400,
            Some("chat_template_kwargs.enable_thinking"),
        ),
        ("/v1/chat/completions", json!([1, 2]), 400, None),
        (
            "/v1/completions",
            json!({"prompt": "x", "echo": true}),
            400,
            Some("echo"),
        ),
        (
            "/v1/completions",
            json!({"prompt": ["a", "b"]}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [1, 999999]}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": []}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "logprobs": 30}),
            400,
            Some("logprobs"),
        ),
        ("/v1/completions", json!({}), 400, None),
    ];
    for (path, body, want_status, param) in cases {
        let (status, r) = post(&s, path, &body);
        assert_eq!(status, want_status, "{body}: {r}");
        let e = error_of(status, &r);
        if let Some(param) = param {
            assert_eq!(e["param"], param, "{body}: {r}");
        }
    }
    still_answers(&s);
}

#[test]
fn axum_rejections_and_routes_in_the_error_shape() {
    let s = server(HttpOptions {
        max_body_bytes: 1000,
        ..Default::default()
    });
    let cases: Vec<(&str, &str, String, u16)> = vec![
        (
            "/v1/chat/completions",
            "application/json",
            "{not json".into(),
            400,
        ),
        ("/v1/chat/completions", "text/plain", "{}".into(), 415),
        (
            "/v1/completions",
            "application/x-www-form-urlencoded",
            "a=b".into(),
            415,
        ),
        (
            "/v1/chat/completions",
            "application/json",
            format!("{{\"messages\": \"{}\"}}", "x".repeat(2000)),
            413,
        ),
        ("/v1/nothing", "application/json", "{}".into(), 404),
    ];
    for (path, content_type, body, want) in cases {
        let (status, r) = post_raw(&s, path, content_type, &body);
        assert_eq!(status, want, "{path} {content_type}: {r}");
        error_of(status, &r);
    }
    let (status, r) = crate::common::get(&s, "/v1/chat/completions");
    assert_eq!(status, 405);
    error_of(status, &r);
    still_answers(&s);
}

#[test]
fn prompt_longer_than_the_context() {
    let s = server(HttpOptions {
        max_context: 50,
        ..Default::default()
    });
    let (status, r) = post(&s, "/v1/completions", &json!({"prompt": vec![1; 60]}));
    assert_eq!(status, 400);
    let e = error_of(status, &r);
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("60") && msg.contains("50"), "{msg}");
    assert_eq!(
        (&e["param"], &e["code"]),
        (&json!("prompt"), &json!("context_length_exceeded"))
    );
    let (status, r) = post(
        &s,
        "/v1/completions",
        &json!({"prompt": vec![1; 30], "max_tokens": 30}),
    );
    assert_eq!(status, 400);
    let msg = error_of(status, &r)["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("50") && msg.contains("60") && msg.contains("30"),
        "{msg}"
    );
    let long = "word ".repeat(20);
    let (status, r) = post(
        &s,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": long}]}),
    );
    assert_eq!(status, 400);
    assert_eq!(error_of(status, &r)["param"], "messages");
    post(
        &s,
        "/v1/completions",
        &json!({"prompt": vec![1; 30], "max_tokens": 20}),
    );
    assert_eq!(s.last_seen().max_tokens, 20);
}

#[test]
fn queue_full_is_429() {
    let (s, _queue) = stuck_server(1);
    let body = json!({"prompt": "x"});
    // Fill the one place of the queue from here: the engine never takes it.
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    s.handle
        .submit(mlx_lm::serve::protocol::Submission {
            save_at: Vec::new(),
            prompt: vec![1],
            max_tokens: 1,
            sampling: Default::default(),
            logprobs: None,
            events: tx,
        })
        .unwrap();
    for _ in 0..2 {
        let (status, r) = post(&s, "/v1/completions", &body);
        assert_eq!(status, 429, "{r}");
        error_of(status, &r);
    }
    assert_eq!(crate::common::get(&s, "/health").0, 200);
}

#[test]
fn not_ready_or_stopped_is_503() {
    let s = server(HttpOptions::default());
    s.status.ready.store(false, Ordering::SeqCst);
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let (status, r) = post(&s, "/v1/chat/completions", &body);
    assert_eq!(status, 503, "{r}");
    error_of(status, &r);
    s.status.ready.store(true, Ordering::SeqCst);
    still_answers(&s);
    *s.status.stopped.lock().unwrap() = Some("out of memory".into());
    let (status, r) = post(&s, "/v1/completions", &json!({"prompt": "x"}));
    assert_eq!(status, 503);
    assert!(error_of(status, &r)["message"]
        .as_str()
        .unwrap()
        .contains("out of memory"));
}

#[test]
fn engine_failure_is_500() {
    let s = server(HttpOptions::default());
    s.set(Script::Fail("the device is lost".into()));
    let (status, r) = post(&s, "/v1/completions", &json!({"prompt": "x"}));
    assert_eq!(status, 500);
    assert!(error_of(status, &r)["message"]
        .as_str()
        .unwrap()
        .contains("device is lost"));
    // Streamed: an error event, then [DONE].
    let events = crate::common::post_stream(
        &s,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    );
    assert_eq!(events.last().unwrap()["error"]["type"], "server_error");
    still_answers(&s);
}

#[test]
fn a_client_that_disconnects_cancels_the_request() {
    let s = server(HttpOptions::default());
    s.set(Script::Endless("tick ".into()));
    let body = json!({"messages": [{"role": "user", "content": "go"}], "stream": true}).to_string();
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // The role chunk and a few one-character deltas.
    while seen.matches("data: ").count() < 4 {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(!s.last_seen().closed);
    drop(conn);
    wait_closed(&s);
    still_answers(&s);
}
