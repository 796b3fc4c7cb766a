//! Shared helpers of the mlx-lm tests.

use std::path::{Path, PathBuf};

pub use crate::close::assert_close;
pub use crate::tiny_tokenizer::write_tiny_tokenizer;

/// The folder of the committed fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `f` with this thread's default CPU stream as the current stream.
pub fn cpu<T>(f: impl FnOnce() -> T) -> T {
    mlx_rs::with_device(&mlx_rs::Device::cpu(), f).unwrap()
}
