//! Chat template tests: the Qwen 3.5 template rendered by minijinja against renderings made
//! by transformers' own `render_jinja_template` (tests/fixtures/chat_template.json, from
//! tests/oracle/gen_tokenizer.py), plus loading from a model folder and error cases.
//!
//! examples/qwen3_5/tests/fixtures/qwen3_5_chat_template.jinja is Qwen 3.5's published
//! template (the one of Qwen/Qwen3.5-27B) with the generation tail of the small models
//! (0.8B–9B), whose thinking is off unless `enable_thinking=true`.

use std::path::{Path, PathBuf};

use mlx_lm::chat::{ChatError, ChatOptions, ChatTemplate, Message, Role};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Qwen 3.5's template stays with the Qwen 3.5 example, whose tests and README use it too.
fn qwen_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/qwen3_5/tests/fixtures/qwen3_5_chat_template.jinja");
    std::fs::read_to_string(path).unwrap()
}

fn qwen() -> ChatTemplate {
    ChatTemplate::new(qwen_source()).unwrap()
}

fn oracle() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("chat_template.json")).unwrap())
        .unwrap()
}

fn options_of(kwargs: &Value) -> ChatOptions {
    ChatOptions {
        add_generation_prompt: kwargs
            .get("add_generation_prompt")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        enable_thinking: kwargs.get("enable_thinking").and_then(Value::as_bool),
        tools: kwargs.get("tools").cloned(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3_5-chat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn qwen_template_renders_like_transformers() {
    let template = qwen();
    let fx = oracle();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let got = template
            .render_json(&case["messages"], &options_of(&case["kwargs"]))
            .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(
            got,
            case["expected"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
    }
}

/// A template is untrusted input: loops and text are bounded by the rendering budget, with
/// [`ChatError::Budget`]; the real template with a long conversation stays well inside it.
#[test]
fn rendering_is_bounded_by_the_budget() {
    let cases = [
        (
            "nested loops",
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        ),
        (
            "string doubling",
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        ),
        ("string repetition", "{{ 'abcd' * 1099511627776 }}"),
        (
            "output in a loop",
            "{% for i in range(100000) %}{{ 'y' * 100000 }}{% endfor %}",
        ),
    ];
    for (case, source) in cases {
        let started = std::time::Instant::now();
        let err = ChatTemplate::new(source)
            .unwrap()
            .render(&[Message::user("hi")], &ChatOptions::default())
            .expect_err(case);
        assert!(matches!(err, ChatError::Budget { .. }), "{case}: {err}");
        assert!(
            err.to_string()
                .contains("exceeded its budget of 16777216 steps"),
            "{case}: {err}"
        );
        assert!(
            started.elapsed().as_secs() < 20,
            "{case}: {:?}",
            started.elapsed()
        );
    }
    // A smaller budget, set by the caller, is the one reported.
    let mut t = ChatTemplate::new("{% for i in range(1000) %}{{ i }}{% endfor %}").unwrap();
    t.set_budget(100);
    assert_eq!(t.budget(), 100);
    let err = t.render_context(&json!({})).unwrap_err();
    assert!(err.to_string().contains("budget of 100 steps"), "{err}");
    // The Qwen 3.5 template, 300 turns: fine.
    let mut messages = Vec::new();
    for i in 0..300 {
        messages.push(Message::user(format!(
            "question {i} {}",
            "word ".repeat(100)
        )));
        messages.push(Message::assistant(format!(
            "answer {i} {}",
            "word ".repeat(100)
        )));
    }
    let text = qwen().render(&messages, &ChatOptions::default()).unwrap();
    assert!(text.contains("answer 299"));
}

#[test]
fn qwen_template_errors_like_transformers() {
    let template = qwen();
    for case in oracle()["errors"].as_array().unwrap() {
        let err = template
            .render_json(&case["messages"], &options_of(&case["kwargs"]))
            .unwrap_err();
        let want = case["message"].as_str().unwrap();
        assert!(matches!(err, ChatError::Render(_)), "{err}");
        assert!(
            err.to_string().contains(want),
            "case {}: {err}",
            case["name"]
        );
    }
}

#[test]
fn python_compatible_snippets_render_like_jinja2() {
    for case in oracle()["snippets"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let template = ChatTemplate::new(case["template"].as_str().unwrap()).unwrap();
        let result = template
            .render_context(&case["context"])
            .map_err(|e| e.to_string());
        match (case["expected"].as_str(), case["error"].as_str()) {
            (Some(want), _) => assert_eq!(result.unwrap(), want, "snippet {name}"),
            (None, Some(msg)) => {
                let err = result.unwrap_err();
                assert!(err.contains(msg), "snippet {name}: {err}");
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn thinking_switch_changes_only_the_generation_prompt() {
    let template = qwen();
    let messages = [
        Message::system("Be brief."),
        Message::user("Why is the sky blue?"),
    ];
    let base = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n";
    let render = |thinking| {
        template
            .render(
                &messages,
                &ChatOptions {
                    enable_thinking: thinking,
                    ..ChatOptions::default()
                },
            )
            .unwrap()
    };
    assert_eq!(render(Some(true)), format!("{base}<think>\n"));
    assert_eq!(
        render(Some(false)),
        format!("{base}<think>\n\n</think>\n\n")
    );
    // Small Qwen 3.5 models do not think unless asked.
    assert_eq!(render(None), render(Some(false)));
    let no_prompt = template
        .render(
            &messages,
            &ChatOptions {
                add_generation_prompt: false,
                ..ChatOptions::default()
            },
        )
        .unwrap();
    assert_eq!(no_prompt, base.trim_end_matches("<|im_start|>assistant\n"));
}

#[test]
fn multi_turn_drops_old_reasoning_and_keeps_answers() {
    let template = qwen();
    let messages = [
        Message::user("2+2?"),
        Message::assistant("<think>\nadd them\n</think>\n\n4"),
        Message::user("times 3?"),
    ];
    let out = template.render(&messages, &ChatOptions::default()).unwrap();
    assert_eq!(
        out,
        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n\
         <|im_start|>user\ntimes 3?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    assert!(!out.contains("add them"));
}

#[test]
fn typed_messages_serialize_roles_and_reasoning() {
    let template = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}:{{ m.content }}\
         {% if m.reasoning_content is defined %}[{{ m.reasoning_content }}]{% endif %};{% endfor %}",
    )
    .unwrap();
    let mut reply = Message::assistant("4");
    reply.reasoning_content = Some("sum".into());
    let messages = [
        Message::system("s"),
        Message::user("u"),
        reply,
        Message::new(Role::Tool, "t"),
    ];
    assert_eq!(
        template.render(&messages, &ChatOptions::default()).unwrap(),
        "system:s;user:u;assistant:4[sum];tool:t;"
    );
}

#[test]
fn loads_from_tokenizer_config_string_list_and_jinja_file() {
    let source = qwen_source();
    let messages = [Message::user("Hi!")];
    let want = qwen().render(&messages, &ChatOptions::default()).unwrap();

    // 1. chat_template as a string in tokenizer_config.json.
    let dir = temp_dir("config");
    let config = json!({"chat_template": source, "eos_token": "<|im_end|>",
                        "pad_token": {"content": "<|endoftext|>"}, "bos_token": null});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let t = ChatTemplate::from_model_dir(&dir).unwrap();
    assert_eq!(t.render(&messages, &ChatOptions::default()).unwrap(), want);

    // 2. a list of named templates: "default" is used.
    let dir = temp_dir("list");
    let config = json!({"chat_template": [
        {"name": "tool_use", "template": "TOOLS"},
        {"name": "default", "template": source},
    ]});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let t = ChatTemplate::from_model_dir(&dir).unwrap();
    assert_eq!(t.render(&messages, &ChatOptions::default()).unwrap(), want);

    // 3. chat_template.jinja wins over the config's field.
    let dir = temp_dir("jinja");
    std::fs::write(dir.join("chat_template.jinja"), &source).unwrap();
    let config = json!({"chat_template": "WRONG", "eos_token": "<|im_end|>"});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let t = ChatTemplate::from_model_dir(&dir).unwrap();
    assert_eq!(t.render(&messages, &ChatOptions::default()).unwrap(), want);
}

#[test]
fn special_token_strings_are_visible_to_the_template() {
    let dir = temp_dir("specials");
    let config = json!({"chat_template": "{{ eos_token }}|{{ pad_token }}|{{ bos_token is defined }}",
                        "eos_token": "<|im_end|>", "pad_token": {"content": "<|endoftext|>"},
                        "bos_token": null});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let t = ChatTemplate::from_model_dir(&dir).unwrap();
    assert_eq!(
        t.render(&[], &ChatOptions::default()).unwrap(),
        "<|im_end|>|<|endoftext|>|False"
    );
}

#[test]
fn missing_or_broken_templates_are_clear_errors() {
    let empty = temp_dir("empty");
    let err = ChatTemplate::from_model_dir(&empty).unwrap_err();
    assert!(matches!(err, ChatError::Missing(_)), "{err}");
    assert!(err.to_string().contains("no chat template"), "{err}");

    let bad_json = temp_dir("badjson");
    std::fs::write(bad_json.join("tokenizer_config.json"), "{oops").unwrap();
    let err = ChatTemplate::from_model_dir(&bad_json).unwrap_err();
    assert!(matches!(err, ChatError::Config { .. }), "{err}");

    let wrong_type = temp_dir("wrongtype");
    std::fs::write(
        wrong_type.join("tokenizer_config.json"),
        r#"{"chat_template": 42}"#,
    )
    .unwrap();
    let err = ChatTemplate::from_model_dir(&wrong_type).unwrap_err();
    assert!(matches!(err, ChatError::Config { .. }), "{err}");

    let err = ChatTemplate::new("{% for m in messages %}{{ m.content }").unwrap_err();
    assert!(matches!(err, ChatError::Syntax(_)), "{err}");

    // A runtime error that is not raise_exception still surfaces as an error.
    let t = ChatTemplate::new("{{ messages[0].content.nosuchmethod() }}").unwrap();
    let err = t
        .render(&[Message::user("x")], &ChatOptions::default())
        .unwrap_err();
    assert!(matches!(err, ChatError::Render(_)), "{err}");
}

#[test]
fn html_characters_are_never_escaped() {
    let t = ChatTemplate::new("{{ messages[0].content }}").unwrap();
    let text = "<b>&\"'</b>";
    assert_eq!(
        t.render(&[Message::user(text)], &ChatOptions::default())
            .unwrap(),
        text
    );
}
