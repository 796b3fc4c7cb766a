//! The `qwen3_5` command: generate, chat, logits.
//!
//! Every failure prints one line on stderr and exits non-zero: 2 for bad arguments, 1 for
//! anything else (missing files, offline hub, model errors).

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
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
