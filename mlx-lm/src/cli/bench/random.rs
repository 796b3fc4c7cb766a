//! Deterministic random weights and prompts for `bench`, drawn the same way by
//! `benches/mlx_lm_peer.py`, so that both sides compute the same function.
//!
//! Tensor `i` of the sorted MLX-layout names is drawn with `random::key(seed · 100000 +
//! i)`: names ending in `A_log` get `log(uniform(1, 16))` in float32; `norm.weight` and
//! `dt_bias` ones; `conv1d.weight` normal(0, 0.5); everything else normal(0, 0.02), cast
//! to the dtype. With quantization (affine, group 64), every 2-D `.weight` other than a
//! norm whose input width is a multiple of 64 is quantized, as mlx-lm's converter does
//! for its `Linear` and `Embedding` layers.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use mlx_rs::{ops, random, Array, Dtype};

use crate::cli::progress::Progress;

/// How `bench` fills a model with random weights: dtype, quantization and seed, with the
/// scheme of the module docs. [`crate::cli::ModelCli::random`] gets one.
pub struct RandomWeights<'p> {
    dtype: Dtype,
    quantize: Option<i32>,
    seed: u64,
    progress: &'p Progress,
}

impl<'p> RandomWeights<'p> {
    /// Weights of `dtype`, quantized to `quantize` bits if set, drawn from `seed`;
    /// [`RandomWeights::generate`] reports its progress to `progress`.
    pub fn new(dtype: Dtype, quantize: Option<i32>, seed: u64, progress: &'p Progress) -> Self {
        RandomWeights {
            dtype,
            quantize,
            seed,
            progress,
        }
    }

    /// The dtype of the weights (and of the activations).
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Bits of the quantized weights, if quantized.
    pub fn quantize(&self) -> Option<i32> {
        self.quantize
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The values of the tensors `shapes` (MLX-layout name → shape), evaluated: the dense
    /// ones, or for a quantized tensor `x.weight` the packed `x.weight`, `x.scales` and
    /// `x.biases`, as in an MLX checkpoint.
    pub fn generate(&self, shapes: &BTreeMap<String, Vec<i32>>) -> Result<BTreeMap<String, Array>> {
        let mut arrays = BTreeMap::new();
        for (i, (name, shape)) in shapes.iter().enumerate() {
            self.progress.building(i, shapes.len());
            let key = random::key(self.seed.wrapping_mul(100_000).wrapping_add(i as u64))?;
            let value = random_value(name, shape, &key, self.dtype)?;
            let quantizable = shape.len() == 2
                && shape[1] % 64 == 0
                && name.ends_with(".weight")
                && !name.ends_with("norm.weight");
            match self.quantize {
                Some(bits) if quantizable => {
                    let q = ops::quantize(
                        &value,
                        None,
                        ops::QuantizeOptions {
                            group_size: Some(64),
                            bits: Some(bits),
                            mode: ops::QuantizationMode::Affine,
                        },
                    )?;
                    let stem = name.trim_end_matches(".weight");
                    let biases = q
                        .biases
                        .ok_or_else(|| anyhow!("affine quantization returned no biases"))?;
                    mlx_rs::eval(&[&q.w, &q.scales, &biases])?;
                    arrays.insert(name.clone(), q.w);
                    arrays.insert(format!("{stem}.scales"), q.scales);
                    arrays.insert(format!("{stem}.biases"), biases);
                }
                _ => {
                    arrays.insert(name.clone(), value);
                }
            }
        }
        self.progress.clear();
        Ok(arrays)
    }
}

/// The random value of one tensor (see the module docs), evaluated.
fn random_value(name: &str, shape: &[i32], key: &Array, dtype: Dtype) -> Result<Array> {
    let a = if name.ends_with("A_log") {
        ops::log(&random::uniform(
            &Array::scalar(1f32),
            &Array::scalar(16f32),
            shape,
            Dtype::Float32,
            Some(key),
        )?)?
    } else if name.ends_with("norm.weight") || name.ends_with("dt_bias") {
        ops::ones(shape, Dtype::Float32)?.astype(dtype)?
    } else {
        let scale = if name.ends_with("conv1d.weight") {
            0.5f32
        } else {
            0.02
        };
        random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(key))?
            .multiply(&Array::scalar(scale))?
            .astype(dtype)?
    };
    a.eval()?;
    Ok(a)
}

/// Pseudo-random prompt ids in `0..limit` (a 64-bit LCG; the peer draws the same).
pub fn prompt_ids(n: usize, limit: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % limit as u64) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_ids_match_the_peer() {
        // benches/mlx_lm_peer.py: prompt_ids(4, 32000, 0) and prompt_ids(3, 248077, 7).
        assert_eq!(prompt_ids(4, 32000, 0), [2774, 24153, 21196, 16870]);
        assert_eq!(prompt_ids(3, 248077, 7), [1532, 125147, 83072]);
    }
}
