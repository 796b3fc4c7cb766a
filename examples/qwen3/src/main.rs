//! The `qwen3` command: `generate`, `chat`, `logits` and `bench` of `mlx_lm::cli`, for
//! Qwen3 (its part is in `cli.rs`).

mod cli;

fn main() -> std::process::ExitCode {
    mlx_lm::cli::main::<cli::Qwen3Cli>()
}
