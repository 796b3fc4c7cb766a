//! Dense or MLX-quantized linear layers and embeddings.

use crate::config::QuantParams;
use crate::error::{Error, Result};
use crate::options::Products;
use mlx_lm::kernels::cpu_bf16;
use mlx_lm::kernels::cpu_gemm::CpuProducts;
use mlx_lm::kernels::cpu_quantized;
use mlx_lm::kernels::quantized_gemv;
use mlx_lm::kernels::small_batch;
use mlx_lm::tuner::{AdaptableLinear, LowRank};
use mlx_rs::{ops, Array, Dtype};
use std::hash::{Hash, Hasher};

mod cpu;
mod stored;
use cpu::cpu_matmul;
pub(crate) use stored::{placeholder, placeholder_embedding, placeholder_param};

/// `products` with the CUDA product kernels it takes compiled now (at load: MLX compiles a
/// custom kernel with NVRTC at its first launch, a stall of seconds at a model's first
/// step), and with any that cannot be compiled turned off, so the model keeps MLX's
/// products: the small-batch kernel for the dtype of a dense `table` (not where the dtype
/// is another, or the GPU lacks bfloat16 tensor cores), the quantized one-row kernel for
/// a quantized `table`'s quantization at each of the model's `inner` sizes that it takes
/// (the others stay on MLX's quantized matmul anyway).
pub(crate) fn compile_kernels(mut products: Products, table: &Linear, inner: &[i32]) -> Products {
    if products.small_batch_rows >= 2 {
        let compiled = table.dense_dtype().map(small_batch::compile);
        if !matches!(compiled, Some(Ok(()))) {
            products.small_batch_rows = 0;
        }
    }
    if let (true, Some((dtype, q))) = (products.quantized_gemv, table.quantization()) {
        let (bits, group) = (q.bits, q.group_size);
        let mut sizes = inner.to_vec();
        sizes.sort_unstable();
        sizes.dedup();
        let compiled = sizes
            .iter()
            .filter(|&&k| quantized_gemv::takes(k, bits, group))
            .all(|&k| quantized_gemv::compile(dtype, bits, group, k).is_ok());
        products.quantized_gemv = compiled;
    }
    products
}

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
    /// How products run on the CPU: `Some` with the CPU GEMM on, where they go to
    /// [`cpu_quantized`] (a few rows group by group, more rows through the weight
    /// dequantized for the GEMM; MLX's CPU quantized matmul runs one row at a time, on one
    /// thread); `None`: MLX's quantized matmul.
    pub cpu: Option<CpuProducts>,
    /// Products of one row run in [`quantized_gemv`] (CUDA) where it takes them
    /// ([`Products::quantized_gemv`]); `false`: MLX's quantized matmul.
    pub one_row_kernel: bool,
}

