//! The `qwen3_5` command: `generate`, `chat`, `logits` and `bench` of `mlx_lm::cli`, for
//! Qwen 3.5 (its part is in `cli.rs`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::set_mlx_environment();
    mlx_lm::cli::main::<cli::Qwen35>()
}
