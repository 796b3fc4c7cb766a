//! A model's linear layers on its device: the one entry point of an
//! [`AdaptableLinear`]'s product that takes this crate's CPU kernels, and the storage of
//! float32 weights that suits MLX's CPU backend.
//!
//! A model built on `mlx_rs::nn` layers (`examples/qwen3`) holds its linear layers as
//! [`AdaptableLinear`]s and multiplies through [`forward`] with the [`CpuProducts`] it was
//! loaded with (`None` on a GPU, or to keep every product in MLX):
//!
//! | layer and input | `cpu: Some(..)` | `cpu: None` |
//! | --- | --- | --- |
//! | dense float32, any rows (decode, a batch's step, prefill) | [`cpu_gemm::matmul_t`] when `gemm` (up to [`cpu_rows::MAX_ROWS`] rows in [`cpu_rows`]) | MLX |
//! | affine-quantized (2, 4, 8 bits), float32 input | [`cpu_quantized::matmul`] when `gemm` | MLX |
//! | dense bfloat16, float32 input, any rows | [`cpu_bf16::matmul`] when `gemm` | MLX |
//! | anything else (bfloat16 input, other modes, DoRA) | MLX | MLX |
//!
//! [`store_for_cpu`] keeps each dense float32 weight as the transpose of a row-major
//! `[in, out]` matrix (same shape, values and parameter names): MLX's CPU backend then
//! multiplies `x Wᵀ` with a row-major right-hand side, which the reference BLAS of its
//! Linux wheels runs 2.3–2.5× faster than a transposed one (one row and many alike), and
//! the GEMM reads it in place.
//!
//! Inside a gradient transform ([`mlx_rs::transforms::in_transform`]) the CPU kernels
//! decline, so training through [`forward`] gets MLX's differentiable products.

use crate::error::Result;
use crate::kernels::cpu_bf16;
use crate::kernels::cpu_gemm::{self, CpuProducts};
use crate::kernels::cpu_quantized;
#[cfg(doc)]
use crate::kernels::cpu_rows;
use crate::tuner::AdaptableLinear;
use mlx_rs::nn::{self, KeyPath, MaybeQuantized, Module, UnaryModule, VisitorMut};
use mlx_rs::{ops, Array, Dtype};

/// The largest weight that a quantized or bfloat16 product of many rows converts whole to
/// float32 on the CPU (the copy lives for one product); larger ones stay in MLX.
pub const MAX_DEQUANTIZED_BYTES: usize = 512 << 20;

/// `layer(x)`, its base's product on the CPU kernels where `cpu` says so (see the module
/// docs); with `cpu: None` exactly [`UnaryModule::forward`].
pub fn forward(layer: &AdaptableLinear, x: &Array, cpu: Option<CpuProducts>) -> Result<Array> {
    let Some(cpu) = cpu.filter(|c| c.gemm) else {
        return Ok(layer.forward(x)?);
    };
    match layer {
        AdaptableLinear::Base(base) => base_forward(base, x, cpu),
        AdaptableLinear::Lora(l) => Ok(base_forward(&l.linear, x, cpu)?.add(&l.update(x)?)?),
        AdaptableLinear::Dora(_) => Ok(layer.forward(x)?),
    }
}

/// `x Eᵀ` for an embedding table used as the output head (tied embeddings), on the CPU
/// kernels where `cpu` says so, as [`forward`]; with `cpu: None` exactly
/// `MaybeQuantized::<Embedding>::as_linear`.
pub fn embedding_as_linear(
    table: &MaybeQuantized<nn::Embedding>,
    x: &Array,
    cpu: Option<CpuProducts>,
) -> Result<Array> {
    let product = match (table, cpu.filter(|c| c.gemm)) {
        (_, None) => None,
        (MaybeQuantized::Dense(e), Some(cpu)) => dense_product(x, e.weight.value(), cpu)?,
        (MaybeQuantized::Quantized(q), Some(cpu)) => {
            quantized_product(x, &q.weight, &q.scales, q.biases.as_ref(), q.options, cpu)?
        }
    };
    match product {
        Some(y) => Ok(y),
        None => Ok(table.as_linear(x)?),
    }
}

