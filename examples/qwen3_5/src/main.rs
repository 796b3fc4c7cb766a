//! The `qwen3_5` command: generate, chat, logits.
//!
//! Every failure prints one line on stderr and exits non-zero: 2 for bad arguments, 1 for
//! anything else (missing files, offline hub, model errors).

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

/// How many ops MLX's CUDA backend puts in one CUDA graph before handing it to the GPU
/// (MLX's default is 20). A decode step of the 2B is ~550 ops; on an H200, alternating the
/// two settings three times in one session, 100 decoded at 351/263/349 tokens/s against
/// 288/244/221 at the default. Set here only when the user has not set it, before MLX
/// reads it, so every command (and the `bench` peer, which inherits the environment) runs
/// with it; not on macOS, where Metal picks its own per device.
const MAX_OPS_PER_BUFFER: &str = "100";

fn main() -> ExitCode {
    if cfg!(not(target_os = "macos")) && std::env::var_os("MLX_MAX_OPS_PER_BUFFER").is_none() {
        // No other thread exists yet.
        std::env::set_var("MLX_MAX_OPS_PER_BUFFER", MAX_OPS_PER_BUFFER);
    }
    // A bug must still end with one readable line, not a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("error: internal error: {}", cli::one_line(&message));
    }));

    let args = match cli::args::Cli::try_parse() {
        Ok(args) => args,
        Err(err) => {
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = err.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!("error: {} (see --help)", cli::usage_message(&err));
                    ExitCode::from(2)
                }
            };
        }
    };
    match cli::commands::run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", cli::one_line(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}
