//! The `qwen3_5` command: `generate`, `chat`, `logits` and `bench` of `mlx_lm::cli`, for
//! Qwen 3.5 (its part is in `cli.rs`). The environment is read here and nowhere else.

mod cli;

use std::sync::OnceLock;

/// How many ops MLX's CUDA backend puts in one CUDA graph before handing it to the GPU
/// (MLX's default is 20). A decode step of the 2B is ~550 ops; on an H200, alternating the
/// two settings three times in one session, 100 decoded at 351/263/349 tokens/s against
/// 288/244/221 at the default.
const MAX_OPS_PER_BUFFER: &str = "100";

/// `MLX_MAX_OPS_PER_BUFFER` as this process runs with it (read once, in `main`).
static OPS_PER_BUFFER: OnceLock<Option<String>> = OnceLock::new();

/// `MLX_MAX_OPS_PER_BUFFER` as this process runs with it, for the bench report.
pub(crate) fn mlx_max_ops_per_buffer() -> Option<String> {
    OPS_PER_BUFFER.get().cloned().flatten()
}

/// Sets `MLX_MAX_OPS_PER_BUFFER` to [`MAX_OPS_PER_BUFFER`] unless the user has set it, so
/// that every command (and the `bench` peer, which inherits the environment) runs with
/// it; not on macOS, where Metal picks its own per device. Also turns off MLX's CUDA graph
/// cache thrashing check (see the body). Runs first thing in `main`, before MLX reads them
/// and while no other thread exists.
fn set_mlx_environment() {
    if cfg!(not(target_os = "macos")) && std::env::var_os("MLX_MAX_OPS_PER_BUFFER").is_none() {
        std::env::set_var("MLX_MAX_OPS_PER_BUFFER", MAX_OPS_PER_BUFFER);
    }
    // MLX 0.32's CUDA backend throws on every new CUDA graph once its graph cache has
    // missed 800 times in the process's life ("Cache thrashing is happening"): a server or
    // a long chat would then fail every step with a new graph. A miss costs time, not
    // correctness, so the check is off unless the user sets it.
    if std::env::var_os("MLX_ENABLE_CACHE_THRASHING_CHECK").is_none() {
        std::env::set_var("MLX_ENABLE_CACHE_THRASHING_CHECK", "0");
    }
    let _ = OPS_PER_BUFFER.set(std::env::var("MLX_MAX_OPS_PER_BUFFER").ok());
}

fn main() -> std::process::ExitCode {
    set_mlx_environment();
    mlx_lm::cli::main::<cli::Qwen35>()
}
