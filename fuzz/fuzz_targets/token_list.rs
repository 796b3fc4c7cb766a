//! The CLI's `--tokens` parser (`parse_token_list`) and the whole argument parser of the
//! `qwen3_5` binary. The CLI lives in the binary, not the library, so its `args.rs` is
//! compiled into this target as it is.
//!
//! Invariants: nothing panics; an accepted list has one id per comma-separated item,
//! each equal to the item's decimal value; rejected lists say which token is wrong;
//! clap accepts exactly what the parser accepts.
#![no_main]

#[allow(dead_code)]
#[path = "../../examples/qwen3_5/src/cli/args.rs"]
mod args;

use clap::Parser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(s) = std::str::from_utf8(rest) else {
            return;
        };
        match args::parse_token_list(s) {
            Ok(list) => {
                let items: Vec<&str> = s.split(',').collect();
                assert_eq!(list.0.len(), items.len(), "{s:?}");
                for (id, item) in list.0.iter().zip(&items) {
                    assert_eq!(item.trim().parse::<u128>().ok(), Some(*id as u128), "{s:?}");
                }
            }
            Err(msg) => {
                // The message names the bad item (as typed: control characters included;
                // the binary folds newlines into one stderr line).
                assert!(!msg.is_empty());
                assert!(
                    msg.starts_with("token ") || msg.starts_with("expected"),
                    "{msg:?}"
                );
            }
        }
        // The same text through clap, as the binary parses it.
        let argv = [
            "qwen3_5", "logits", "--model", "m", "--tokens", s, "--out", "x.npy",
        ];
        let parsed = args::Cli::try_parse_from(argv);
        assert_eq!(parsed.is_ok(), args::parse_token_list(s).is_ok(), "{s:?}");
    } else {
        // Arbitrary argument vectors (split at NUL bytes; lossy UTF-8 like the OS gives).
        let argv: Vec<String> = std::iter::once("qwen3_5".to_string())
            .chain(
                rest.split(|&b| b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned()),
            )
            .collect();
        if let Err(e) = args::Cli::try_parse_from(&argv) {
            let _ = e.to_string();
        }
    }
});
