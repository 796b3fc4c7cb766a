//! Dense or MLX-quantized linear layers and embeddings.

use crate::config::QuantParams;
use crate::error::Result;
use mlx_rs::{ops, Array, Dtype};

/// Quantized weights: packed `uint32` rows with one scale and bias per group.
#[derive(Clone)]
pub struct Quantized {
    /// `[out, in · bits / 32]`, `uint32`.
    pub weight: Array,
    /// `[out, in / group_size]`.
    pub scales: Array,
    /// `[out, in / group_size]`.
    pub biases: Array,
    /// Group size and bit width.
    pub params: QuantParams,
}

impl Quantized {
    /// `x @ Wᵀ` with the packed weight.
    fn matmul_t(&self, x: &Array) -> Result<Array> {
        Ok(ops::quantized_matmul(
            x,
            &self.weight,
            &self.scales,
            Some(&self.biases),
            true,
            self.options(),
        )?)
    }

    /// The float rows `ids` of the weight (`[.., in]`).
    fn rows(&self, ids: &Array) -> Result<Array> {
        let w = ops::take_axis(&self.weight, ids, 0)?;
        let s = ops::take_axis(&self.scales, ids, 0)?;
        let b = ops::take_axis(&self.biases, ids, 0)?;
        Ok(ops::dequantize(
            &w,
            &s,
            Some(&b),
            None,
            None,
            self.options(),
        )?)
    }

    fn options(&self) -> ops::QuantizeOptions {
        ops::QuantizeOptions {
            group_size: Some(self.params.group_size),
            bits: Some(self.params.bits),
            mode: ops::QuantizationMode::Affine,
        }
    }
}

/// A bias-free linear layer `y = x Wᵀ`, dense or quantized.
#[derive(Clone)]
pub enum Linear {
    /// Float weight `[out, in]`.
    Dense(Array),
    /// MLX affine-quantized weight.
    Quantized(Quantized),
}

impl Linear {
    /// Applies the layer to the last axis of `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Linear::Dense(w) => dense_matmul_t(x, w),
            Linear::Quantized(q) => q.matmul_t(x),
        }
    }
}

/// Rows of `x` from which a float32 product on the CPU copies `Wᵀ` to row-major first.
///
/// MLX's CPU backend hands float32 matmuls to BLAS; with the reference BLAS of the Linux
/// wheels, `x·Wᵀ` through a transposed operand runs about 2.3 times slower than the same
/// product with a row-major `[in, out]` matrix (measured: 511×1024 by 1024×3584, 1.52 s
/// against 0.66 s of CPU), while the copy costs about as much as 20 rows of the product.
/// Prefill (many rows) takes the copy; decode (one row) keeps the transposed view.
const CPU_F32_ROW_MAJOR_ROWS: i32 = 32;

/// `x @ Wᵀ` for a dense `[out, in]` weight.
fn dense_matmul_t(x: &Array, w: &Array) -> Result<Array> {
    let wt = ops::transpose(w)?;
    let inner = x.dim(-1)?.max(1);
    let rows = (x.size() / inner as usize) as i32;
    if w.dtype() == Dtype::Float32 && rows >= CPU_F32_ROW_MAJOR_ROWS && on_cpu() {
        return Ok(ops::matmul(x, &ops::contiguous(&wt, false)?)?);
    }
    Ok(ops::matmul(x, &wt)?)
}

/// Whether ops built now run on the CPU.
fn on_cpu() -> bool {
    mlx_rs::current_stream()
        .and_then(|s| s.device())
        .and_then(|d| d.kind())
        .is_ok_and(|k| k == mlx_rs::DeviceType::Cpu)
}

/// A token embedding `[vocab, hidden]`, dense or quantized; it doubles as the output
/// head when the embeddings are tied.
#[derive(Clone)]
pub struct Embedding {
    /// The table.
    pub table: Linear,
}

impl Embedding {
    /// The rows for `ids` (any shape), with a trailing `hidden` axis.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        match &self.table {
            Linear::Dense(w) => Ok(ops::take_axis(w, ids, 0)?),
            Linear::Quantized(q) => q.rows(ids),
        }
    }

    /// `x @ tableᵀ`: logits over the vocabulary (tied output head).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        match &self.table {
            // No row-major copy of the whole vocabulary (see `dense_matmul_t`).
            Linear::Dense(w) => Ok(ops::matmul(x, &ops::transpose(w)?)?),
            Linear::Quantized(_) => self.table.forward(x),
        }
    }

    /// The dtype activations take when they start from this table.
    pub fn dtype(&self) -> Dtype {
        match &self.table {
            Linear::Dense(w) => w.dtype(),
            Linear::Quantized(q) => q.scales.dtype(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::random;

    #[test]
    fn row_major_copy_gives_the_same_product() {
        let cpu = mlx_rs::Device::cpu();
        mlx_rs::with_device(&cpu, || {
            let key = random::key(3).unwrap();
            let w = random::normal(&[96, 64], Dtype::Float32, 0.0, 1.0, Some(&key)).unwrap();
            for rows in [1, CPU_F32_ROW_MAJOR_ROWS - 1, CPU_F32_ROW_MAJOR_ROWS, 100] {
                let key = random::key(rows as u64).unwrap();
                let x =
                    random::normal(&[1, rows, 64], Dtype::Float32, 0.0, 1.0, Some(&key)).unwrap();
                let got = Linear::Dense(w.clone()).forward(&x).unwrap();
                let want = ops::matmul(&x, &ops::transpose(&w).unwrap()).unwrap();
                assert_eq!(got.shape(), &[1, rows, 96]);
                let (g, e) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
                for (a, b) in g.iter().zip(&e) {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{rows} rows: {a} vs {b}"
                    );
                }
            }
        })
        .unwrap();
    }
}
