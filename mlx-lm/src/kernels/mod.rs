//! The shared kernels of the Qwen 3.5 / Qwen3-Next family, apart from the models that
//! call them.
//!
//! | module | what | device |
//! | --- | --- | --- |
//! | [`gated_delta`] | the gated delta rule of Gated DeltaNet layers: sequential ops, chunked prefill, compiled step, CUDA/Metal step and whole-layer decode kernels | all; kernels on a GPU |
//! | [`glue`] | a decode step's residual add and next RMSNorm, and its SwiGLU from the joined projection, one launch each | CUDA |
//! | [`attention`] | one decode token of gated attention: q/k norms + RoPE, then attention × gate | CUDA |
//! | [`cpu_gemm`] | float32 products of many rows in a packed SIMD GEMM (a weight as stored or transposed), handed back to MLX | CPU |
//! | [`cpu_quantized`] | float32 products with a 2-, 4- or 8-bit affine-quantized weight: a few rows group by group (decode, a batch's decode step), more rows through the weight dequantized on every thread, handed back to MLX | CPU |
//! | [`cpu_bf16`] | float32 products with a bfloat16 weight (a dense checkpoint as published): a few rows straight from the bfloat16 rows, more rows through the weight converted on every thread for the GEMM, handed back to MLX | CPU |
//! | [`cpu_attention`] | one query per sequence over a float32 KV cache (decode), handed back to MLX | CPU |
//! | [`compiled`] | a per-thread cache of compiled functions, and the small fused pieces of a decode step (SwiGLU, output gate, RMSNorm, add + RMSNorm) | all |
//! | [`gpu`] | what the GPU kernels share: backend, headers, built-kernel cache | GPU |
//! | [`quantized_gemv`] | the product of one row with a 4- or 8-bit affine-quantized weight (a quantized model's decode step), loads first and float32 sums | CUDA |
//! | [`small_batch`] | dense bfloat16 / float16 products of 2 to 32 rows (a served batch's decode step) on tensor cores, one launch each instead of cuBLASLt's per-call setup | CUDA |
//!
//! # How dispatch picks
//! A model makes its choices once, at load, and passes them as values: the
//! [`gated_delta::StepPath`] of a decode step ([`gated_delta::StepPath::fused_on`] the
//! model's device: the kernel of the GPU backend found at run time, else compiled ops; or
//! plain ops for a reference run), the [`gated_delta::Prefill`] form, and the
//! [`cpu_gemm::CpuProducts`] of a model on the CPU (a model on `mlx_rs::nn` layers passes
//! it to [`crate::linear::forward`], which picks the CPU kernel for each product). [`gated_delta::gated_delta_update`]
//! and [`gated_delta::gated_delta_decode`] dispatch on them; a kernel path falls back to
//! compiled ops for shapes its kernel does not take. Nothing here reads the environment or
//! a process-wide setting.
//!
//! The kernel sources live in `mlx-lm/kernels/` (one body per kernel shared by CUDA and
//! Metal, a short prologue per backend); `examples/qwen3_5/tests/kernel_emulation/` runs
//! them on the CPU with emulated warps and compiles the CUDA ones with NVRTC, without a GPU.

pub mod attention;
pub mod compiled;
pub mod cpu_attention;
pub mod cpu_bf16;
pub mod cpu_gemm;
pub mod cpu_quantized;
pub mod cpu_rows;
pub mod gated_delta;
pub mod glue;
pub mod gpu;
pub mod quantized_gemv;
pub mod small_batch;