/// A base layer's `x Wᵀ + b`, the product on the CPU kernels when they take it.
fn base_forward(base: &MaybeQuantized<nn::Linear>, x: &Array, cpu: CpuProducts) -> Result<Array> {
    let (product, bias) = match base {
        MaybeQuantized::Dense(l) => (dense_product(x, l.weight.value(), cpu)?, &l.bias),
        MaybeQuantized::Quantized(q) => (
            quantized_product(x, &q.weight, &q.scales, q.biases.as_ref(), q.options, cpu)?,
            &q.bias,
        ),
    };
    Ok(match (product, bias) {
        (Some(y), Some(b)) => y.add(b.value())?,
        (Some(y), None) => y,
        (None, _) => base.forward(x)?,
    })
}

/// `x Wᵀ` for a dense float32 weight in the CPU kernels ([`cpu_gemm::matmul_t`]), and for a bfloat16
/// weight with float32 input in [`cpu_bf16`], for any rows; `None`: MLX's.
fn dense_product(x: &Array, w: &Array, cpu: CpuProducts) -> Result<Option<Array>> {
    if w.dtype() == Dtype::Bfloat16 {
        return cpu_bf16::matmul(x, w, cpu.threads, MAX_DEQUANTIZED_BYTES);
    }
    cpu_gemm::matmul_t(x, w, cpu.threads)
}

/// `x Wᵀ` for an affine-quantized weight in [`cpu_quantized`]; `None`: MLX's.
fn quantized_product(
    x: &Array,
    weight: &nn::Param,
    scales: &nn::Param,
    biases: Option<&nn::Param>,
    options: ops::QuantizeOptions,
    cpu: CpuProducts,
) -> Result<Option<Array>> {
    let (Some(biases), Some(bits), Some(group), ops::QuantizationMode::Affine) =
        (biases, options.bits, options.group_size, options.mode)
    else {
        return Ok(None);
    };
    cpu_quantized::matmul(
        x,
        weight.value(),
        scales.value(),
        biases.value(),
        bits,
        group,
        cpu.threads,
        MAX_DEQUANTIZED_BYTES,
    )
}

/// Keeps a float32 matrix parameter (`[out, in]`) as the transpose of a row-major
/// `[in, out]` matrix, evaluated: same shape and values. Returns whether it changed it
/// (not for another dtype or rank, nor when it already is stored so).
pub fn store_transposed(param: &mut nn::Param) -> Result<bool> {
    let w = param.value();
    if w.dtype() != Dtype::Float32 || w.ndim() != 2 {
        return Ok(false);
    }
    w.eval()?;
    if w.is_col_contiguous() && !w.is_row_contiguous() {
        return Ok(false);
    }
    let stored = ops::contiguous(&w.transpose()?, false)?.transpose()?;
    stored.eval()?;
    param.set(stored);
    Ok(true)
}

/// Keeps every dense float32 weight of the [`AdaptableLinear`] layers of `model` as the
/// transpose of a row-major `[in, out]` matrix (see the module docs): same shapes and
/// values, so loading, adapters, fusing and saving see the layer as before. The new
/// storage is evaluated here, one layer at a time (the old one is freed as it goes).
/// Returns how many weights it changed. Call it for a model on the CPU after loading (and
/// again after fusing adapters, which makes new weights); on a GPU it gains nothing.
pub fn store_for_cpu<M: Module + ?Sized>(model: &mut M) -> Result<usize> {
    struct Store {
        changed: usize,
    }
    impl VisitorMut for Store {
        fn slot(&mut self, _: &str, slot: &mut dyn std::any::Any) -> mlx_rs::Result<()> {
            let Some(layer) = slot.downcast_mut::<AdaptableLinear>() else {
                return Ok(());
            };
            if let MaybeQuantized::Dense(l) = layer.base_mut() {
                self.changed += usize::from(store_transposed(&mut l.weight)?);
            }
            Ok(())
        }
    }
    let mut store = Store { changed: 0 };
    model.visit_mut(&mut KeyPath::new(), &mut store)?;
    Ok(store.changed)
}
