//! The product of one row with an MLX affine-quantized weight on a CUDA GPU: a decode
//! step's products of a 4- or 8-bit model, in one launch each
//! (`mlx-lm/kernels/quantized_gemv.cu.inc`).
//!
//! MLX 0.32.2's kernel for this (`qmv_kernel`) gives each lane 16 values of a row at a
//! time (8-byte loads of 4-bit words) and sums them in the activations' dtype. Here a
//! block's loads of all its rows (16-byte words, their scales and biases) are issued
//! before any is used, x is read once a block and kept in registers as floats, and the
//! sums run in float32, rounded to the output dtype once: within one rounding of the
//! exact product of the quantized weight (MLX's bfloat16 sums are coarser).
//!
//! Qwen 3.5 on CUDA takes it for every one-row quantized product by default
//! (`qwen3_5::ModelOptions::quantized_gemv`): on an H100 the 2B's 4-bit decode at a 2,048
//! token prompt went from 519.0–541.0 to 587.9 tokens/s, and on the GPU test every product's
//! largest error against the exact one was at most MLX's
//! (`examples/qwen3_5/benches/README.md`, session 28).
//!
//! `examples/qwen3_5/tests/kernel_emulation/emulate_quantized_gemv.py` runs the kernel's
//! text on the CPU with emulated warps, `nvrtc_check.py` compiles it for sm_90 as MLX
//! does, and `tests/lm/quantized_gemv.rs` runs the emulation (in CI) and compares the
//! kernel with MLX's `quantized_matmul` on a CUDA GPU.

use crate::error::{Error, Result};
use crate::kernels::gpu::{self, GpuBackend};
use mlx_rs::fast::{KernelConfig, TemplateArg};
use mlx_rs::{Array, Dtype};

/// The kernel's body.
pub const BODY: &str = include_str!("../../kernels/quantized_gemv.cu.inc");
/// Weight rows a block takes.
pub const ROWS: i32 = 4;
/// The most warps a block has (they split a row's values).
pub const MAX_WARPS: i32 = 8;
/// The most 16-byte words of a row one lane takes (its x values stay in registers:
/// `MAX_WORDS · 128 / BITS` floats).
pub const MAX_WORDS: i32 = 2;

/// Compiles the kernel for one-row products with rows of `k` values and a `bits`-bit
/// weight in groups of `group`, scales and activations in `dtype`, now, by running one
/// small product: MLX compiles a custom kernel with NVRTC at its first launch in a process
/// (one compile for each dtype, bits, group and `k`; the small-batch kernel's took about
/// 2 s on an H100), so a model calls this at load for the inner sizes of its products
/// instead of stalling its first decode step.
///
/// # Errors
/// A `k`, `bits` or `group` the kernel does not take (see [`fits`]); MLX's errors (no CUDA
/// GPU), after which a caller keeps MLX's quantized matmul.
pub fn compile(dtype: Dtype, bits: i32, group: i32, k: i32) -> Result<()> {
    let zeros = |shape: &[i32], dtype| mlx_rs::ops::zeros(shape, dtype);
    let x = zeros(&[1, k], dtype)?;
    let w = zeros(&[1, k.max(0) / 32 * bits], Dtype::Uint32)?;
    let scales = zeros(&[1, k.max(0) / group.max(1)], dtype)?;
    matmul(&x, &w, &scales, &scales, bits, group)?.eval()?;
    Ok(())
}

/// `(warps, words a lane)` of a block for rows of `k` values of `bits` bits: the fewest
/// warps whose lanes take one 16-byte word each, at most [`MAX_WARPS`]; then as many words
/// a lane as that needs. `None` past [`MAX_WORDS`] words a lane, for `k` below 1 and for
/// bits other than 4 and 8.
pub fn launch(k: i32, bits: i32) -> Option<(i32, i32)> {
    if !matches!(bits, 4 | 8) || k < 1 {
        return None;
    }
    let words = k / (128 / bits);
    let warps = ((words + 31) / 32).clamp(1, MAX_WARPS);
    let per_lane = (words + 32 * warps - 1) / (32 * warps);
    (per_lane <= MAX_WORDS).then_some((warps, per_lane))
}

/// Whether the kernel takes rows of `k` values with a `bits`-bit weight in groups of
/// `group`: `bits` 4 or 8, `group` 32, 64 or 128, `k` a multiple of `group` that
/// [`launch`] takes.
pub fn takes(k: i32, bits: i32, group: i32) -> bool {
    matches!(group, 32 | 64 | 128) && k > 0 && k % group == 0 && launch(k, bits).is_some()
}

