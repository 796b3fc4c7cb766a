//! Per-sequence state of a language model: the keys and values of attention layers
//! ([`KvCache`]) and the fixed-size state of recurrent layers such as Gated DeltaNet or
//! Mamba ([`RecurrentCache`]: the last convolution inputs and the recurrent state).
//!
//! Every array keeps the batch on axis 0, so that sequences can be taken apart and put
//! together ([`Cache::extract`], [`Cache::filter`], [`Cache::merge`]), and a [`Cache`] can
//! go back to where it stood ([`Cache::snapshot`], [`Cache::restore`]).
//!
//! Sequences of different lengths share a batch the way mlx-lm's `BatchKVCache` has them:
//! aligned on the right, with per-sequence left padding in the attention layers
//! ([`KvCache::left_padding`]) that [`KvCache::positions`] and [`KvCache::mask`] account
//! for. Recurrent layers hold no positions and need no padding.

mod kv;

pub use kv::{KvCache, Positions};

use crate::error::{Error, Result};
use mlx_rs::{ops, Array};

/// State of one recurrent layer (Gated DeltaNet, Mamba): the last `K − 1` convolution
/// inputs (`[B, K − 1, channels]`) and the recurrent state (`[B, …]`, for Gated DeltaNet
/// the fp32 `[B, Hv, Dv, Dk]`). Its size does not grow with the sequence.
#[derive(Clone, Debug, Default)]
pub struct RecurrentCache {
    /// Convolution inputs carried to the next call (`None` before the first).
    pub conv: Option<Array>,
    /// Recurrent state (`None` before the first call, meaning zeros).
    pub recurrent: Option<Array>,
    /// Number of positions seen (in a batch merged from sequences of different lengths,
    /// the longest sequence's, as the attention layers count their columns).
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

    /// Every array this layer's cache holds.
    pub fn arrays(&self) -> Box<dyn Iterator<Item = &Array> + '_> {
        match self {
            LayerCache::Attention(c) => Box::new(c.arrays()),
            LayerCache::Recurrent(c) => Box::new(c.arrays()),
        }
    }
}

/// Where a [`Cache`] stood: see [`Cache::snapshot`].
pub struct Snapshot(Vec<Saved>);

/// One layer of a [`Snapshot`].
enum Saved {
    /// An attention layer's length and padding.
    Length(i32, Vec<i32>),
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

    /// Number of positions processed so far (in a batch of sequences of different
    /// lengths, the longest one's: see [`Cache::lengths`]).
    pub fn offset(&self) -> i32 {
        self.layers.first().map_or(0, LayerCache::offset)
    }

    /// Whether no layer has seen a position and none holds padding: a cache as
    /// [`LanguageModel::new_cache`](crate::LanguageModel::new_cache) makes it.
    pub fn is_empty(&self) -> bool {
        self.layers.iter().all(|l| match l {
            LayerCache::Attention(c) => c.offset() == 0 && c.left_padding().is_empty(),
            LayerCache::Recurrent(c) => c.offset == 0 && c.conv.is_none() && c.recurrent.is_none(),
        })
    }

    /// Number of positions each sequence of the batch has seen (the real ones, not the
    /// padding), from the first attention layer; [`Cache::offset`] for every sequence
    /// when the model has no attention layer. `None` before the first forward call.
    pub fn lengths(&self) -> Option<Vec<i32>> {
        let b = self.batch_size()?;
        let attention = self.layers.iter().find_map(|l| match l {
            LayerCache::Attention(c) => Some(c),
            LayerCache::Recurrent(_) => None,
        });
        match attention {
            Some(c) => c.lengths(),
            None => Some(vec![self.offset(); b as usize]),
        }
    }

    /// Every array the cache holds (to evaluate them together with the logits).
    pub fn arrays(&self) -> Vec<&Array> {
        self.layers.iter().flat_map(LayerCache::arrays).collect()
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
                    LayerCache::Attention(c) => Saved::Length(c.offset, c.left_padding.clone()),
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
                (LayerCache::Attention(c), Saved::Length(n, pad)) => {
                    *n <= c.offset && pad.iter().all(|p| p <= n)
                }
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
                (LayerCache::Attention(c), Saved::Length(n, pad)) => {
                    c.offset = n;
                    c.left_padding = pad;
                }
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

    /// The cache of the sequences at `indices` (in that order) of the batch, each with its
    /// padding. Leading columns that are padding in every kept sequence are dropped, so a
    /// batch that sequences join and leave does not grow for ever (and one sequence taken
    /// out has no padding).
    pub fn filter(&self, indices: &[i32]) -> Result<Cache> {
        let n = self.batch_size().unwrap_or(0);
        if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i >= n) {
            return Err(Error::InvalidArgument(format!(
                "sequence {bad} is outside a batch of {n}"
            )));
        }
        let idx = Array::from_slice(indices, &[indices.len() as i32])?;
        let take = |a: &Array| -> Result<Array> { Ok(ops::take_axis(a, &idx, 0)?) };
        trimmed(self.map_layers(|c| c.filter(indices, &idx), |c| c.map(take))?)
    }

