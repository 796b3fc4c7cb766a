//! The chat template and tokenizer path: fuzzed conversations (and fuzzed template
//! sources) rendered with `ChatTemplate`, the prompt encoded with `Tokenizer`, decoded
//! back, and streamed through `StreamDecoder`; plus decoding fuzzed token ids.
//!
//! Invariants: nothing panics; every id is inside the vocabulary; with a byte-level
//! tokenizer without normalizer, `decode(encode(text)) == text`; the stream decoder's
//! chunks always concatenate to `decode(ids)`; unknown ids are errors.
//!
//! Input: one flag byte, then parts separated by 0xFF (never in UTF-8): a template source
//! when flag 0x80 is set, then messages (first byte: role, rest: content); a part that
//! starts with `#` holds token ids (4 bytes each) to decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlx_fuzz::scratch;
use mlx_lm::chat::{ChatOptions, ChatTemplate, Message, Role};
use mlx_lm::tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::sync::OnceLock;

const QWEN_TEMPLATE: &str =
    include_str!("../../examples/qwen3_5/tests/fixtures/qwen3_5_chat_template.jinja");

/// GPT-2's byte-to-character table.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(0x100 + n).unwrap()
}

fn byte_str(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_char(b)).collect()
}

/// A tiny byte-level BPE tokenizer with the ChatML specials (as in the qwen3_5 tests),
/// with or without an NFC normalizer.
fn tiny_tokenizer(nfc: bool) -> Tokenizer {
    let mut vocab = serde_json::Map::new();
    for b in 0..=255u8 {
        vocab.insert(byte_str(&[b]), json!(b as u32));
    }
    let pieces: [&[u8]; 5] = [
        &[0xE4, 0xB8],
        &[0xAD, 0x20],
        &[0xF0, 0x9F],
        &[0x98, 0x80],
        "é".as_bytes(),
    ];
    let mut merges = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        vocab.insert(byte_str(p), json!(256 + i as u32));
        merges.push(json!([byte_str(&p[..1]), byte_str(&p[1..])]));
    }
    let added: Vec<Value> = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<think>",
        "</think>",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| {
        json!({"id": 261 + i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": !t.contains("think")})
    })
    .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": false, "use_regex": true});
    let normalizer = if nfc {
        json!({"type": "NFC"})
    } else {
        Value::Null
    };
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": byte_level, "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
                  "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    let path = scratch(if nfc {
        "tokenizer-nfc.json"
    } else {
        "tokenizer.json"
    });
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    Tokenizer::from_file(&path).expect("the tiny tokenizer loads")
}

fn tokenizers() -> &'static [Tokenizer; 2] {
    static T: OnceLock<[Tokenizer; 2]> = OnceLock::new();
    T.get_or_init(|| [tiny_tokenizer(false), tiny_tokenizer(true)])
}

fn qwen_template() -> &'static ChatTemplate {
    static T: OnceLock<ChatTemplate> = OnceLock::new();
    T.get_or_init(|| ChatTemplate::new(QWEN_TEMPLATE).expect("the Qwen template compiles"))
}

/// Streams `ids` and checks the chunks against the full decode.
fn check_stream(tok: &Tokenizer, ids: &[u32], skip_special: bool) {
    let full = tok.decode(ids, skip_special);
    let mut stream = tok.stream(skip_special);
    let mut text = String::new();
    for &id in ids {
        match stream.push(id) {
            Ok(chunk) => text.push_str(&chunk),
            Err(_) => {
                assert!(
                    full.is_err(),
                    "the stream rejects id {id}, decode accepts it"
                );
                return;
            }
        }
    }
    text.push_str(&stream.finish());
    assert!(!stream.has_pending());
    assert_eq!(
        text,
        full.expect("decode of known ids"),
        "stream vs decode of {ids:?}"
    );
}

fn check_text(tok: &Tokenizer, text: &str, exact: bool) {
    let ids = tok.encode(text).expect("encoding text");
    for &id in &ids {
        assert!(
            (id as usize) < tok.vocab_size(),
            "id {id} outside the vocabulary"
        );
    }
    let decoded = tok.decode(&ids, false).expect("decoding encoded ids");
    if exact {
        assert_eq!(decoded, text, "decode(encode(text)) != text for {ids:?}");
    }
    check_stream(tok, &ids, false);
    check_stream(tok, &ids, true);
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0xFF);
    let custom = if flags & 0x80 != 0 {
        let source = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        match ChatTemplate::new(source) {
            Ok(t) => Some(t),
            Err(_) => return,
        }
    } else {
        None
    };
    let template = custom.as_ref().unwrap_or_else(|| qwen_template());
    let nfc = flags & 0x40 != 0;
    let tok = &tokenizers()[nfc as usize];

    let mut messages = Vec::new();
    let mut ids = Vec::new();
    for part in parts {
        if let Some(raw) = part.strip_prefix(b"#") {
            ids.extend(
                raw.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % 300),
            );
            continue;
        }
        let (role, content) = part.split_first().unwrap_or((&0, &[]));
        let role = [Role::System, Role::User, Role::Assistant, Role::Tool][*role as usize % 4];
        let mut m = Message::new(role, String::from_utf8_lossy(content));
        if role == Role::Assistant && content.first() == Some(&b'r') {
            m.reasoning_content = Some(String::from_utf8_lossy(&content[1..]).into_owned());
        }
        messages.push(m);
    }
    let options = ChatOptions {
        add_generation_prompt: flags & 1 != 0,
        enable_thinking: match (flags >> 1) & 3 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        },
        tools: (flags & 8 != 0).then(|| {
            json!([{"type": "function", "function": {"name": "f", "description": "d",
                    "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}])
        }),
    };
    if let Ok(text) = template.render(&messages, &options) {
        check_text(tok, &text, !nfc);
    }
    // Fuzzed ids (0..300: some past the 266 known ids) decode or fail cleanly.
    let known = ids.iter().all(|&id| (id as usize) < tok.vocab_size());
    assert_eq!(tok.decode(&ids, false).is_ok(), known, "{ids:?}");
    check_stream(tok, &ids, false);
    check_stream(tok, &ids, true);
});
