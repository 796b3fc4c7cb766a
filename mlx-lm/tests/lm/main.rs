//! The integration tests of mlx-lm, in one test binary: each binary links MLX, and a
//! workspace's test binaries add up to gigabytes of disk on CI.
//!
//! - `cache`: the KV and recurrent caches (growth, snapshot and restore, batches);
//! - `tokenizer`: the real Qwen 3.5 vocabulary against its own encoder, and streaming
//!   detokenization;
//! - `chat`: chat templates against transformers' renderings;
//! - `sampling`: the sampler against mlx-lm's filters, penalties and seeded draws;
//! - `gated_delta`, `gated_delta_chunked`: the gated delta rule's decode forms (compiled
//!   step, CUDA/Metal kernels) and chunked prefill against the sequential reference;
//! - `glue`: the add + RMSNorm and SwiGLU kernels against MLX's ops (GPU only);
//! - `attention_kernel`: the CUDA attention decode kernels against MLX's ops (GPU only);
//! - `step_variants`: variants of the CUDA gated delta step kernel timed side by side (a
//!   GPU diagnostic, ignored);
//! - `linear`: a linear layer's products on the CPU kernels (`mlx_lm::linear`) against MLX's,
//!   and gradients through them;
//! - `lora`: the LoRA / DoRA layers (outputs, fused weights, gradients) against mlx-lm's,
//!   and the choice of the layers an adapter wraps.

mod attention_kernel;
mod cache;
mod chat;
mod close;
mod common;
mod gated_delta;
mod gated_delta_chunked;
mod glue;
mod linear;
mod lora;
mod quantized_gemv;
mod sampling;
mod small_batch;
mod step_variants;
mod tiny_tokenizer;
mod tokenizer;
