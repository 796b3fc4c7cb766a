//! The integration tests of mlx-lm, in one test binary: each binary links MLX, and a
//! workspace's test binaries add up to gigabytes of disk on CI.
//!
//! - `cache`: the KV and recurrent caches (growth, snapshot and restore, batches);
//! - `tokenizer`: the real Qwen 3.5 vocabulary against its own encoder, and streaming
//!   detokenization;
//! - `chat`: chat templates against transformers' renderings;
//! - `sampling`: the sampler against mlx-lm's filters, penalties and seeded draws.

mod cache;
mod chat;
mod close;
mod common;
mod sampling;
mod tiny_tokenizer;
mod tokenizer;
