//! `serve --adapter-path`: the server runs the adapted model.

use std::path::Path;

use serde_json::json;

use super::serve_http::{assert_same_reply, generate, text, Server};
use super::{model_with_tokenizer, s, SPECIALS};

/// `serve --adapter-path` serves the adapted model: its greedy reply is `generate
/// --adapter-path`'s, and not the base model's.
#[test]
fn served_replies_take_an_adapter() {
    let model = model_with_tokenizer("mlx-bf16-untied", "serve-adapter", SPECIALS);
    let adapter = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora/dora-dense");
    let server = Server::start(&model, &["--adapter-path", s(&adapter)]);
    let max_tokens = 16;
    let prompt = "The quick brown fox";
    let adapted = ["--adapter-path", s(&adapter), "--raw", "--prompt", prompt];
    let (want, _, _) = generate(&model, &adapted, max_tokens);
    let (plain, _, _) = generate(&model, &["--raw", "--prompt", prompt], max_tokens);
    assert_ne!(want, plain, "the adapter changes the greedy reply");
    let completion = json!({"prompt": prompt, "temperature": 0, "max_tokens": max_tokens});
    assert_same_reply(&text(&server.ok("/v1/completions", &completion)), &want);
}
