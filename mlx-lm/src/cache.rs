//! Per-sequence state of a language model: the keys and values of attention layers
//! ([`KvCache`]) and the fixed-size state of recurrent layers such as Gated DeltaNet or
//! Mamba ([`RecurrentCache`]: the last convolution inputs and the recurrent state).
//!
//! Every array keeps the batch on axis 0, so that sequences can be taken apart and put
//! together ([`Cache::extract`], [`Cache::filter`], [`Cache::merge`]), and a [`Cache`] can
//! go back to where it stood ([`Cache::snapshot`], [`Cache::restore`]).

use crate::error::{Error, Result};
use mlx_rs::{ops, Array};

/// Keys and values of one attention layer, `[B, kv_heads, T, head_dim]`, kept in buffers
/// that grow in steps of [`KvCache::STEP`] positions and are filled in place.
#[derive(Clone, Debug, Default)]
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
        let (vb, vh, vl, dv) = dims4(values)?;
        if (vb, vh, vl) != (b, h, l) {
            return Err(Error::InvalidArgument(format!(
                "keys {:?} and values {:?} differ in batch, heads or length",
                keys.shape(),
                values.shape()
            )));
        }
        if let Some(k) = &self.keys {
            if k.shape()[..2] != [b, h] || k.shape()[3] != dk {
                return Err(Error::InvalidArgument(format!(
                    "keys {:?} do not fit a cache of {:?}",
                    keys.shape(),
                    k.shape()
                )));
            }
        }
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
        let end = prev + l;
        let (Some(k_buf), Some(v_buf)) = (self.keys.take(), self.values.take()) else {
            return Err(Error::InvalidArgument("KV cache: buffers lost".into()));
        };
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
        self.offset = end;
        self.keys = Some(k_buf.clone());
        self.values = Some(v_buf.clone());
        Ok((k_buf, v_buf))
    }

    /// Appends `keys`/`values` (`[B, H, L, D]`) and returns all cached keys and values
    /// (`[B, H, offset, D]`).
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let (k_buf, v_buf) = self.update_buffers(keys, values)?;
        Ok((self.valid(&k_buf)?, self.valid(&v_buf)?))
    }

    /// The cached keys and values (`[B, H, offset, D]`), `None` when empty.
    pub fn state(&self) -> Result<Option<(Array, Array)>> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => Ok(Some((self.valid(k)?, self.valid(v)?))),
            _ => Ok(None),
        }
    }

    /// The first `offset` positions of a buffer.
    fn valid(&self, buf: &Array) -> Result<Array> {
        let shape = buf.shape();
        if self.offset >= shape[2] {
            return Ok(buf.clone());
        }
        Ok(ops::slice(
            buf,
            &[0, 0, 0, 0],
            &[shape[0], shape[1], self.offset, shape[3]],
            &[1, 1, 1, 1],
        )?)
    }

    /// The arrays held (for evaluation).
    fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(self.values.iter())
    }

    /// This cache with `f` applied to its buffers (batch-axis operations).
    fn map(&self, f: impl Fn(&Array) -> Result<Array>) -> Result<KvCache> {
        Ok(KvCache {
            keys: self.keys.as_ref().map(&f).transpose()?,
            values: self.values.as_ref().map(&f).transpose()?,
            offset: self.offset,
        })
    }
}

fn dims4(a: &Array) -> Result<(i32, i32, i32, i32)> {
    match a.shape() {
        &[b, h, l, d] => Ok((b, h, l, d)),
        s => Err(Error::InvalidArgument(format!(
            "expected a [B, H, L, D] array, found shape {s:?}"
        ))),
    }
}

/// State of one recurrent layer (Gated DeltaNet, Mamba): the last `K − 1` convolution
/// inputs (`[B, K − 1, channels]`) and the recurrent state (`[B, …]`, for Gated DeltaNet
/// the fp32 `[B, Hv, Dv, Dk]`). Its size does not grow with the sequence.
#[derive(Clone, Debug, Default)]
pub struct RecurrentCache {
    /// Convolution inputs carried to the next call (`None` before the first).
    pub conv: Option<Array>,
    /// Recurrent state (`None` before the first call, meaning zeros).
    pub recurrent: Option<Array>,
    /// Number of positions seen.
    pub offset: i32,
}