impl Quantized {
    /// `x @ Wᵀ` with the packed weight.
    fn matmul_t(&self, x: &Array) -> Result<Array> {
        if let Some(cpu) = self.cpu {
            let (bits, group) = (self.params.bits, self.params.group_size);
            let (w, s, b) = (&self.weight, &self.scales, &self.biases);
            let most = mlx_lm::linear::MAX_DEQUANTIZED_BYTES;
            if let Some(y) = cpu_quantized::matmul(x, w, s, b, bits, group, cpu.threads, most)? {
                return Ok(y);
            }
        }
        if self.one_row_kernel {
            let (w, s, b) = (&self.weight, &self.scales, &self.biases);
            let (bits, group) = (self.params.bits, self.params.group_size);
            if let Some(y) = quantized_gemv::try_matmul(x, w, s, b, bits, group)? {
                return Ok(y);
            }
        }
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
    /// Float weight `[out, in]`, with its transposed view made once (not per product).
    Dense {
        /// `[out, in]`, as stored.
        w: Array,
        /// `Wᵀ`, a view of `w` (evaluated, so a step's graph does not rebuild it).
        wt: Array,
        /// For a bfloat16 weight on the CPU with the CPU GEMM on: products with float32
        /// input go to [`cpu_bf16`] (see [`Linear::for_device`]); `None`: MLX's.
        cpu: Option<CpuProducts>,
        /// Products of 2 to this many rows run in [`small_batch`] (CUDA); 0: never.
        small_batch_rows: i32,
    },
    /// Float weight stored transposed and row-major, `[in, out]`: how float32 weights are
    /// kept for the CPU (see [`Linear::for_device`]).
    DenseT {
        /// `Wᵀ`, row-major.
        wt: Array,
        /// How float32 products with it run.
        cpu: CpuProducts,
        /// Products of 2 to this many rows run in [`small_batch`] (CUDA); 0: never.
        small_batch_rows: i32,
    },
    /// MLX affine-quantized weight.
    Quantized(Quantized),
    /// A layer with an adapter's low-rank update (`mlx_lm::tuner`), computed beside the
    /// base's product.
    Adapted {
        /// The base layer.
        base: Box<Linear>,
        /// The update.
        update: LowRank,
    },
}

impl Linear {
    /// Applies the layer to the last axis of `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Linear::DenseT { wt, cpu, .. } if wt.dtype() == Dtype::Float32 => {
                cpu_matmul(x, wt, *cpu)
            }
            Linear::Dense {
                w,
                wt,
                cpu: Some(c),
                ..
            } if x.dtype() == Dtype::Float32 => {
                let most = mlx_lm::linear::MAX_DEQUANTIZED_BYTES;
                match cpu_bf16::matmul(x, w, c.threads, most)? {
                    Some(y) => Ok(y),
                    None => Ok(ops::matmul(x, wt)?),
                }
            }
            Linear::Dense {
                wt,
                small_batch_rows,
                ..
            }
            | Linear::DenseT {
                wt,
                small_batch_rows,
                ..
            } => match small_batch::try_matmul(x, wt, *small_batch_rows)? {
                Some(y) => Ok(y),
                None => Ok(ops::matmul(x, wt)?),
            },
            Linear::Quantized(q) => q.matmul_t(x),
            Linear::Adapted { base, update } => Ok(update.apply(x, &base.forward(x)?)?),
        }
    }

    /// A dense layer of weight `w` (`[out, in]`).
    pub fn dense(w: Array) -> Result<Linear> {
        Linear::dense_with(w, None, 0)
    }

    /// [`Linear::dense`] whose float32 products take `cpu` and whose products of a few rows
    /// take `small_batch_rows` ([`Linear::Dense`]'s fields).
    fn dense_with(w: Array, cpu: Option<CpuProducts>, small_batch_rows: i32) -> Result<Linear> {
        let wt = ops::transpose(&w)?;
        wt.eval()?;
        Ok(Linear::Dense {
            w,
            wt,
            cpu,
            small_batch_rows,
        })
    }

    /// The arrays a product reads, in a fixed order: how a compiled function takes a
    /// layer's weights as inputs (see [`Linear::with_weights`]).
    pub fn weights(&self) -> Vec<Array> {
        match self {
            Linear::Dense { wt, .. } | Linear::DenseT { wt, .. } => vec![wt.clone()],
            Linear::Quantized(q) => vec![q.weight.clone(), q.scales.clone(), q.biases.clone()],
            Linear::Adapted { base, update } => {
                let mut w = base.weights();
                w.extend(update.arrays());
                w
            }
        }
    }

    /// This layer's kind and parameters with the next arrays of `weights` (in the order of
    /// [`Linear::weights`]) as its weights: inside a compiled function, the traced inputs.
    pub fn with_weights(&self, weights: &mut impl Iterator<Item = Array>) -> Result<Linear> {
        let mut next = || {
            weights
                .next()
                .ok_or_else(|| Error::InvalidArgument("too few weights for a linear layer".into()))
        };
        Ok(match self {
            // Same product (`x · Wᵀ`) whatever the layout of the array that comes in.
            Linear::Dense {
                small_batch_rows, ..
            } => Linear::DenseT {
                wt: next()?,
                cpu: CpuProducts::MLX,
                small_batch_rows: *small_batch_rows,
            },
            Linear::DenseT {
                cpu,
                small_batch_rows,
                ..
            } => Linear::DenseT {
                wt: next()?,
                cpu: *cpu,
                small_batch_rows: *small_batch_rows,
            },
            Linear::Quantized(q) => Linear::Quantized(Quantized {
                weight: next()?,
                scales: next()?,
                biases: next()?,
                params: q.params,
                cpu: q.cpu,
                one_row_kernel: q.one_row_kernel,
            }),
            Linear::Adapted { base, update } => Linear::Adapted {
                base: Box::new(base.with_weights(weights)?),
                update: update.with_arrays(weights)?,
            },
        })
    }

    /// Feeds what a compiled function of this layer depends on besides its input arrays'
    /// shapes and dtypes (the kind, the quantization) to `h`.
    pub fn hash_structure(&self, h: &mut impl Hasher) {
        match self {
            Linear::Dense {
                small_batch_rows, ..
            }
            | Linear::DenseT {
                small_batch_rows, ..
            } => (0u8, *small_batch_rows).hash(h),
            Linear::Quantized(q) => {
                1u8.hash(h);
                (q.params.group_size, q.params.bits, q.one_row_kernel).hash(h);
            }
            Linear::Adapted { base, update } => {
                2u8.hash(h);
                base.hash_structure(h);
                update.hash_structure(h);
            }
        }
    }

    /// The dtype of a quantized weight's scales and its quantization (an adapted layer's
    /// base's); `None` when dense.
    pub fn quantization(&self) -> Option<(Dtype, QuantParams)> {
        match self {
            Linear::Quantized(q) => Some((q.scales.dtype(), q.params)),
            Linear::Adapted { base, .. } => base.quantization(),
            Linear::Dense { .. } | Linear::DenseT { .. } => None,
        }
    }

    /// The dtype of a dense weight (an adapted layer's base's); `None` when quantized.
    pub fn dense_dtype(&self) -> Option<Dtype> {
        match self {
            Linear::Dense { w, .. } => Some(w.dtype()),
            Linear::DenseT { wt, .. } => Some(wt.dtype()),
            Linear::Quantized(_) => None,
            Linear::Adapted { base, .. } => base.dense_dtype(),
        }
    }

    /// Output features.
    pub fn out_features(&self) -> Result<i32> {
        Ok(match self {
            Linear::Dense { wt, .. } | Linear::DenseT { wt, .. } => wt.dim(1),
            Linear::Quantized(q) => q.weight.dim(0),
            Linear::Adapted { base, .. } => base.out_features()?,
        })
    }

    /// The weights in the form that multiplies fastest on the model's device (`cpu`: how its
    /// products run there): for a model on the CPU (`cpu` is `Some`) a float32 weight
    /// becomes a row-major `Wᵀ` ([`Linear::DenseT`]). MLX's CPU backend hands float32 matmuls to BLAS, and with the
    /// reference BLAS of the Linux wheels `x·Wᵀ` through a transposed operand runs 2.3–2.5
    /// times slower than through a row-major `[in, out]` matrix, for one row (decode) and
    /// for many (prefill) alike (measured on this project's 2-core EPYC: 1024×3584, one
    /// row 3.0 ms against 1.2 ms; 511 rows 1.52 s against 0.66 s of CPU). bfloat16 goes the
    /// other way, and GPUs take either, so everything else is kept as stored. The new
    /// weight is evaluated here (the stored one is then no longer needed). A quantized
    /// weight stays packed and multiplies in [`cpu_quantized`] ([`Quantized::cpu`]) when
    /// `cpu.gemm` is on, and a bfloat16 weight stays as stored and multiplies float32
    /// input in [`cpu_bf16`] (a dense bfloat16 checkpoint loaded with float32 activations,
    /// `FloatDtype::Float32Activations`). On a GPU a dense weight takes
    /// `products.small_batch_rows` ([`Products::small_batch_rows`]).
    pub fn for_device(self, products: Products) -> Result<Linear> {
        match (self, products.cpu) {
            (Linear::Dense { wt, .. }, Some(cpu)) if wt.dtype() == Dtype::Float32 => {
                let wt = ops::contiguous(&wt, false)?;
                wt.eval()?;
                Ok(Linear::DenseT {
                    wt,
                    cpu,
                    small_batch_rows: 0,
                })
            }
            (Linear::Dense { w, wt, .. }, Some(cpu))
                if w.dtype() == Dtype::Bfloat16 && cpu.gemm =>
            {
                Ok(Linear::Dense {
                    w,
                    wt,
                    cpu: Some(cpu),
                    small_batch_rows: 0,
                })
            }
            (Linear::Dense { w, wt, cpu, .. }, None) => Ok(Linear::Dense {
                w,
                wt,
                cpu,
                small_batch_rows: products.small_batch_rows,
            }),
            (Linear::Quantized(q), Some(cpu)) if cpu.gemm => Ok(Linear::Quantized(Quantized {
                cpu: Some(cpu),
                ..q
            })),
            (Linear::Quantized(q), None) => Ok(Linear::Quantized(Quantized {
                one_row_kernel: products.quantized_gemv,
                ..q
            })),
            (Linear::Adapted { base, update }, _) => Ok(Linear::Adapted {
                base: Box::new(base.for_device(products)?),
                update,
            }),
            (other, _) => Ok(other),
        }
    }

    /// One layer computing `parts` side by side (their rows concatenated): one matmul
    /// instead of several for layers that read the same input. `None` when the parts
    /// cannot share a weight (dense mixed with quantized, or different quantizations, or
    /// an adapted part). The joined weight is evaluated here, so the parts' memory can go.
    pub fn join(parts: &[Linear]) -> Result<Option<Linear>> {
        let joined = match parts {
            [] => return Ok(None),
            [Linear::Adapted { .. }, ..] => return Ok(None),
            [Linear::Dense {
                cpu,
                small_batch_rows,
                ..
            }, ..] => {
                let mut ws = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        Linear::Dense { w, .. } => ws.push(w.clone()),
                        _ => return Ok(None),
                    }
                }
                let dtype = ws[0].dtype();
                if ws.iter().any(|w| w.dtype() != dtype) {
                    return Ok(None);
                }
                let w = ops::concatenate_axis(&ws, 0)?;
                w.eval()?;
                Linear::dense_with(w, *cpu, *small_batch_rows)?
            }
            [Linear::DenseT {
                cpu,
                small_batch_rows,
                ..
            }, ..] => {
                let mut ws = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        Linear::DenseT { wt, .. } => ws.push(wt.clone()),
                        _ => return Ok(None),
                    }
                }
                let wt = ops::concatenate_axis(&ws, 1)?;
                wt.eval()?;
                Linear::DenseT {
                    wt,
                    cpu: *cpu,
                    small_batch_rows: *small_batch_rows,
                }
            }
            [Linear::Quantized(first), ..] => {
                let mut qs = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        Linear::Quantized(q)
                            if q.params == first.params
                                && q.scales.dtype() == first.scales.dtype()
                                && q.biases.dtype() == first.biases.dtype() =>
                        {
                            qs.push(q)
                        }
                        _ => return Ok(None),
                    }
                }
                let cat = |f: fn(&Quantized) -> &Array| -> Result<Array> {
                    let xs: Vec<Array> = qs.iter().map(|q| f(q).clone()).collect();
                    Ok(ops::concatenate_axis(&xs, 0)?)
                };
                let q = Quantized {
                    weight: cat(|q| &q.weight)?,
                    scales: cat(|q| &q.scales)?,
                    biases: cat(|q| &q.biases)?,
                    params: first.params,
                    cpu: first.cpu,
                    one_row_kernel: first.one_row_kernel,
                };
                mlx_rs::eval(&[&q.weight, &q.scales, &q.biases])?;
                Linear::Quantized(q)
            }
        };
        Ok(Some(joined))
    }
}

