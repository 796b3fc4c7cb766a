//! The product of a few rows with a dense weight on a CUDA GPU, on tensor cores: the
//! weight products of a decode step of a batch of 2 to [`MAX_ROWS`] sequences.
//!
//! MLX 0.32 multiplies one row in its GEMV kernel and every product of more rows through
//! cuBLASLt, which builds matrix descriptors, asks its heuristic for an algorithm and is
//! captured into a child CUDA graph at every call. On an H100 that host work was most of
//! why a batch's decode step of the Qwen 3.5 2B took twice as long at 2 rows as at one,
//! with the GPU's own time unchanged (`examples/qwen3_5/benches/README.md`, "Where a
//! batch's step goes", session 19: 97 products a step, 1.1 ms of cuBLASLt calls alone).
//! Here each product is one plain kernel launch that reads the weight once and multiplies
//! 16 of its columns by every row with `mma.sync` (`mlx-lm/kernels/small_batch_gemm.cu.inc`).
//!
//! A row's result does not depend on the rest of the batch (its sums run in the same order
//! whatever else the batch holds), so a sequence decodes the same tokens in any batch that
//! stays on this kernel. It may differ in the last bit from the same row alone, which MLX's
//! GEMV multiplies.
//!
//! Qwen 3.5 on CUDA takes it for products of 2 to 16 rows by default
//! (`qwen3_5::ModelOptions::small_batch_rows`): on an H100 a served batch of 16 clients rose
//! from 1,641–2,478 to 2,565–2,689 tokens/s; at 32 rows it did not win every run
//! (`examples/qwen3_5/benches/README.md`, session 20).
//!
//! `examples/qwen3_5/tests/kernel_emulation/emulate_small_batch.py` runs the kernel's text
//! on the CPU with emulated warps and tensor-core fragments, `nvrtc_check.py` compiles it for
//! sm_90 as MLX does, and `tests/lm/small_batch.rs` runs the emulation (in CI) and compares
//! the kernel with MLX's matmul on a CUDA GPU.

use crate::error::{Error, Result};
use crate::kernels::gpu;
use mlx_rs::fast::{KernelConfig, TemplateArg};
use mlx_rs::{Array, Dtype};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The kernel's body.
pub const BODY: &str = include_str!("../../kernels/small_batch_gemm.cu.inc");
/// The kernel's header: the tensor-core multiply-accumulate.
pub const HEADER: &str = include_str!("../../kernels/small_batch_mma.cuh");
/// Warps per block; they split the weight's columns' `K` values between them.
pub const WARPS: i32 = 8;
/// The most rows the kernel takes (four tiles of 8).
pub const MAX_ROWS: i32 = 32;

/// Products built here so far, in this process (to check that a path took them).
static PRODUCTS: AtomicUsize = AtomicUsize::new(0);

/// Compiles the kernel for `dtype` (bfloat16 or float16) now, by running one small product:
/// MLX compiles a custom kernel with NVRTC at its first launch in a process (about 2 s on
/// an H100, measured as a first-token stall of a served batch), so a model that will use it
/// calls this at load instead of stalling its first batched step. One kernel serves every
/// batch size (its row tiles past the batch are skipped).
///
/// # Errors
/// Another dtype; MLX's errors (no CUDA GPU, or one without bfloat16 / float16 tensor-core
/// multiplies: before sm_80 NVRTC refuses the bfloat16 `mma`), after which a caller keeps
/// MLX's matmul.
pub fn compile(dtype: Dtype) -> Result<()> {
    let x = mlx_rs::ops::zeros(&[2, 32], dtype)?;
    let wt = mlx_rs::ops::zeros(&[32, 16], dtype)?;
    matmul(&x, &wt)?.eval()?;
    Ok(())
}

/// How many products [`matmul`] has built in this process.
pub fn products() -> usize {
    PRODUCTS.load(Ordering::Relaxed)
}

/// Whether the kernel takes `x · wt` with at most `max_rows` rows: `x` `[.., K]` of 2 to
/// `min(max_rows, MAX_ROWS)` rows in all, `wt` `[K, N]` in any layout, both bfloat16 or both
/// float16, `K` a multiple of 32 and `N` of 16.
pub fn fits(x: &Array, wt: &Array, max_rows: i32) -> bool {
    let most = max_rows.clamp(0, MAX_ROWS) as usize;
    if most < 2 {
        return false;
    }
    let (Some(&k), &[wk, n]) = (x.shape().last(), wt.shape()) else {
        return false;
    };
    // The launch counts its threads, 32 · WARPS per 16 columns, in an i32.
    let most_n = i32::MAX / (32 * WARPS) * 16;
    if k <= 0 || wk != k || n <= 0 || n > most_n || k % 32 != 0 || n % 16 != 0 || x.ndim() < 2 {
        return false;
    }
    (2..=most).contains(&(x.size() / k as usize))
        && wt.dtype() == x.dtype()
        && matches!(x.dtype(), Dtype::Bfloat16 | Dtype::Float16)
}

/// `x · wt` (`x` `[.., K]`, `wt` `[K, N]`; the result `[.., N]` in `x`'s dtype) on a CUDA
/// GPU. Fastest where `wt` is the transposed view of a row-major `[N, K]` weight (as
/// stored) and `x`'s rows are contiguous and 16-byte aligned; any other layout is read
/// value by value, without a copy.
///
/// # Errors
/// Shapes or dtypes the kernel does not take (see [`fits`] with [`MAX_ROWS`]); MLX's errors
/// (no CUDA GPU).
pub fn matmul(x: &Array, wt: &Array) -> Result<Array> {
    try_matmul(x, wt, MAX_ROWS)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "small-batch product: x {:?} ({:?}) and wt {:?} ({:?}) do not fit (x [.., K] of 2 \
             to {MAX_ROWS} rows, wt [K, N] of the same dtype, bfloat16 or float16, K a multiple \
             of 32, N of 16)",
            x.shape(),
            x.dtype(),
            wt.shape(),
            wt.dtype()
        ))
    })
}

/// [`matmul`] where the kernel takes the product with at most `max_rows` rows ([`fits`]),
/// `None` otherwise (the caller multiplies some other way): one check for a product on a
/// model's hot path.
///
/// # Errors
/// MLX's errors (no CUDA GPU).
pub fn try_matmul(x: &Array, wt: &Array, max_rows: i32) -> Result<Option<Array>> {
    if !fits(x, wt, max_rows) {
        return Ok(None);
    }
    let n = wt.dim(1);
    let mut out_shape = x.shape().to_vec();
    if let Some(last) = out_shape.last_mut() {
        *last = n;
    }
    let kern =
        gpu::cuda_kernel_any_layout("small_batch_mma", &["x", "wt"], &["out"], HEADER, BODY)?;
    let config = KernelConfig::new([32 * WARPS * (n / 16), 1, 1], [32 * WARPS, 1, 1])
        .output(&out_shape, x.dtype())
        .template("T", TemplateArg::Dtype(x.dtype()))
        .template("NT", TemplateArg::Int(MAX_ROWS / 8))
        .template("WARPS", TemplateArg::Int(WARPS));
    let out = kern.apply(&[x, wt], &config)?;
    let [out] = gpu::outputs(out, "small-batch product kernel")?;
    PRODUCTS.fetch_add(1, Ordering::Relaxed);
    Ok(Some(out))
}