impl RecurrentCache {
    fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.conv.iter().chain(self.recurrent.iter())
    }

    fn map(&self, f: impl Fn(&Array) -> Result<Array>) -> Result<RecurrentCache> {
        Ok(RecurrentCache {
            conv: self.conv.as_ref().map(&f).transpose()?,
            recurrent: self.recurrent.as_ref().map(&f).transpose()?,
            offset: self.offset,
        })
    }
}

/// The cache of one layer.
#[derive(Clone, Debug)]
pub enum LayerCache {
    /// An attention layer's keys and values.
    Attention(KvCache),
    /// A recurrent layer's convolution and recurrent state.
    Recurrent(RecurrentCache),
}

impl LayerCache {
    /// Positions this layer has seen.
    pub fn offset(&self) -> i32 {
        match self {
            LayerCache::Attention(c) => c.offset(),
            LayerCache::Recurrent(c) => c.offset,
        }
    }

    fn map(&self, f: impl Fn(&Array) -> Result<Array>) -> Result<LayerCache> {
        Ok(match self {
            LayerCache::Attention(c) => LayerCache::Attention(c.map(f)?),
            LayerCache::Recurrent(c) => LayerCache::Recurrent(c.map(f)?),
        })
    }
}

/// Where a [`Cache`] stood: see [`Cache::snapshot`].
pub struct Snapshot(Vec<Saved>);

/// One layer of a [`Snapshot`].
enum Saved {
    /// An attention layer's length.
    Length(i32),
    /// A recurrent layer's state.
    State(RecurrentCache),
}

/// The whole per-sequence (or per-batch) state of a model: one [`LayerCache`] per layer.
/// A model makes it ([`LanguageModel::new_cache`](crate::LanguageModel::new_cache));
/// tokens go through [`LanguageModel::forward`](crate::LanguageModel::forward) with it in
/// order.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    /// One entry per layer.
    pub layers: Vec<LayerCache>,
}

impl Cache {
    /// A cache of these layers.
    pub fn new(layers: Vec<LayerCache>) -> Cache {
        Cache { layers }
    }

    /// Number of positions processed so far.
    pub fn offset(&self) -> i32 {
        self.layers.first().map_or(0, LayerCache::offset)
    }

    /// Every array the cache holds (to evaluate them together with the logits).
    pub fn arrays(&self) -> Vec<&Array> {
        self.layers
            .iter()
            .flat_map(|l| -> Box<dyn Iterator<Item = &Array>> {
                match l {
                    LayerCache::Attention(c) => Box::new(c.arrays()),
                    LayerCache::Recurrent(c) => Box::new(c.arrays()),
                }
            })
            .collect()
    }

    /// Bytes held by the cache's arrays.
    pub fn nbytes(&self) -> usize {
        self.arrays().iter().map(|a| a.nbytes()).sum()
    }

