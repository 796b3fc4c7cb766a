//! The workspace root of the MLX Rust bindings.
//!
//! This package carries no library code of its own: it owns the workspace-level
//! examples (`examples/`), the integration tests (`tests/`) and `build.rs`, which puts
//! MLX's shared library on the run-time search path of those binaries. The libraries
//! are `mlx-sys` (raw FFI) and `mlx-rs` (the safe API).
#![deny(missing_docs)]
