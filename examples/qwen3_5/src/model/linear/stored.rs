//! From the checkpoint's layers (`mlx_rs::nn`) to the inference forms, and back: the
//! parameters of a prepared layer are views of its inference form's arrays, so the weights
//! are held once.

use super::{Linear, Projections, Quantized};
use crate::config::QuantParams;
use crate::error::{Error, Result};
use crate::options::Products;
use mlx_lm::tuner::AdaptableLinear;
use mlx_rs::nn::{self, MaybeQuantized, Param};
use mlx_rs::ops::{QuantizationMode, QuantizeOptions};
use mlx_rs::{ops, Array, Dtype};

/// A bias-free checkpoint layer `[out, in]` whose parameters are placeholders until the
/// checkpoint is loaded: lazy zeros, never evaluated (nothing is allocated; mlx-rs only
/// checks, as for every array it makes, that one would fit in the memory free now). They
/// are bfloat16, as checkpoints mostly are; a parameter takes the dtype its stored tensor
/// has.
pub(crate) fn placeholder(out: i32, inp: i32) -> Result<AdaptableLinear> {
    let w = ops::zeros(&[out, inp], Dtype::Bfloat16)?;
    Ok(nn::Linear::from_weights(w, None)?.into())
}

/// A placeholder table `[vocab, hidden]` (see [`placeholder`]).
pub(crate) fn placeholder_embedding(
    vocab: i32,
    hidden: i32,
) -> Result<MaybeQuantized<nn::Embedding>> {
    let w = ops::zeros(&[vocab, hidden], Dtype::Bfloat16)?;
    Ok(nn::Embedding::from_weights(w)?.into())
}

/// A placeholder parameter of `shape` (see [`placeholder`]).
pub(crate) fn placeholder_param(shape: &[i32]) -> Result<Param> {
    Ok(Param::new(ops::zeros(shape, Dtype::Bfloat16)?))
}

/// A layer's arrays in the checkpoint's form: the weight `[out, in]` (packed when
/// quantized), and for a quantized layer its scales and biases.
pub(crate) struct Stored {
    weight: Array,
    quant: Option<(Array, Array)>,
}

impl Quantized {
    /// The affine-quantized weight of a checkpoint layer (`path` names it in errors).
    fn from_parts(
        path: &str,
        weight: &Param,
        scales: &Param,
        biases: Option<&Param>,
        options: QuantizeOptions,
    ) -> Result<Quantized> {
        let (Some(biases), QuantizationMode::Affine) = (biases, options.mode) else {
            return Err(Error::Weights(format!(
                "{path}: the {} quantization mode is not supported (only affine)",
                options.mode.name()
            )));
        };
        let (group_size, bits) = options.resolved();
        Ok(Quantized {
            weight: weight.value().clone(),
            scales: scales.value().clone(),
            biases: biases.value().clone(),
            params: QuantParams { group_size, bits },
            cpu: None,
            one_row_kernel: false,
        })
    }
}

impl Linear {
    /// The inference form of a checkpoint layer, holding its arrays (not copies), with
    /// its adapter's update if it has one; `path` names it in errors.
    pub fn from_layer(path: &str, layer: &AdaptableLinear) -> Result<Linear> {
        let base = Linear::from_base(path, layer.base())?;
        Ok(match layer.low_rank()? {
            Some(update) => {
                // Evaluated here (DoRA's row factor is computed), so that the model holds
                // only data: a lazy array would stay tied to this thread's stream.
                mlx_rs::eval(&update.arrays())?;
                Linear::Adapted {
                    base: Box::new(base),
                    update,
                }
            }
            None => base,
        })
    }

    /// The inference form of a plain (dense or quantized) checkpoint layer.
    fn from_base(path: &str, layer: &MaybeQuantized<nn::Linear>) -> Result<Linear> {
        match layer {
            MaybeQuantized::Dense(l) => Linear::dense(l.weight.value().clone()),
            MaybeQuantized::Quantized(q) => Ok(Linear::Quantized(Quantized::from_parts(
                path,
                &q.weight,
                &q.scales,
                q.biases.as_ref(),
                q.options,
            )?)),
        }
    }

    /// The inference form of a checkpoint table (see [`Linear::from_layer`]).
    pub fn from_embedding(path: &str, table: &MaybeQuantized<nn::Embedding>) -> Result<Linear> {
        match table {
            MaybeQuantized::Dense(e) => Linear::dense(e.weight.value().clone()),
            MaybeQuantized::Quantized(q) => Ok(Linear::Quantized(Quantized::from_parts(
                path,
                &q.weight,
                &q.scales,
                q.biases.as_ref(),
                q.options,
            )?)),
        }
    }

