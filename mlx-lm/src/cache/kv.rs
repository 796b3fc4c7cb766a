//! The keys and values of one attention layer, and the per-sequence left padding that
//! lets sequences of different lengths share one batch.

use crate::error::{Error, Result};
use crate::kernels::attention::StepMeta;
use mlx_rs::{fast, ops, Array, Dtype};

/// Keys and values of one attention layer, `[B, kv_heads, T, head_dim]`, kept in buffers
/// that grow in steps of [`KvCache::STEP`] positions and are filled in place.
///
/// A batch of sequences of different lengths (made by [`Cache::merge`](super::Cache::merge))
/// is aligned on the right: sequence `i` starts after `left_padding()[i]` columns of
/// zeros that attention must not see. Models ask the cache for the positions of the new
/// tokens ([`KvCache::positions`]) and for the mask that hides the padding
/// ([`KvCache::mask`]); without padding these are a plain offset and `None`, and the
/// model runs exactly as for one sequence.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    pub(super) keys: Option<Array>,
    pub(super) values: Option<Array>,
    /// Columns written (padding included).
    pub(super) offset: i32,
    /// Leading padding columns per sequence; empty when there is none.
    pub(super) left_padding: Vec<i32>,
    /// The attention decode kernels' meta for the next token as the last token's kernel
    /// left it on the device ([`KvCache::keep_step_meta`]); used while it still describes
    /// this cache.
    pub(super) next_meta: Option<StepMeta>,
}

/// Where the new tokens of a batch sit, for RoPE: see [`KvCache::positions`].
#[derive(Clone, Debug)]
pub enum Positions {
    /// Every sequence continues at the same position (no padding).
    Shared(i32),
    /// The position of each sequence's next token, `[B]` int32 (a padded batch).
    PerSequence(Array),
}

impl Positions {
    /// Rotates `x` (`[B, H, L, D]`) with RoPE over its `dims` leading features, its `L`
    /// tokens at these positions onwards: [`fast::rope`] for a shared offset,
    /// [`fast::rope_dynamic`] with one offset per sequence otherwise.
    pub fn rope(&self, x: &Array, dims: i32, options: fast::RopeOptions<'_>) -> Result<Array> {
        Ok(match self {
            Positions::Shared(offset) => fast::rope(x, dims, *offset, options)?,
            Positions::PerSequence(offsets) => fast::rope_dynamic(x, dims, offsets, options)?,
        })
    }
}

impl KvCache {
    /// Positions added per buffer growth.
    pub const STEP: i32 = 256;

    /// Number of cached columns: the positions of every sequence when there is no
    /// padding, of the longest sequence in a padded batch (see [`KvCache::lengths`]).
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Leading padding columns of each sequence; empty when the batch has no padding.
    pub fn left_padding(&self) -> &[i32] {
        &self.left_padding
    }

    /// Whether some sequence of the batch starts after padding columns.
    pub fn has_padding(&self) -> bool {
        self.left_padding.iter().any(|&p| p != 0)
    }

    /// Number of real (not padding) positions of each sequence, `None` before the first
    /// update (when the batch size is not known yet).
    pub fn lengths(&self) -> Option<Vec<i32>> {
        let b = self.keys.as_ref()?.shape()[0];
        Some(match self.has_padding() {
            true => self.left_padding.iter().map(|p| self.offset - p).collect(),
            false => vec![self.offset; b as usize],
        })
    }

    /// The positions of the next tokens, for RoPE: [`Positions::Shared`] with
    /// [`KvCache::offset`] when there is no padding, else [`Positions::PerSequence`] with
    /// `offset - left_padding[i]` per sequence. Ask before [`KvCache::update_and_fetch`].
    pub fn positions(&self) -> Result<Positions> {
        if !self.has_padding() {
            return Ok(Positions::Shared(self.offset));
        }
        let p: Vec<i32> = self.left_padding.iter().map(|p| self.offset - p).collect();
        Ok(Positions::PerSequence(Array::from_slice(
            &p,
            &[p.len() as i32],
        )?))
    }

    /// The attention mask for `l` new queries: `None` when there is no padding (attend
    /// causally as for one sequence), else a boolean `[B, 1, l, offset + l]` (`true` =
    /// attend) that is causal and hides each sequence's padding columns. Ask before
    /// [`KvCache::update_and_fetch`]; the mask fits the keys it then returns.
    pub fn mask(&self, l: i32) -> Result<Option<Array>> {
        if !self.has_padding() {
            return Ok(None);
        }
        let (b, t) = (self.left_padding.len() as i32, self.offset + l);
        let q = ops::arange(self.offset as f64, t as f64, 1.0, Dtype::Int32)?.reshape(&[l, 1])?;
        let k = ops::arange(0.0, t as f64, 1.0, Dtype::Int32)?.reshape(&[1, t])?;
        let pad = Array::from_slice(&self.left_padding, &[b, 1, 1, 1])?;
        let causal = k.less_equal(&q)?;
        Ok(Some(causal.logical_and(&k.greater_equal(&pad)?)?))
    }

