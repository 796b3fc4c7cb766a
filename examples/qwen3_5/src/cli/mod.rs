//! The `qwen3_5` command line: arguments, subcommands, and the model adapter they use.

pub mod args;
pub mod backend;
pub mod bench;
pub mod commands;
pub mod npy;

/// Folds a multi-line message onto one line (error output is one line per failure).
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one-line form of a clap error: its first paragraph (the message, without the usage
/// and tips that follow), e.g. `invalid value 'x' for '--temp <T>': 'x' is not a number`.
pub fn usage_message(err: &clap::Error) -> String {
    let text = err.to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let line = one_line(first);
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}
