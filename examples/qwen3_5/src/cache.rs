//! Per-sequence state: KV cache of attention layers, conv and recurrent state of DeltaNet layers.

use crate::error::Result;
use mlx_rs::{ops, Array};

/// Keys and values of one attention layer, `[B, kv_heads, T, head_dim]`, kept in buffers
/// that grow in steps of [`KvCache::STEP`] positions and are filled in place.
#[derive(Clone, Default)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl KvCache {
    /// Positions added per buffer growth.
    pub const STEP: i32 = 256;

    /// Number of cached positions.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Appends `keys`/`values` (`[B, H, L, D]`) and returns the whole buffers
    /// (`[B, H, capacity, D]`, the first [`KvCache::offset`] positions valid), for kernels
    /// that read the valid prefix themselves instead of through a strided slice.
    pub fn update_buffers(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let prev = self.offset;
        let (b, h, l, dk) = dims4(keys)?;
        let dv = values.try_dim(3)?;
        let capacity = self.keys.as_ref().map(|k| k.shape()[2]).unwrap_or(0);
        if self.keys.is_none() || prev + l > capacity {
            let n_steps = (Self::STEP + l - 1) / Self::STEP;
            let new_k = ops::zeros(&[b, h, n_steps * Self::STEP, dk], keys.dtype())?;
            let new_v = ops::zeros(&[b, h, n_steps * Self::STEP, dv], values.dtype())?;
            match (self.keys.take(), self.values.take()) {
                (Some(mut k), Some(mut v)) => {
                    if prev % Self::STEP != 0 {
                        k = ops::slice(&k, &[0, 0, 0, 0], &[b, h, prev, dk], &[1, 1, 1, 1])?;
                        v = ops::slice(&v, &[0, 0, 0, 0], &[b, h, prev, dv], &[1, 1, 1, 1])?;
                    }
                    self.keys = Some(ops::concatenate_axis(&[k, new_k], 2)?);
                    self.values = Some(ops::concatenate_axis(&[v, new_v], 2)?);
                }
                _ => {
                    self.keys = Some(new_k);
                    self.values = Some(new_v);
                }
            }
        }
        self.offset += l;
        let end = self.offset;
        let k_buf = self.keys.take().expect("allocated above");
        let v_buf = self.values.take().expect("allocated above");
        let k_buf = ops::slice_update(
            &k_buf,
            keys,
            &[0, 0, prev, 0],
            &[b, h, end, dk],
            &[1, 1, 1, 1],
        )?;
        let v_buf = ops::slice_update(
            &v_buf,
            values,
            &[0, 0, prev, 0],
            &[b, h, end, dv],
            &[1, 1, 1, 1],
        )?;
        self.keys = Some(k_buf.clone());
        self.values = Some(v_buf.clone());
        Ok((k_buf, v_buf))
    }

    /// Appends `keys`/`values` (`[B, H, L, D]`) and returns all cached keys and values.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let (k_buf, v_buf) = self.update_buffers(keys, values)?;
        let (b, h, end) = (k_buf.dim(0), k_buf.dim(1), self.offset);
        let (dk, dv) = (k_buf.dim(3), v_buf.dim(3));
        let cap = k_buf.shape()[2];
        let (k_out, v_out) = if end < cap {
            (
                ops::slice(&k_buf, &[0, 0, 0, 0], &[b, h, end, dk], &[1, 1, 1, 1])?,
                ops::slice(&v_buf, &[0, 0, 0, 0], &[b, h, end, dv], &[1, 1, 1, 1])?,
            )
        } else {
            (k_buf.clone(), v_buf.clone())
        };
        Ok((k_out, v_out))
    }

    /// The arrays held (for evaluation).
    fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(self.values.iter())
    }
}

fn dims4(a: &Array) -> Result<(i32, i32, i32, i32)> {
    match a.shape() {
        &[b, h, l, d] => Ok((b, h, l, d)),
        s => Err(crate::error::Error::InvalidArgument(format!(
            "expected a [B, H, L, D] array, found shape {s:?}"
        ))),
    }
}