    /// Capacity of the buffers once `l` more columns are written (they grow when the
    /// columns do not fit, as [`KvCache::update_buffers`] grows them).
    pub fn capacity_after(&self, l: i32) -> i32 {
        let Some(k) = &self.keys else {
            return Self::growth(l);
        };
        let capacity = k.shape()[2];
        if self.offset + l <= capacity {
            return capacity;
        }
        let kept = match self.trims_on_growth() {
            true => self.offset,
            false => capacity,
        };
        kept + Self::growth(l)
    }

    /// Whether growing the buffers first cuts them to the valid columns (an offset inside
    /// a step), as [`KvCache::update_buffers`] does; else they are kept whole.
    fn trims_on_growth(&self) -> bool {
        self.offset % Self::STEP != 0
    }

    /// Columns the buffers grow by to take `l` more that do not fit: whole steps.
    fn growth(l: i32) -> i32 {
        (Self::STEP + l - 1) / Self::STEP * Self::STEP
    }

    /// The attention decode kernels' meta for the next single token of a batch of `b`
    /// rows ([`StepMeta`]): the one the last token's kernel left on the device
    /// ([`KvCache::keep_step_meta`]) while it still describes this cache (its length plus
    /// one, the capacity after the update, the same padding), else a new one written on
    /// the host. Ask before [`KvCache::update_buffers`].
    pub fn step_meta(&self, b: i32) -> Result<StepMeta> {
        let (n, cap) = (self.offset + 1, self.capacity_after(1));
        match &self.next_meta {
            Some(m)
                if m.n() == n
                    && m.cap() == cap
                    && m.batch() == b
                    && m.left_padding() == self.left_padding.as_slice() =>
            {
                Ok(m.clone())
            }
            _ => StepMeta::new(n, cap, b, &self.left_padding),
        }
    }

