//! A tiny byte-level BPE tokenizer written as `tokenizer.json`, for tests of streaming
//! detokenization and of programs that need some tokenizer. Shared with the qwen3_5 tests
//! (their `tests/common/mod.rs` includes this file).

use serde_json::{json, Value};
use std::path::Path;

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

/// Ids 0..=255 are the single bytes; then multi-byte pieces that cut characters:
/// 256 = E4 B8 (first 2/3 of '中'), 257 = AD 20 (last byte of '中' + space),
/// 258 = F0 9F (half an emoji), 259 = 98 80 (its other half), 260 = "é" whole;
/// added tokens 261 <|endoftext|>, 262 <|im_start|>, 263 <|im_end|>, 264 <think> (not special).
pub fn write_tiny_tokenizer(dir: &Path) {
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
    let added: Vec<Value> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": 261 + i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": *t != "<think>"})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": byte_level, "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
                  "byte_fallback": false, "ignore_merges": true, "vocab": vocab, "merges": merges}
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
}
