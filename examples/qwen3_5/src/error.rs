//! The error type: the one of `mlx-lm`, so that model code, the shared language-model
//! pieces and MLX report through one path (`?` works across all three).

pub use mlx_lm::{Error, Result};
