//! Chat and text completions, whole and streamed.

use serde_json::{json, Value};

use crate::common::{get, post, post_stream, server, tokenizer, Script};
use mlx_lm::serve::http::HttpOptions;

fn user(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The streamed chat deltas joined: (content, reasoning, tool calls, finish reasons, usage).
fn join_chat(events: &[Value]) -> (String, String, Vec<Value>, Vec<String>, Option<Value>) {
    let (mut content, mut reasoning, mut calls, mut finishes, mut usage) =
        (String::new(), String::new(), Vec::new(), Vec::new(), None);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["id"], events[0]["id"]);
        if let Some(u) = e.get("usage") {
            assert_eq!(i, events.len() - 1, "usage comes last");
            assert_eq!(e["choices"], json!([]));
            usage = Some(u.clone());
            continue;
        }
        let choice = &e["choices"][0];
        let delta = &choice["delta"];
        if i == 0 {
            assert_eq!(delta["role"], "assistant");
        } else {
            assert!(delta.get("role").is_none());
        }
        content += delta["content"].as_str().unwrap_or("");
        reasoning += delta["reasoning_content"].as_str().unwrap_or("");
        if let Some(c) = delta["tool_calls"].as_array() {
            calls.extend(c.iter().cloned());
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finishes.push(f.to_string());
        }
    }
    (content, reasoning, calls, finishes, usage)
}

#[test]
fn models_and_health() {
    let s = server(HttpOptions {
        model_id: "tiny".into(),
        ..Default::default()
    });
    let (status, body) = get(&s, "/v1/models");
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], "tiny");
    assert_eq!(body["data"][0]["object"], "model");
    let (status, health) = get(&s, "/health");
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    assert_eq!(health["requests"], json!({"active": 0, "waiting": 0}));
    for key in ["mlx_active_bytes", "mlx_cache_bytes", "prefix_cache_bytes"] {
        assert!(health["memory"][key].is_u64(), "{key} in {health}");
    }
    s.status
        .ready
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(&s, "/health").0, 503);
}