/// Whether the kernel takes `x · dequantize(w, scales, biases)ᵀ`: `x` `[.., K]` of one row
/// in all; `w` `[N, K · bits / 32]` `uint32`; `scales` and `biases` `[N, K / group]` of
/// `x`'s dtype (bfloat16, float16 or float32); `K`, `bits` and `group` as [`takes`] says;
/// any `N` whose launch (`32 · warps` threads for each [`ROWS`] rows) counts its threads
/// in an `i32`.
pub fn fits(x: &Array, w: &Array, scales: &Array, biases: &Array, bits: i32, group: i32) -> bool {
    checked_launch(x, w, scales, biases, bits, group).is_some()
}

/// The `(warps, words a lane)` of the product's launch where the kernel takes it
/// ([`fits`]), `None` otherwise: the checks and the launch found once.
fn checked_launch(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    bits: i32,
    group: i32,
) -> Option<(i32, i32)> {
    let (Some(&k), &[n, wk]) = (x.shape().last(), w.shape()) else {
        return None;
    };
    if !takes(k, bits, group) || wk != k / 32 * bits || n <= 0 || x.size() != k as usize {
        return None;
    }
    let (warps, words) = launch(k, bits)?;
    let blocks = (n as i64 + ROWS as i64 - 1) / ROWS as i64;
    let act = x.dtype();
    let ok = blocks * 32 * warps as i64 <= i32::MAX as i64
        && matches!(act, Dtype::Bfloat16 | Dtype::Float16 | Dtype::Float32)
        && w.dtype() == Dtype::Uint32
        && scales.dtype() == act
        && biases.dtype() == act
        && scales.shape() == [n, k / group]
        && biases.shape() == [n, k / group];
    ok.then_some((warps, words))
}

/// `x · dequantize(w, scales, biases)ᵀ` (`[.., N]` in `x`'s dtype) for one row `x` on a
/// CUDA GPU.
///
/// # Errors
/// Shapes, dtypes or quantizations the kernel does not take (see [`fits`]); MLX's errors
/// (no CUDA GPU).
pub fn matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    bits: i32,
    group: i32,
) -> Result<Array> {
    try_matmul(x, w, scales, biases, bits, group)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "quantized one-row product: x {:?} ({:?}), w {:?} ({:?}), scales {:?} ({:?}), \
             biases {:?} ({:?}) with {bits} bits and groups of {group} do not fit (x [.., K] \
             of one row; w [N, K · bits / 32] uint32; scales and biases [N, K / group] of x's \
             dtype, bfloat16, float16 or float32; bits 4 or 8; group 32, 64 or 128; K a \
             multiple of group, at most {} values)",
            x.shape(),
            x.dtype(),
            w.shape(),
            w.dtype(),
            scales.shape(),
            scales.dtype(),
            biases.shape(),
            biases.dtype(),
            32 * MAX_WARPS * MAX_WORDS * 128 / bits.max(1),
        ))
    })
}

/// [`matmul`] where the kernel takes the product ([`fits`]), `None` otherwise (the caller
/// multiplies some other way): one check for a product on a model's hot path.
///
/// # Errors
/// MLX's errors (no CUDA GPU).
pub fn try_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    bits: i32,
    group: i32,
) -> Result<Option<Array>> {
    let Some((warps, words)) = checked_launch(x, w, scales, biases, bits, group) else {
        return Ok(None);
    };
    let k = x.dim(-1);
    let n = w.dim(0);
    let mut out_shape = x.shape().to_vec();
    if let Some(last) = out_shape.last_mut() {
        *last = n;
    }
    let kernel = gpu::kernel(
        GpuBackend::Cuda,
        "quantized_gemv",
        &["x", "w", "scales", "biases"],
        &["out"],
        |_| BODY.to_string(),
    )?;
    let blocks = (n + ROWS - 1) / ROWS;
    let config = KernelConfig::new([32 * warps * blocks, 1, 1], [32 * warps, 1, 1])
        .output(&out_shape, x.dtype())
        .template("T", TemplateArg::Dtype(x.dtype()))
        .template("BITS", TemplateArg::Int(bits))
        .template("GROUP", TemplateArg::Int(group))
        .template("K", TemplateArg::Int(k))
        .template("WARPS", TemplateArg::Int(warps))
        .template("U", TemplateArg::Int(words))
        .template("R", TemplateArg::Int(ROWS));
    let [out] = gpu::outputs(
        kernel.apply(&[x, w, scales, biases], &config)?,
        "quantized one-row product kernel",
    )?;
    Ok(Some(out))
}