/// Several linear layers applied to the same input (a layer's q/k/v, its gate and up
/// projections): one matmul whose output is split, when [`Linear::join`] can join them,
/// else one matmul each. Both give the same values.
#[derive(Clone)]
pub struct Projections {
    joined: Option<Linear>,
    parts: Vec<Linear>,
    /// Where each part's output starts in the joined output (after the first).
    splits: Vec<i32>,
}

impl Projections {
    /// Joins `parts` (see [`Linear::join`]), after putting each in its device form
    /// ([`Linear::for_device`]). Joined, the 2B decoded at 313 instead of 240 tokens/s on
    /// an H200 (`benches/README.md`).
    pub fn new(parts: Vec<Linear>, products: Products) -> Result<Projections> {
        let parts = parts
            .into_iter()
            .map(|p| p.for_device(products))
            .collect::<Result<Vec<_>>>()?;
        let mut splits = Vec::with_capacity(parts.len().saturating_sub(1));
        let mut at = 0;
        for p in &parts[..parts.len().saturating_sub(1)] {
            at += p.out_features()?;
            splits.push(at);
        }
        let joined = Linear::join(&parts)?;
        let parts = if joined.is_some() { Vec::new() } else { parts };
        Ok(Projections {
            joined,
            parts,
            splits,
        })
    }

