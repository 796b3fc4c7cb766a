//! Maintenance tasks: `cargo xtask bindings` regenerates `mlx-sys/src/bindings.rs` from
//! the mlx-c headers; `cargo xtask bindings --check` fails when the committed file has
//! drifted from them.
//!
//! bindgen needs libclang at generation time. Unless `LIBCLANG_PATH` is set, a pinned
//! libclang is installed from PyPI into mlx-sys's cache, which also makes the output
//! independent of the machine's clang.

use std::env;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bindings"] => write_bindings(),
        ["bindings", "--check"] => check_bindings(),
        _ => Err("usage: cargo xtask bindings [--check]".to_string()),
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("mlx-sys")
        .join("src")
        .join("bindings.rs")
}

fn write_bindings() -> Result<String, String> {
    let text = xtask::generate_bindings(&xtask::libclang_dir()?)?;
    std::fs::write(committed_path(), text).map_err(|e| e.to_string())?;
    Ok(format!("wrote {}", committed_path().display()))
}

fn check_bindings() -> Result<String, String> {
    let fresh = xtask::generate_bindings(&xtask::libclang_dir()?)?;
    let committed = std::fs::read_to_string(committed_path()).map_err(|e| e.to_string())?;
    xtask::compare(&committed, &fresh)?;
    Ok("mlx-sys/src/bindings.rs matches the mlx-c headers".into())
}