    /// Keeps the meta a decode kernel computed for the token after this one
    /// ([`attend`](crate::kernels::attention::attend)'s second result), for
    /// [`KvCache::step_meta`].
    pub fn keep_step_meta(&mut self, next: StepMeta) {
        self.next_meta = Some(next);
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
            let grown = Self::growth(l);
            let new_k = ops::zeros(&[b, h, grown, dk], keys.dtype())?;
            let new_v = ops::zeros(&[b, h, grown, dv], values.dtype())?;
            match (self.keys.take(), self.values.take()) {
                (Some(mut k), Some(mut v)) => {
                    if self.trims_on_growth() {
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

    /// The first [`KvCache::offset`] positions of a buffer from [`KvCache::update_buffers`].
    pub fn valid(&self, buf: &Array) -> Result<Array> {
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
    pub(super) fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(self.values.iter())
    }

    /// The sequences at `indices` (checked by the caller, also given as the array `idx`)
    /// of the batch, in that order, with their padding, less the leading columns that are
    /// padding in all of them. One gather of the buffers' kept columns (their spare room
    /// included, so the next update writes in place).
    pub(super) fn filter(&self, indices: &[i32], idx: &Array) -> Result<KvCache> {
        let padding: Vec<i32> = match self.has_padding() {
            true => indices
                .iter()
                .map(|&i| self.left_padding[i as usize])
                .collect(),
            false => Vec::new(),
        };
        let drop = padding.iter().copied().min().unwrap_or(0);
        let take = |a: &Option<Array>| -> Result<Option<Array>> {
            a.as_ref()
                .map(|a| {
                    let s = a.shape();
                    let kept = match drop {
                        0 => a.clone(),
                        _ => ops::slice(a, &[0, 0, drop, 0], s, &[1, 1, 1, 1])?,
                    };
                    Ok(ops::take_axis(&kept, idx, 0)?)
                })
                .transpose()
        };
        Ok(KvCache {
            keys: take(&self.keys)?,
            values: take(&self.values)?,
            offset: self.offset - drop,
            left_padding: padding.iter().map(|p| p - drop).collect(),
            next_meta: None,
        }
        .without_zero_padding())
    }

    /// Sequence `i` of a batch without padding, its first `len` positions only, in
    /// buffers of its own (see [`Cache::split_rows`](super::Cache::split_rows)).
    pub(super) fn row(&self, i: i32, len: i32) -> Result<KvCache> {
        let mut row = KvCache::default();
        if let (Some(k), Some(v)) = (&self.keys, &self.values) {
            let part = |a: &Array| -> Result<Array> {
                let s = a.shape();
                Ok(ops::slice(
                    a,
                    &[i, 0, 0, 0],
                    &[i + 1, s[1], len, s[3]],
                    &[1, 1, 1, 1],
                )?)
            };
            row.update_buffers(&part(k)?, &part(v)?)?;
        }
        Ok(row)
    }

    /// This cache without the leading columns that are padding in every sequence (all of
    /// them for a batch of one), so that a batch-of-one with padding is one without.
    pub(super) fn trimmed(self) -> Result<KvCache> {
        let drop = self.left_padding.iter().copied().min().unwrap_or(0);
        if drop <= 0 {
            return Ok(self.without_zero_padding());
        }
        let cut = |a: Option<Array>| -> Result<Option<Array>> {
            a.map(|a| {
                let s = a.shape();
                let kept = ops::slice(&a, &[0, 0, drop, 0], s, &[1, 1, 1, 1])?;
                // A copy, not a view: a view would keep the whole padded buffer alive
                // (a state kept apart, as the prefix cache keeps one, would hold more
                // memory than its size says).
                Ok(ops::contiguous(&kept, false)?)
            })
            .transpose()
        };
        Ok(KvCache {
            keys: cut(self.keys.clone())?,
            values: cut(self.values.clone())?,
            offset: self.offset - drop,
            left_padding: self.left_padding.iter().map(|p| p - drop).collect(),
            next_meta: None,
        }
        .without_zero_padding())
    }

    /// Padding of all zeros recorded as none (the one-sequence fast paths).
    fn without_zero_padding(mut self) -> KvCache {
        if !self.has_padding() {
            self.left_padding.clear();
        }
        self
    }

    /// `parts` (each a batch of one or more sequences) as one batch aligned on the right
    /// at `offset` columns (at least each part's): a part shorter by `p` columns gets `p`
    /// more padding. Each part is written once into buffers that keep room for the next
    /// positions, so the next update writes in place. `None` when every part is empty, an
    /// error when some are and others are not.
    pub(super) fn merged(parts: &[&KvCache], offset: i32) -> Result<Option<KvCache>> {
        let states = parts
            .iter()
            .map(|c| c.state())
            .collect::<Result<Vec<_>>>()?;
        if states.iter().all(Option::is_none) {
            return Ok(None);
        }
        let filled = states.iter().flatten().collect::<Vec<_>>();
        if filled.len() != parts.len() {
            return Err(Error::InvalidArgument(
                "some caches are empty and others are not".into(),
            ));
        }
        let (k0, v0) = filled[0];
        let (h, dk, dv) = (k0.shape()[1], k0.shape()[3], v0.shape()[3]);
        let b: i32 = filled.iter().map(|(k, _)| k.shape()[0]).sum();
        let capacity = (offset / Self::STEP + 1) * Self::STEP;
        let mut keys = ops::zeros(&[b, h, capacity, dk], k0.dtype())?;
        let mut values = ops::zeros(&[b, h, capacity, dv], v0.dtype())?;
        let mut left_padding = Vec::with_capacity(b as usize);
        let mut row = 0;
        for (c, (k, v)) in parts.iter().zip(filled) {
            let (n, pad) = (k.shape()[0], offset - c.offset);
            if k.shape()[1..] != [h, c.offset, dk] || v.shape()[1..] != [h, c.offset, dv] {
                return Err(Error::InvalidArgument(format!(
                    "caches of {:?} and {:?} cannot be merged",
                    k0.shape(),
                    k.shape()
                )));
            }
            let at = |d: i32| ([row, 0, pad, 0], [row + n, h, offset, d]);
            let (start, stop) = at(dk);
            keys = ops::slice_update(&keys, k, &start, &stop, &[1, 1, 1, 1])?;
            let (start, stop) = at(dv);
            values = ops::slice_update(&values, v, &start, &stop, &[1, 1, 1, 1])?;
            match c.left_padding.is_empty() {
                true => left_padding.extend(std::iter::repeat_n(pad, n as usize)),
                false => left_padding.extend(c.left_padding.iter().map(|p| p + pad)),
            }
            row += n;
        }
        Ok(Some(KvCache {
            keys: Some(keys),
            values: Some(values),
            offset,
            left_padding,
            next_meta: None,
        }))
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