    /// The arrays of the product(s), in a fixed order (see [`Linear::weights`]).
    pub fn weights(&self) -> Vec<Array> {
        match &self.joined {
            Some(j) => j.weights(),
            None => self.parts.iter().flat_map(Linear::weights).collect(),
        }
    }

    /// The same projections with the next arrays of `weights` as their weights (see
    /// [`Linear::with_weights`]).
    pub fn with_weights(&self, weights: &mut impl Iterator<Item = Array>) -> Result<Projections> {
        Ok(Projections {
            joined: match &self.joined {
                Some(j) => Some(j.with_weights(weights)?),
                None => None,
            },
            parts: self
                .parts
                .iter()
                .map(|p| p.with_weights(weights))
                .collect::<Result<_>>()?,
            splits: self.splits.clone(),
        })
    }

    /// Feeds the structure (joined or not, the split points, the kinds) to `h`.
    pub fn hash_structure(&self, h: &mut impl Hasher) {
        self.splits.hash(h);
        match &self.joined {
            Some(j) => {
                1u8.hash(h);
                j.hash_structure(h);
            }
            None => {
                0u8.hash(h);
                for p in &self.parts {
                    p.hash_structure(h);
                }
            }
        }
    }

    /// Each part's output for `x` (`[.., in]` → one `[.., out_i]` per part).
    pub fn forward(&self, x: &Array) -> Result<Vec<Array>> {
        match &self.joined {
            Some(j) => self.split(&j.forward(x)?),
            None => self.parts.iter().map(|p| p.forward(x)).collect(),
        }
    }