    /// A record of where the cache stands, to go back to with [`Cache::restore`] after
    /// steps taken past it (a decode step computed ahead of a stop token, a speculative
    /// step). It holds the recurrent layers' states (each step makes new ones, so keeping
    /// the old ones costs no copy) and the attention layers' lengths only: their buffers
    /// are written in place past the length, and keeping the old buffers alive would make
    /// every step copy them.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.layers
                .iter()
                .map(|l| match l {
                    LayerCache::Attention(c) => Saved::Length(c.offset),
                    LayerCache::Recurrent(c) => Saved::State(c.clone()),
                })
                .collect(),
        )
    }

    /// Goes back to `snapshot`, taken from this cache before the steps it undoes.
    /// Positions past the restored length stay in the attention buffers; attention reads
    /// only up to the length, and the next steps overwrite them.
    pub fn restore(&mut self, snapshot: Snapshot) -> Result<()> {
        if snapshot.0.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "a snapshot of {} layers does not fit a cache of {}",
                snapshot.0.len(),
                self.layers.len()
            )));
        }
        let fits = self
            .layers
            .iter()
            .zip(&snapshot.0)
            .all(|(layer, saved)| match (layer, saved) {
                (LayerCache::Attention(c), Saved::Length(n)) => *n <= c.offset,
                (LayerCache::Recurrent(c), Saved::State(s)) => s.offset <= c.offset,
                _ => false,
            });
        if !fits {
            return Err(Error::InvalidArgument(
                "a snapshot does not match this cache (another cache, or an earlier restore)"
                    .into(),
            ));
        }
        for (layer, saved) in self.layers.iter_mut().zip(snapshot.0) {
            match (layer, saved) {
                (LayerCache::Attention(c), Saved::Length(n)) => c.offset = n,
                (LayerCache::Recurrent(c), Saved::State(s)) => *c = s,
                _ => unreachable!("checked above"),
            }
        }
        Ok(())
    }

    /// The number of sequences (the batch size), `None` before the first forward call.
    pub fn batch_size(&self) -> Option<i32> {
        self.arrays().first().map(|a| a.shape()[0])
    }

    /// The cache of the sequences at `indices` (in that order) of the batch.
    pub fn filter(&self, indices: &[i32]) -> Result<Cache> {
        let n = self.batch_size().unwrap_or(0);
        if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i >= n) {
            return Err(Error::InvalidArgument(format!(
                "sequence {bad} is outside a batch of {n}"
            )));
        }
        let idx = Array::from_slice(indices, &[indices.len() as i32])?;
        self.map(|a| Ok(ops::take_axis(a, &idx, 0)?))
    }

    /// The cache of sequence `index` of the batch (a batch of one).
    pub fn extract(&self, index: i32) -> Result<Cache> {
        self.filter(&[index])
    }

    /// One batch from caches of the same model that have seen the same number of
    /// positions (sequences of different lengths need padding and per-sequence offsets,
    /// which these caches do not keep).
    pub fn merge(caches: &[Cache]) -> Result<Cache> {
        let Some(first) = caches.first() else {
            return Err(Error::InvalidArgument("no caches to merge".into()));
        };
        if caches.iter().any(|c| c.layers.len() != first.layers.len()) {
            return Err(Error::InvalidArgument(
                "caches of models with different layer counts cannot be merged".into(),
            ));
        }
        let mut layers = Vec::with_capacity(first.layers.len());
        for (i, layer0) in first.layers.iter().enumerate() {
            let offset = layer0.offset();
            let mut a = Vec::new();
            let mut b = Vec::new();
            for cache in caches {
                let layer = &cache.layers[i];
                if layer.offset() != offset {
                    return Err(Error::InvalidArgument(format!(
                        "layer {i}: caches of different lengths cannot be merged"
                    )));
                }
                match (layer0, layer) {
                    (LayerCache::Attention(_), LayerCache::Attention(c)) => {
                        if let Some((k, v)) = c.state()? {
                            a.push(k);
                            b.push(v);
                        }
                    }
                    (LayerCache::Recurrent(_), LayerCache::Recurrent(c)) => {
                        a.extend(c.conv.clone());
                        b.extend(c.recurrent.clone());
                    }
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "layer {i}: an attention cache and a recurrent cache cannot be \
                             merged"
                        )))
                    }
                }
            }
            let (a, b) = (join(a, caches.len(), i)?, join(b, caches.len(), i)?);
            layers.push(match layer0 {
                LayerCache::Attention(_) => LayerCache::Attention(KvCache {
                    keys: a,
                    values: b,
                    offset,
                }),
                LayerCache::Recurrent(_) => LayerCache::Recurrent(RecurrentCache {
                    conv: a,
                    recurrent: b,
                    offset,
                }),
            });
        }
        Ok(Cache { layers })
    }

    fn map(&self, f: impl Fn(&Array) -> Result<Array>) -> Result<Cache> {
        Ok(Cache {
            layers: self
                .layers
                .iter()
                .map(|l| l.map(&f))
                .collect::<Result<_>>()?,
        })
    }
}

/// The parts of one layer's array from every cache, joined along the batch: `None` when
/// no cache holds it yet.
fn join(parts: Vec<Array>, caches: usize, layer: usize) -> Result<Option<Array>> {
    match parts.len() {
        0 => Ok(None),
        n if n == caches => Ok(Some(ops::concatenate_axis(&parts, 0)?)),
        _ => Err(Error::InvalidArgument(format!(
            "layer {layer}: some caches are empty and others are not"
        ))),
    }
}