    /// This layer's arrays in the checkpoint's form, as views of its own (a transposed
    /// weight is transposed back without a copy).
    pub(crate) fn stored(&self) -> Result<Stored> {
        Ok(match self {
            Linear::Adapted { base, .. } => base.stored()?,
            Linear::Dense { w, .. } => Stored {
                weight: w.clone(),
                quant: None,
            },
            Linear::DenseT { wt, .. } => Stored {
                weight: ops::transpose(wt)?,
                quant: None,
            },
            Linear::Quantized(q) => Stored {
                weight: q.weight.clone(),
                quant: Some((q.scales.clone(), q.biases.clone())),
            },
        })
    }
}

impl Stored {
    /// Rows `lo..hi` (output features) of every array, as views.
    fn rows(&self, lo: i32, hi: i32) -> Result<Stored> {
        let rows =
            |a: &Array| -> Result<Array> { Ok(ops::slice(a, &[lo, 0], &[hi, a.dim(1)], &[1, 1])?) };
        Ok(Stored {
            weight: rows(&self.weight)?,
            quant: match &self.quant {
                Some((s, b)) => Some((rows(s)?, rows(b)?)),
                None => None,
            },
        })
    }

    /// Points the parameters of `layer` at these arrays (the inference form's, so the
    /// weights are held once); `path` names the layer in errors.
    pub(crate) fn store_into(self, path: &str, layer: &mut AdaptableLinear) -> Result<()> {
        match (layer.base_mut(), self.quant) {
            (MaybeQuantized::Dense(l), None) => l.weight.set(self.weight),
            (MaybeQuantized::Quantized(q), Some((s, b))) => {
                let Some(biases) = q.biases.as_mut() else {
                    return Err(form_changed(path));
                };
                set_quantized([&mut q.weight, &mut q.scales, biases], [self.weight, s, b]);
            }
            _ => return Err(form_changed(path)),
        }
        Ok(())
    }

    /// [`Stored::store_into`] for a table.
    pub(crate) fn store_into_embedding(
        self,
        path: &str,
        table: &mut MaybeQuantized<nn::Embedding>,
    ) -> Result<()> {
        match (table, self.quant) {
            (MaybeQuantized::Dense(e), None) => e.weight.set(self.weight),
            (MaybeQuantized::Quantized(q), Some((s, b))) => {
                let Some(biases) = q.biases.as_mut() else {
                    return Err(form_changed(path));
                };
                set_quantized([&mut q.weight, &mut q.scales, biases], [self.weight, s, b]);
            }
            _ => return Err(form_changed(path)),
        }
        Ok(())
    }
}

/// Points a quantized layer's weight, scales and biases at these arrays.
fn set_quantized(params: [&mut Param; 3], arrays: [Array; 3]) {
    for (p, a) in params.into_iter().zip(arrays) {
        p.set(a);
    }
}

fn form_changed(path: &str) -> Error {
    Error::InvalidArgument(format!(
        "{path}: the inference form is not of the layer's kind (dense or quantized)"
    ))
}

impl Projections {
    /// Each part's arrays in the checkpoint's form: views of the joined weight's rows (or
    /// of the parts themselves when they could not join).
    pub(crate) fn stored_parts(&self) -> Result<Vec<Stored>> {
        let Some(joined) = &self.joined else {
            return self.parts.iter().map(Linear::stored).collect();
        };
        let all = joined.stored()?;
        let total = joined.out_features()?;
        let mut bounds = Vec::with_capacity(self.splits.len() + 2);
        bounds.push(0);
        bounds.extend(&self.splits);
        bounds.push(total);
        bounds.windows(2).map(|b| all.rows(b[0], b[1])).collect()
    }
}

impl Linear {
    /// The inference form of checkpoint layer `layer` (named `path`) in its device form,
    /// with the layer's parameters pointed at its arrays (held once).
    pub(crate) fn prepare_layer(
        path: &str,
        layer: &mut AdaptableLinear,
        products: Products,
    ) -> Result<Linear> {
        let linear = Linear::from_layer(path, layer)?.for_device(products)?;
        linear.stored()?.store_into(path, layer)?;
        Ok(linear)
    }
}

impl Projections {
    /// The joined inference form of checkpoint layers (`paths[i]` names `layers[i]`), with
    /// each layer's parameters pointed at its rows of the joined arrays (held once).
    pub(crate) fn prepare_layers(
        paths: &[String],
        layers: &mut [&mut AdaptableLinear],
        products: Products,
    ) -> Result<Projections> {
        let parts = paths
            .iter()
            .zip(layers.iter())
            .map(|(p, l)| Linear::from_layer(p, l))
            .collect::<Result<Vec<_>>>()?;
        let joined = Projections::new(parts, products)?;
        let stored = joined.stored_parts()?;
        if stored.len() != layers.len() {
            return Err(Error::Weights(format!(
                "{}: {} projections for {} layers",
                paths.join(", "),
                stored.len(),
                layers.len()
            )));
        }
        for ((s, p), l) in stored.into_iter().zip(paths).zip(layers.iter_mut()) {
            s.store_into(p, l)?;
        }
        Ok(joined)
    }
}