    /// The parts' outputs side by side (`[.., Σ out]`): the joined product, or (parts that
    /// did not join) each part's product, concatenated.
    pub fn forward_joined(&self, x: &Array) -> Result<Array> {
        match &self.joined {
            Some(j) => j.forward(x),
            None => {
                let parts = self
                    .parts
                    .iter()
                    .map(|p| p.forward(x))
                    .collect::<Result<Vec<_>>>()?;
                Ok(ops::concatenate_axis(&parts, -1)?)
            }
        }
    }

    /// The parts of a joined output (`[.., Σ out]` → one `[.., out_i]` per part).
    pub fn split(&self, joined: &Array) -> Result<Vec<Array>> {
        Ok(ops::split_sections(joined, &self.splits, -1)?)
    }
}

impl Linear {
    /// Points an adapted layer's update at the current parameters of `layer` (its
    /// checkpoint form), lazily: what a gradient transform needs after swapping them.
    pub(crate) fn refresh_update(&mut self, layer: &AdaptableLinear) -> Result<()> {
        if let (Linear::Adapted { update, .. }, Some(fresh)) = (self, layer.low_rank()?) {
            *update = fresh;
        }
        Ok(())
    }
}

impl Projections {
    /// [`Linear::refresh_update`] for each part (`layers` in the order of the parts); a
    /// joined form has no adapted part.
    pub(crate) fn refresh_updates(&mut self, layers: &[&AdaptableLinear]) -> Result<()> {
        if self.joined.is_some() {
            return Ok(());
        }
        for (part, layer) in self.parts.iter_mut().zip(layers) {
            part.refresh_update(layer)?;
        }
        Ok(())
    }
}

/// The `N` outputs of [`Projections`] as an array (`what` names them in the error).
pub fn fixed<const N: usize>(parts: Vec<Array>, what: &str) -> Result<[Array; N]> {
    parts.try_into().map_err(|p: Vec<Array>| {
        Error::InvalidArgument(format!("{} {what} projections, expected {N}", p.len()))
    })
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
            Linear::Dense { w, .. } => Ok(ops::take_axis(w, ids, 0)?),
            // Columns of the transposed table: `[hidden, ..ids]`, hidden moved last.
            Linear::DenseT { wt, .. } => Ok(ops::moveaxis(&ops::take_axis(wt, ids, 1)?, 0, -1)?),
            Linear::Quantized(q) => q.rows(ids),
            Linear::Adapted { .. } => Err(Error::InvalidArgument(
                "an embedding table cannot take an adapter".into(),
            )),
        }
    }

    /// `x @ tableᵀ`: logits over the vocabulary (tied output head).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        self.table.forward(x)
    }

    /// The table in the form that multiplies fastest on the model's device, for a table
    /// that is also the output head (see [`Linear::for_device`]); lookups read either
    /// form.
    pub fn for_device(self, products: Products) -> Result<Embedding> {
        Ok(Embedding {
            table: self.table.for_device(products)?,
        })
    }

    /// The dtype activations take when they start from this table.
    pub fn dtype(&self) -> Dtype {
        self.table.dtype()
    }
}

impl Linear {
    /// The dtype of the layer's float weights (or of its scales when quantized).
    pub fn dtype(&self) -> Dtype {
        match self {
            Linear::Dense { wt: w, .. } | Linear::DenseT { wt: w, .. } => w.dtype(),
            Linear::Quantized(q) => q.scales.dtype(),
            Linear::Adapted { base, .. } => base.dtype(),
        }
    }
}

#[cfg(test)]
mod tests;
