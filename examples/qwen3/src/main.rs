//! The `qwen3` command: `generate`, `chat`, `logits` and `bench` of `mlx_lm::cli`, for
//! Qwen3 (its part is in `cli.rs`).

mod cli;

fn main() -> std::process::ExitCode {
    // First thing, while no other thread exists and before MLX reads the environment:
    // MLX 0.32's CUDA backend throws on every new CUDA graph once its graph cache has
    // missed 800 times in the process's life ("Cache thrashing is happening"), which a
    // long server run can reach; a miss costs time, not correctness, so the check is off
    // unless the user sets it.
    if std::env::var_os("MLX_ENABLE_CACHE_THRASHING_CHECK").is_none() {
        std::env::set_var("MLX_ENABLE_CACHE_THRASHING_CHECK", "0");
    }
    mlx_lm::cli::main::<cli::Qwen3Cli>()
}