#[test]
fn chat_whole() {
    let s = server(HttpOptions::default());
    s.set(Script::Text {
        text: "Hi there.".into(),
        cached: 3,
    });
    let body = with(
        user("Hello"),
        json!({"temperature": 0.5, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "seed": 7,
               "presence_penalty": 0.5, "frequency_penalty": 0.25, "repetition_penalty": 1.1,
               "max_tokens": 100, "user": "ignored", "some_new_field": {"x": 1}}),
    );
    let (status, r) = post(&s, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &r["choices"][0];
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": "Hi there."})
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    let seen = s.last_seen();
    let prompt = tokenizer().decode(&seen.prompt, false).unwrap();
    assert!(
        prompt.starts_with("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt}"
    );
    let n = seen.prompt.len();
    assert_eq!(
        r["usage"],
        json!({"prompt_tokens": n, "completion_tokens": 10, "total_tokens": n + 10,
               "prompt_tokens_details": {"cached_tokens": 3}})
    );
    assert_eq!(seen.max_tokens, 100);
    let p = &seen.sampling;
    assert_eq!(
        (p.temperature, p.top_p, p.top_k, p.min_p),
        (0.5, 0.9, 20, 0.05)
    );
    assert_eq!(
        (
            p.presence_penalty,
            p.frequency_penalty,
            p.repetition_penalty
        ),
        (0.5, 0.25, 1.1)
    );
    assert_eq!((p.seed, seen.logprobs), (Some(7), None));
}

#[test]
fn chat_streamed_with_usage() {
    let s = server(HttpOptions::default());
    s.set(Script::Text {
        text: "Streaming é 中 works.".into(),
        cached: 2,
    });
    let body = with(
        user("Hi"),
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let events = post_stream(&s, "/v1/chat/completions", &body);
    let (content, reasoning, calls, finishes, usage) = join_chat(&events);
    assert_eq!(content, "Streaming é 中 works.");
    assert_eq!((reasoning.as_str(), calls.len()), ("", 0));
    assert_eq!(finishes, ["stop"]);
    let usage = usage.expect("usage chunk");
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 2);
    assert_eq!(usage["prompt_tokens"], s.last_seen().prompt.len());
    // Without include_usage: no usage chunk.
    let events = post_stream(
        &s,
        "/v1/chat/completions",
        &with(user("Hi"), json!({"stream": true})),
    );
    assert!(join_chat(&events).4.is_none());
}

#[test]
fn stop_strings_split_across_tokens() {
    let s = server(HttpOptions::default());
    for stream in [false, true] {
        // The text goes on forever; the stop string cancels the request.
        s.set(Script::Endless("one two STOP three".into()));
        let body = with(
            user("Count"),
            json!({"stop": ["NEVER", "STOP"], "stream": stream}),
        );
        let (content, finish) = if stream {
            let (c, _, _, f, _) = join_chat(&post_stream(&s, "/v1/chat/completions", &body));
            (c, f[0].clone())
        } else {
            let (status, r) = post(&s, "/v1/chat/completions", &body);
            assert_eq!(status, 200, "{r}");
            let c = &r["choices"][0];
            (
                c["message"]["content"].as_str().unwrap().to_string(),
                c["finish_reason"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(
            (content.as_str(), finish.as_str()),
            ("one two ", "stop"),
            "stream {stream}"
        );
        wait_closed(&s);
    }
    // A single stop string; the stop matched in the last held-back text.
    s.set(Script::Length("abc\n\nxyz".into()));
    let (_, r) = post(
        &s,
        "/v1/chat/completions",
        &with(user("x"), json!({"stop": "\n\n"})),
    );
    assert_eq!(r["choices"][0]["message"]["content"], "abc");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    // Text that only looked like a stop string is returned.
    s.set(Script::Length("abST".into()));
    let (_, r) = post(
        &s,
        "/v1/chat/completions",
        &with(user("x"), json!({"stop": "STOP"})),
    );
    assert_eq!(r["choices"][0]["message"]["content"], "abST");
    assert_eq!(r["choices"][0]["finish_reason"], "length");
}

/// Waits until the stand-in saw the last request's receiver dropped.
pub fn wait_closed(s: &crate::common::Server) {
    for _ in 0..250 {
        if s.last_seen().closed {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the events receiver was not dropped");
}

const WEATHER_TOOL: &str = r#"{"type": "function", "function": {"name": "get_weather",
    "description": "Weather of a city", "parameters": {"type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}"#;

#[test]
fn tool_calls_in_both_formats() {
    let s = server(HttpOptions::default());
    let qwen = "I will check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";
    let hermes = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>";
    let tools: Value = serde_json::from_str(&format!("[{WEATHER_TOOL}]")).unwrap();
    for (text, content) in [(qwen, Some("I will check.\n\n")), (hermes, None)] {
        for stream in [false, true] {
            s.set(Script::Text {
                text: text.into(),
                cached: 0,
            });
            let body = with(
                user("Weather in Paris?"),
                json!({"tools": tools, "tool_choice": "auto", "stream": stream}),
            );
            let (got_content, calls, finish) = if stream {
                let (c, _, calls, f, _) =
                    join_chat(&post_stream(&s, "/v1/chat/completions", &body));
                (
                    if c.is_empty() { None } else { Some(c) },
                    calls,
                    f[0].clone(),
                )
            } else {
                let (status, r) = post(&s, "/v1/chat/completions", &body);
                assert_eq!(status, 200, "{r}");
                let m = &r["choices"][0]["message"];
                (
                    m["content"].as_str().map(String::from),
                    m["tool_calls"].as_array().unwrap().clone(),
                    r["choices"][0]["finish_reason"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            };
            assert_eq!(got_content.as_deref(), content, "{text} stream {stream}");
            assert_eq!(finish, "tool_calls");
            assert_eq!(calls.len(), 1);
            let call = &calls[0];
            assert!(call["id"].as_str().unwrap().starts_with("call_"));
            assert_eq!(call["type"], "function");
            assert_eq!(call["function"]["name"], "get_weather");
            let args: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(args, json!({"city": "Paris", "days": 3}));
            if stream {
                assert_eq!(call["index"], 0);
            }
            // The tools reached the template.
            let prompt = tokenizer().decode(&s.last_seen().prompt, false).unwrap();
            assert!(
                prompt.contains("get_weather") && prompt.contains("<tools>"),
                "{prompt}"
            );
        }
    }
    // tool_choice none: no tools in the prompt, and tool-call text stays content.
    s.set(Script::Text {
        text: hermes.into(),
        cached: 0,
    });
    let body = with(user("x"), json!({"tools": tools, "tool_choice": "none"}));
    let (_, r) = post(&s, "/v1/chat/completions", &body);
    assert_eq!(r["choices"][0]["message"]["content"], hermes);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let prompt = tokenizer().decode(&s.last_seen().prompt, false).unwrap();
    assert!(!prompt.contains("get_weather"), "{prompt}");
}

/// `tool_choice: "required"` or a named function: the prompt ends with the opening of a
/// call (in the template's own format, thinking off), and the reply parses as that call.
#[test]
fn tool_choice_required_or_named_forces_a_call() {
    let s = server(HttpOptions::default());
    let tools: Value = serde_json::from_str(&format!("[{WEATHER_TOOL}]")).unwrap();
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let rest = "<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>";
    let cases = [
        (
            json!("required"),
            "<tool_call>\n",
            format!("<function=get_weather>\n{rest}"),
        ),
        (
            named,
            "<tool_call>\n<function=get_weather>\n",
            rest.to_string(),
        ),
    ];
    for (choice, opening, reply) in cases {
        for stream in [false, true] {
            s.set(Script::Text {
                text: reply.clone(),
                cached: 0,
            });
            let body = with(
                user("Weather in Paris?"),
                json!({"tools": tools, "tool_choice": choice, "stream": stream,
                       "chat_template_kwargs": {"enable_thinking": true}}),
            );
            let (content, calls, finish) = if stream {
                let (c, _, calls, f, _) =
                    join_chat(&post_stream(&s, "/v1/chat/completions", &body));
                (c, calls, f[0].clone())
            } else {
                let (status, r) = post(&s, "/v1/chat/completions", &body);
                assert_eq!(status, 200, "{r}");
                let m = &r["choices"][0]["message"];
                let finish = r["choices"][0]["finish_reason"].as_str().unwrap();
                (
                    m["content"].as_str().unwrap_or("").to_string(),
                    m["tool_calls"].as_array().unwrap().clone(),
                    finish.to_string(),
                )
            };
            assert_eq!(content, "", "{choice} stream {stream}");
            assert_eq!(finish, "tool_calls");
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0]["function"]["name"], "get_weather");
            let args: Value =
                serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(args, json!({"city": "Paris"}));
            let prompt = tokenizer().decode(&s.last_seen().prompt, false).unwrap();
            let want_end = format!("</think>\n\n{opening}");
            assert!(prompt.ends_with(&want_end), "{choice}: {prompt:?}");
        }
    }
}

#[test]
fn a_tool_conversation_reaches_the_template() {
    let s = server(HttpOptions::default());
    let tools: Value = serde_json::from_str(&format!("[{WEATHER_TOOL}]")).unwrap();
    let body = json!({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Paris?"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}
    ], "tools": tools});
    let (status, r) = post(&s, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{r}");
    let prompt = tokenizer().decode(&s.last_seen().prompt, false).unwrap();
    for want in [
        "<|im_start|>system\n",
        "Be brief.",
        "Weather in Paris?",
        "<function=get_weather>",
        "<parameter=city>\nParis\n</parameter>",
        "<tool_response>\nSunny\n</tool_response>",
    ] {
        assert!(prompt.contains(want), "{want:?} not in {prompt}");
    }
}

#[test]
fn reasoning_content() {
    let s = server(HttpOptions::default());
    let thinking = json!({"chat_template_kwargs": {"enable_thinking": true}});
    for stream in [false, true] {
        s.set(Script::Text {
            text: "Let me think.\n</think>\n\nThe answer.".into(),
            cached: 0,
        });
        let body = with(with(user("Q"), thinking.clone()), json!({"stream": stream}));
        let (content, reasoning) = if stream {
            let (c, r, _, _, _) = join_chat(&post_stream(&s, "/v1/chat/completions", &body));
            (c, r)
        } else {
            let (_, r) = post(&s, "/v1/chat/completions", &body);
            let m = &r["choices"][0]["message"];
            (
                m["content"].as_str().unwrap().into(),
                m["reasoning_content"].as_str().unwrap().into(),
            )
        };
        assert_eq!(
            (content.as_str(), reasoning.as_str()),
            ("The answer.", "Let me think.\n")
        );
        let prompt = tokenizer().decode(&s.last_seen().prompt, false).unwrap();
        assert!(prompt.ends_with("<think>\n"), "{prompt}");
    }
    // Thinking off: the prompt closes the block; a <think> the model opens itself still parses.
    s.set(Script::Text {
        text: "<think>hm</think>Done".into(),
        cached: 0,
    });
    let (_, r) = post(
        &s,
        "/v1/chat/completions",
        &with(
            user("Q"),
            json!({"chat_template_kwargs": {"enable_thinking": false}}),
        ),
    );
    assert_eq!(
        r["choices"][0]["message"],
        json!({"role": "assistant", "content": "Done", "reasoning_content": "hm"})
    );
}

#[test]
fn logprobs_shapes() {
    let s = server(HttpOptions::default());
    s.set(Script::Logprobs("ab".into()));
    let (status, r) = post(
        &s,
        "/v1/chat/completions",
        &with(user("x"), json!({"logprobs": true, "top_logprobs": 2})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(s.last_seen().logprobs, Some(2));
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 2);
    assert_eq!(
        content[0],
        json!({"token": "a", "logprob": -0.5, "bytes": [97],
               "top_logprobs": [{"token": "A", "logprob": -0.25, "bytes": [65]},
                                {"token": "B", "logprob": -1.5, "bytes": [66]}]})
    );
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    // Streamed: every token's entry arrives once.
    let events = post_stream(
        &s,
        "/v1/chat/completions",
        &with(user("x"), json!({"logprobs": true, "stream": true})),
    );
    let tokens: Vec<Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["logprobs"]["content"].as_array().cloned())
        .flatten()
        .map(|t| t["token"].clone())
        .collect();
    assert_eq!(tokens, [json!("a"), json!("b")]);
    assert_eq!(s.last_seen().logprobs, Some(0));
    // Text completions: the legacy shape.
    let (status, r) = post(
        &s,
        "/v1/completions",
        &json!({"prompt": "x", "logprobs": 2}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["choices"][0]["logprobs"],
        json!({"tokens": ["a", "b"], "token_logprobs": [-0.5, -0.5],
               "top_logprobs": [{"A": -0.25, "B": -1.5}, {"A": -0.25, "B": -1.5}], "text_offset": [0, 1]})
    );
}

#[test]
fn text_completions() {
    let s = server(HttpOptions::default());
    s.set(Script::Length("<tool_call>raw text".into()));
    let (status, r) = post(
        &s,
        "/v1/completions",
        &json!({"model": "m", "prompt": "Once", "max_tokens": 5, "echo": false}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "text_completion");
    assert_eq!(r["choices"][0]["text"], "<tool_call>raw text");
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(s.last_seen().prompt, tokenizer().encode("Once").unwrap());
    assert_eq!(s.last_seen().max_tokens, 5);
    // Token ids and a list of one string.
    post(&s, "/v1/completions", &json!({"prompt": [1, 2, 3]}));
    assert_eq!(s.last_seen().prompt, [1, 2, 3]);
    post(&s, "/v1/completions", &json!({"prompt": ["Once"]}));
    assert_eq!(s.last_seen().prompt, tokenizer().encode("Once").unwrap());
    // Streamed.
    s.set(Script::Text {
        text: "upon a time".into(),
        cached: 1,
    });
    let events = post_stream(
        &s,
        "/v1/completions",
        &json!({"prompt": "Once", "stream": true, "stream_options": {"include_usage": true}}),
    );
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "upon a time");
    assert!(events.iter().all(|e| e["object"] == "text_completion"));
    let last = events.last().unwrap();
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
    assert_eq!(
        events[events.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
}

#[test]
fn max_tokens_defaults_to_what_the_context_leaves() {
    let s = server(HttpOptions {
        max_context: 100,
        default_max_tokens: 50,
        ..Default::default()
    });
    post(&s, "/v1/completions", &json!({"prompt": vec![1; 10]}));
    assert_eq!(s.last_seen().max_tokens, 50);
    post(&s, "/v1/completions", &json!({"prompt": vec![1; 80]}));
    assert_eq!(s.last_seen().max_tokens, 20);
    post(
        &s,
        "/v1/completions",
        &json!({"prompt": vec![1; 80], "max_completion_tokens": 20}),
    );
    assert_eq!(s.last_seen().max_tokens, 20);
}