/// State of one Gated DeltaNet layer: the last `K − 1` convolution inputs
/// `[B, K − 1, conv_dim]` and the fp32 recurrent state `[B, Hv, Dv, Dk]`.
#[derive(Clone, Default)]
pub struct DeltaNetCache {
    /// Convolution inputs carried to the next call (`None` before the first).
    pub conv: Option<Array>,
    /// Recurrent state (`None` before the first call, meaning zeros).
    pub recurrent: Option<Array>,
    /// Number of positions seen.
    pub offset: i32,
}

impl DeltaNetCache {
    fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.conv.iter().chain(self.recurrent.iter())
    }
}

/// The cache of one layer.
#[derive(Clone)]
pub enum LayerCache {
    /// An attention layer's KV cache.
    Attention(KvCache),
    /// A DeltaNet layer's conv and recurrent state.
    DeltaNet(DeltaNetCache),
}

/// Where a [`Cache`] stood: see [`Cache::checkpoint`].
pub(crate) struct Checkpoint(Vec<Saved>);

/// One layer of a [`Checkpoint`].
enum Saved {
    /// An attention layer's length.
    Length(i32),
    /// A DeltaNet layer's state.
    State(DeltaNetCache),
}

/// The whole per-sequence state of a model. Make one with
/// [`Model::new_cache`](crate::model::Model::new_cache); feed tokens through
/// [`Model::forward`](crate::model::Model::forward) with it in order.
#[derive(Clone)]
pub struct Cache {
    /// One entry per decoder layer.
    pub layers: Vec<LayerCache>,
}

impl Cache {
    /// Number of positions processed so far.
    pub fn offset(&self) -> i32 {
        match self.layers.first() {
            Some(LayerCache::Attention(c)) => c.offset(),
            Some(LayerCache::DeltaNet(c)) => c.offset,
            None => 0,
        }
    }

    /// Every array the cache holds (to evaluate them together with the logits).
    pub fn arrays(&self) -> Vec<&Array> {
        self.layers
            .iter()
            .flat_map(|l| -> Box<dyn Iterator<Item = &Array>> {
                match l {
                    LayerCache::Attention(c) => Box::new(c.arrays()),
                    LayerCache::DeltaNet(c) => Box::new(c.arrays()),
                }
            })
            .collect()
    }

    /// Bytes held by the cache's arrays.
    pub fn nbytes(&self) -> usize {
        self.arrays().iter().map(|a| a.nbytes()).sum()
    }

    /// A record of where the cache stands, to go back to with [`Cache::restore`] after
    /// steps taken past it (a decode step computed ahead of a stop token). It holds the
    /// DeltaNet layers' states (each step makes new ones, so keeping the old ones costs
    /// no copy) and the attention layers' lengths only: their buffers are written in
    /// place past the length, and keeping the old buffers alive would make every step copy
    /// them.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint(
            self.layers
                .iter()
                .map(|l| match l {
                    LayerCache::Attention(c) => Saved::Length(c.offset),
                    LayerCache::DeltaNet(c) => Saved::State(c.clone()),
                })
                .collect(),
        )
    }

    /// Goes back to `checkpoint`, taken from this cache before the steps it undoes.
    /// Positions past the restored length stay in the attention buffers; attention reads
    /// only up to the length, and the next steps overwrite them.
    pub(crate) fn restore(&mut self, checkpoint: Checkpoint) -> Result<()> {
        if checkpoint.0.len() != self.layers.len() {
            return Err(crate::error::Error::InvalidArgument(format!(
                "a checkpoint of {} layers does not fit a cache of {}",
                checkpoint.0.len(),
                self.layers.len()
            )));
        }
        for (layer, saved) in self.layers.iter_mut().zip(checkpoint.0) {
            match (layer, saved) {
                (LayerCache::Attention(c), Saved::Length(n)) if n <= c.offset => c.offset = n,
                (LayerCache::DeltaNet(c), Saved::State(s)) if s.offset <= c.offset => *c = s,
                _ => {
                    return Err(crate::error::Error::InvalidArgument(
                        "a checkpoint does not match this cache (another cache, or an \
                         earlier restore)"
                            .into(),
                    ))
                }
            }
        }
        Ok(())
    }
}