    /// One cache per sequence of a batch that ran aligned on the left and padded on the
    /// right ([`PaddedRows`](crate::model::PaddedRows)): sequence `i` keeps the first
    /// `lengths[i]` positions of the attention layers, and its recurrent layers' states
    /// as they are (the model left them at the sequence's own end). Each part is a copy,
    /// so a part kept apart (the prefix cache) does not hold the batch's buffers.
    pub fn split_rows(&self, lengths: &[i32]) -> Result<Vec<Cache>> {
        let n = self.batch_size().unwrap_or(0);
        let offset = self.offset();
        if n as usize != lengths.len() || lengths.iter().any(|&l| l < 1 || l > offset) {
            return Err(Error::InvalidArgument(format!(
                "lengths {lengths:?} do not fit a batch of {n} sequences of {offset} positions"
            )));
        }
        if self.layers.iter().any(|l| match l {
            LayerCache::Attention(c) => c.has_padding(),
            LayerCache::Recurrent(_) => false,
        }) {
            return Err(Error::InvalidArgument(
                "a batch with left padding cannot be split by lengths".into(),
            ));
        }
        (0..n)
            .zip(lengths)
            .map(|(i, &len)| {
                let idx = Array::from_slice(&[i], &[1])?;
                let take = |a: &Array| -> Result<Array> { Ok(ops::take_axis(a, &idx, 0)?) };
                let layers = self.map_layers(
                    |c| c.row(i, len),
                    |c| {
                        Ok(RecurrentCache {
                            offset: len,
                            ..c.map(take)?
                        })
                    },
                )?;
                Ok(Cache { layers })
            })
            .collect()
    }

    /// Each layer made anew: attention layers by `attention`, recurrent ones by
    /// `recurrent`.
    fn map_layers(
        &self,
        attention: impl Fn(&KvCache) -> Result<KvCache>,
        recurrent: impl Fn(&RecurrentCache) -> Result<RecurrentCache>,
    ) -> Result<Vec<LayerCache>> {
        self.layers
            .iter()
            .map(|l| {
                Ok(match l {
                    LayerCache::Attention(c) => LayerCache::Attention(attention(c)?),
                    LayerCache::Recurrent(c) => LayerCache::Recurrent(recurrent(c)?),
                })
            })
            .collect()
    }

    /// The cache of sequence `index` of the batch (a batch of one).
    pub fn extract(&self, index: i32) -> Result<Cache> {
        self.filter(&[index])
    }

    /// One batch from caches of the same model, in order (each a batch of one or more
    /// sequences). Caches of different lengths are aligned on the right: the attention
    /// layers of the shorter ones get columns of zeros in front, recorded as their
    /// sequences' left padding (added to any padding they already carry); recurrent layers
    /// join along the batch as they are.
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
            let offset = caches
                .iter()
                .map(|c| c.layers[i].offset())
                .max()
                .unwrap_or(0);
            let mismatch = || {
                Error::InvalidArgument(format!(
                    "layer {i}: an attention cache and a recurrent cache cannot be merged"
                ))
            };
            layers.push(match layer0 {
                LayerCache::Attention(_) => {
                    let parts = caches
                        .iter()
                        .map(|c| match &c.layers[i] {
                            LayerCache::Attention(kv) => Ok(kv),
                            LayerCache::Recurrent(_) => Err(mismatch()),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let merged = KvCache::merged(&parts, offset)
                        .map_err(|e| Error::InvalidArgument(format!("layer {i}: {e}")))?;
                    LayerCache::Attention(merged.unwrap_or(KvCache {
                        offset,
                        ..KvCache::default()
                    }))
                }
                LayerCache::Recurrent(_) => {
                    let (mut conv, mut recurrent) = (Vec::new(), Vec::new());
                    for cache in caches {
                        let LayerCache::Recurrent(c) = &cache.layers[i] else {
                            return Err(mismatch());
                        };
                        conv.extend(c.conv.clone());
                        recurrent.extend(c.recurrent.clone());
                    }
                    LayerCache::Recurrent(RecurrentCache {
                        conv: join(conv, caches.len(), i)?,
                        recurrent: join(recurrent, caches.len(), i)?,
                        offset,
                    })
                }
            });
        }
        trimmed(layers)
    }
}

/// A cache of `layers` without the leading attention columns that are padding in every
/// sequence; the recurrent layers' offsets follow the attention layers' (they count the
/// same columns).
fn trimmed(layers: Vec<LayerCache>) -> Result<Cache> {
    let mut offset = None;
    let mut layers = layers
        .into_iter()
        .map(|l| {
            Ok(match l {
                LayerCache::Attention(c) => {
                    let c = c.trimmed()?;
                    offset = Some(c.offset);
                    LayerCache::Attention(c)
                }
                recurrent => recurrent,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(offset) = offset {
        for l in &mut layers {
            if let LayerCache::Recurrent(c) = l {
                c.offset = offset;
            }
        }
    }
    Ok(Cache { layers })
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
