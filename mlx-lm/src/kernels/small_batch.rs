//! The product of a few rows with a dense weight on a CUDA GPU, `x · wᵀ`: the weight
//! products of a decode step of a batch of 2 to [`MAX_ROWS`] sequences.
//!
//! MLX 0.32 runs a one-row product as its GEMV kernel and every product of more rows
//! through cuBLASLt, building the matrix descriptors and asking cuBLASLt for an algorithm
//! at each call (`CublasGemm` in `mlx/backend/cuda/gemms/cublas_gemm.cpp`). A served batch
//! of the 2B on an H200 stepped in 4.8 ms at 4 rows and at 14 rows against 2.4 ms at one
//! (`serve_bench.py`, 2026-12-04; inter-token p50), with some 97 such products per step;
//! whether cuBLASLt's per-call work is the cause is not measured yet. Here each warp reads
//! its weight rows once and multiplies them with every row of the batch
//! (`mlx-lm/kernels/small_batch_gemm.cu.inc`): one plain kernel launch per product.
//!
//! A row's result does not depend on the rest of the batch (each row's sums run in the
//! same order whatever the batch holds), so a sequence decodes the same tokens in any
//! batch that stays on this kernel.
//!
//! `examples/qwen3_5/tests/kernel_emulation/emulate_small_batch.py` runs the kernel's text
//! on the CPU with emulated warps; `tests/lm/small_batch.rs` compares it with MLX's matmul
//! on a CUDA GPU.

use crate::error::{Error, Result};
use crate::kernels::gpu::{self, GpuBackend};
use mlx_rs::fast::{KernelConfig, TemplateArg};
use mlx_rs::{Array, Dtype};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The kernel's body.
pub const BODY: &str = include_str!("../../kernels/small_batch_gemm.cu.inc");
/// Rows of `x` each block multiplies (a batch of more runs as several row groups).
pub const ROWS_PER_BLOCK: i32 = 8;
/// Weight rows each warp reads.
pub const COLS_PER_WARP: i32 = 2;
/// Warps per block.
pub const WARPS: i32 = 4;
/// The most rows a product takes here by default; above it MLX's matmul (cuBLASLt) does
/// the work. The kernel spends `ROWS_PER_BLOCK` fused multiply-adds per weight element
/// and row group, so at many rows it stops being bound by reading the weights.
pub const MAX_ROWS: i32 = 16;

/// Products built here so far, in this process (to check that a path took them).
static PRODUCTS: AtomicUsize = AtomicUsize::new(0);

/// How many products [`matmul_nt`] has built in this process.
pub fn products() -> usize {
    PRODUCTS.load(Ordering::Relaxed)
}

/// Whether the kernel takes `x · wᵀ`: `x` `[.., K]` with 2 to `max_rows` rows in all,
/// `w` `[N, K]` of `x`'s dtype (float32, float16 or bfloat16), `K` a multiple of 8.
pub fn fits(x: &Array, w: &Array, max_rows: i32) -> bool {
    let (Some(&k), [n, wk]) = (x.shape().last(), w.shape()) else {
        return false;
    };
    let rows = if k > 0 { x.size() / k as usize } else { 0 };
    (2..=max_rows.max(1) as usize).contains(&rows)
        && *wk == k
        && *n > 0
        && k % 8 == 0
        && w.dtype() == x.dtype()
        && matches!(x.dtype(), Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
}

/// `x · wᵀ` (`x` `[.., K]`, `w` `[N, K]`; the result `[.., N]`, `x`'s dtype) on a CUDA GPU.
///
/// # Errors
/// Shapes or dtypes the kernel does not take (see [`fits`] with `max_rows` unbounded);
/// MLX's errors (no CUDA GPU).
pub fn matmul_nt(x: &Array, w: &Array) -> Result<Array> {
    if !fits(x, w, i32::MAX) {
        return Err(Error::InvalidArgument(format!(
            "small-batch product: x {:?} ({:?}) and w {:?} ({:?}) do not fit (x [rows >= 2, K], \
             w [N, K] of the same float dtype, K a multiple of 8)",
            x.shape(),
            x.dtype(),
            w.shape(),
            w.dtype()
        )));
    }
    let k = w.dim(1);
    let n = w.dim(0);
    let rows = (x.size() / k as usize) as i32;
    let mut out_shape = x.shape().to_vec();
    out_shape.pop();
    out_shape.push(n);
    let x2 = x.reshape(&[rows, k])?;
    let kern = gpu::kernel(
        GpuBackend::Cuda,
        "small_batch_gemm",
        &["x", "w"],
        &["out"],
        |_| BODY.to_string(),
    )?;
    let per_block = WARPS * COLS_PER_WARP;
    let config = KernelConfig::new(
        [
            32 * WARPS,
            (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK,
            (n + per_block - 1) / per_block,
        ],
        [32 * WARPS, 1, 1],
    )
    .output(&[rows, n], x.dtype())
    .template("T", TemplateArg::Dtype(x.dtype()))
    .template("R", TemplateArg::Int(ROWS_PER_BLOCK))
    .template("C", TemplateArg::Int(COLS_PER_WARP))
    .template("WARPS", TemplateArg::Int(WARPS));
    let out = kern.apply(&[&x2, w], &config)?;
    let [out] = gpu::outputs(out, "small-batch product kernel")?;
    PRODUCTS.fetch_add(1, Ordering::Relaxed);
    Ok(out.reshape(&out_shape)?)
}
