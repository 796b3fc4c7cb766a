//! Index values made safe before they reach MLX's gather, scatter and dynamic-slice
//! kernels, which trust them: an index outside its axis reads or writes outside the
//! array (Python MLX segfaults on `mx.take(mx.arange(10), mx.array([10**8]))`).
//!
//! Index arrays are lazy, so their values cannot be checked without evaluating them
//! (which would also fail inside `compile` and `vmap`). Instead every index array is
//! rewritten with a few cheap element-wise ops, the policy JAX uses:
//!
//! - negative values count from the end of the axis (`-1` is the last position), as in
//!   NumPy;
//! - **reads** (take, gather, `Array::index`, dynamic slices) *clamp* values outside
//!   `[-size, size)` to the nearest end of the axis;
//! - **writes** (scatter, put, `Array::index_put`) *drop* updates whose index lies
//!   outside the axis: the array keeps its old values there;
//! - dynamic slice starts are clamped so that the whole window lies inside the array.
//!
//! Only out-of-range values are affected: in-range indices give exactly MLX's results.

use crate::error::Error;
use crate::{ops, Array, Dtype, Result};

/// A scalar (or 1-D array, for several axes) of integers in `dtype`.
fn ints(values: &[i64], dtype: Dtype, one: bool) -> Result<Array> {
    let shape: &[i32] = if one { &[] } else { &[values.len() as i32] };
    match dtype {
        Dtype::Int64 => Array::from_slice(values, shape),
        Dtype::Uint64 => Array::from_slice(
            &values.iter().map(|&v| v.max(0) as u64).collect::<Vec<_>>(),
            shape,
        ),
        Dtype::Uint32 => Array::from_slice(
            &values
                .iter()
                .map(|&v| v.clamp(0, u32::MAX as i64) as u32)
                .collect::<Vec<_>>(),
            shape,
        ),
        _ => Array::from_slice(
            &values
                .iter()
                .map(|&v| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32)
                .collect::<Vec<_>>(),
            shape,
        ),
    }
}

/// The dtype the index arithmetic runs in: the index's own, widened from 8/16 bits (so
/// that the axis size fits) and to 64 bits for axes longer than `i32::MAX`.
fn work_dtype(dtype: Dtype, max_size: i64) -> Dtype {
    let big = max_size > i32::MAX as i64;
    match dtype {
        Dtype::Int64 | Dtype::Uint64 => dtype,
        Dtype::Uint32 if big => Dtype::Uint64,
        Dtype::Uint32 => Dtype::Uint32,
        _ if big => Dtype::Int64,
        _ => Dtype::Int32,
    }
}

/// The result of [`bound`]: in-range start positions, and which entries were in range.
pub(crate) struct Bounded {
    /// Positions in `[0, size - span]` (in-range values unchanged, after counting
    /// negatives from the end; others clamped).
    pub(crate) index: Array,
    /// `true` where the original value was a valid start (only when asked for).
    pub(crate) valid: Option<Array>,
}

/// Bounds the index array `idx` for axes of `sizes` elements where a window of `spans`
/// elements starts at each position. With one size, `idx` may have any shape; with
/// several, `idx` is a 1-D array of one start per axis (dynamic slices).
///
/// Returns `idx` unchanged when it is not an integer array (MLX reports that), or when a
/// span does not fit its axis (MLX reports that too).
pub(crate) fn bound(
    idx: &Array,
    sizes: &[i64],
    spans: &[i64],
    want_valid: bool,
) -> Result<Bounded> {
    let unchanged = || Bounded {
        index: idx.clone(),
        valid: None,
    };
    if !idx.dtype().is_integer() || sizes.len() != spans.len() || sizes.is_empty() {
        return Ok(unchanged());
    }
    if sizes.iter().zip(spans).any(|(&n, &s)| s < 0 || s > n) {
        return Ok(unchanged());
    }
    let one = sizes.len() == 1;
    let max_size = sizes.iter().copied().max().unwrap_or(0);
    let dtype = work_dtype(idx.dtype(), max_size);
    let x = if idx.dtype() == dtype {
        idx.clone()
    } else {
        idx.astype(dtype)?
    };
    let last_start: Vec<i64> = sizes.iter().zip(spans).map(|(n, s)| n - s).collect();
    let hi = ints(&last_start, dtype, one)?;
    let signed = !matches!(dtype, Dtype::Uint32 | Dtype::Uint64);
    if !signed {
        let index = ops::minimum(&x, &hi)?;
        let valid = if want_valid {
            Some(ops::less_equal(&x, &hi)?)
        } else {
            None
        };
        return Ok(Bounded { index, valid });
    }
    // x in [-n, n) → clip → Python-style remainder by n (never by 0) → [0, n - span].
    let lo = ints(&sizes.iter().map(|n| -n).collect::<Vec<_>>(), dtype, one)?;
    let top = ints(
        &sizes.iter().map(|n| (n - 1).max(0)).collect::<Vec<_>>(),
        dtype,
        one,
    )?;
    let divisor = ints(
        &sizes.iter().map(|&n| n.max(1)).collect::<Vec<_>>(),
        dtype,
        one,
    )?;
    let clipped = ops::clip(&x, Some(&lo), Some(&top))?;
    let wrapped = super::arithmetic::raw_remainder(&clipped, &divisor)?;
    let needs_window = spans.iter().any(|&s| s > 1) || sizes.contains(&0);
    let index = if needs_window {
        ops::minimum(&wrapped, &hi)?
    } else {
        wrapped.clone()
    };
    let valid = if want_valid {
        let n = ints(sizes, dtype, one)?;
        let mut v = x.greater_equal(&lo)?.logical_and(&x.less(&n)?)?;
        if needs_window {
            v = v.logical_and(&wrapped.less_equal(&hi)?)?;
        }
        Some(v)
    } else {
        None
    };
    Ok(Bounded { index, valid })
}

/// [`bound`] for reads along one axis of `size` elements (windows of `span`): fails on
/// an empty axis with a non-empty index, which nothing can clamp into.
pub(crate) fn read_index(idx: &Array, size: i64, span: i64, op: &str) -> Result<Array> {
    if size == 0 && span == 0 && idx.size() > 0 && idx.dtype().is_integer() {
        // Windows of 0 elements fit anywhere; position 0 is the only start.
        return Ok(bound(idx, &[size], &[span], false)?.index);
    }
    if size == 0 && idx.size() > 0 && idx.dtype().is_integer() {
        return Err(Error::Shape(format!(
            "{op}: cannot index an axis of size 0 with a non-empty index array"
        )));
    }
    if (0..=size).contains(&span) && known_in_range(idx, size - span) {
        return Ok(idx.clone());
    }
    Ok(bound(idx, &[size], &[span], false)?.index)
}

/// The most values of an index array that [`known_in_range`] reads on the host.
const HOST_CHECK_MAX: usize = 64;

/// Whether `idx` is a small integer array whose values are already computed (made from
/// host data, or evaluated) and all lie in `[0, last]`: bounding leaves such an index as
/// it is, so it needs no ops. Read on the host without waiting; `false` when that cannot
/// be said (lazy values, a traced array, more than [`HOST_CHECK_MAX`] values). A constant
/// index (a layer's fixed matrix in `gather_mm`) then adds nothing to each step's graph.
fn known_in_range(idx: &Array, last: i64) -> bool {
    fn all_in<T: crate::Element + TryInto<i64>>(idx: &Array, last: i64) -> bool {
        idx.as_slice::<T>().is_ok_and(|values| {
            values
                .iter()
                .all(|&v| v.try_into().is_ok_and(|v: i64| (0..=last).contains(&v)))
        })
    }
    if idx.size() > HOST_CHECK_MAX || !idx.dtype().is_integer() || !idx.is_available() {
        return false;
    }
    match idx.dtype() {
        Dtype::Uint8 => all_in::<u8>(idx, last),
        Dtype::Uint16 => all_in::<u16>(idx, last),
        Dtype::Uint32 => all_in::<u32>(idx, last),
        Dtype::Uint64 => all_in::<u64>(idx, last),
        Dtype::Int8 => all_in::<i8>(idx, last),
        Dtype::Int16 => all_in::<i16>(idx, last),
        Dtype::Int32 => all_in::<i32>(idx, last),
        Dtype::Int64 => all_in::<i64>(idx, last),
        _ => false,
    }
}

/// `mask` of `masked_scatter(a, mask, src)` limited to its first true entries (in
/// row-major order), as many as `src` has slices, or `None` when `src` cannot run out.
///
/// The slice each true entry takes is an index into `src`: MLX's CPU kernel aborts the
/// process when `src` runs out (its GPU kernels skip the write), so, as for other
/// writes, the entries past the end of `src` are dropped and keep the values of `a`.
pub(crate) fn limit_mask(a: &Array, mask: &Array, src: &Array) -> Result<Option<Array>> {
    // MLX broadcasts a `src` without the leading axis to one slice per mask entry.
    if src.ndim() <= a.ndim().saturating_sub(mask.ndim()) {
        return Ok(None);
    }
    let available = src.shape()[0] as i64;
    if available >= mask.size() as i64 {
        return Ok(None);
    }
    let dtype = work_dtype(Dtype::Int32, mask.size() as i64);
    let flat = mask.astype(dtype)?.reshape(&[-1])?;
    let rank = ops::cumsum(&flat, false, true, None)?;
    let keep = rank.less_equal(&ints(&[available], dtype, true)?)?;
    Ok(Some(mask.logical_and(&keep.reshape(mask.shape())?)?))
}

/// `axis` counted from the front, if it names an axis of an array with `ndim` axes.
pub(crate) fn axis_index(axis: i32, ndim: usize) -> Option<usize> {
    let a = if axis < 0 {
        axis as i64 + ndim as i64
    } else {
        axis as i64
    };
    (0..ndim as i64).contains(&a).then_some(a as usize)
}

/// A zero of `dtype`.
pub(crate) fn zero(dtype: Dtype) -> Result<Array> {
    Array::scalar(0i32).astype(dtype)
}

/// Runs the write `op` on a copy of `a` padded past the end of each `(axis, span)` so
/// that updates redirected there (out-of-range ones) land outside `a`, then cuts the
/// padding off again.
pub(crate) fn write_padded(
    a: &Array,
    pads: &[(usize, i64)],
    op: impl FnOnce(&Array) -> Result<Array>,
) -> Result<Array> {
    let axes: Vec<i32> = pads.iter().map(|&(ax, _)| ax as i32).collect();
    let low = vec![0; pads.len()];
    let high: Vec<i32> = pads.iter().map(|&(_, s)| s.max(1) as i32).collect();
    let padded = ops::pad(a, &axes, &low, &high, &zero(a.dtype())?, "constant")?;
    let out = op(&padded)?;
    let start = vec![0; a.ndim()];
    let strides = vec![1; a.ndim()];
    ops::slice(&out, &start, a.shape(), &strides)
}

/// `idx` bounded for a write along an axis of `size` elements (windows of `span`), with
/// out-of-range entries sent to position `size`, in the padding of [`write_padded`].
pub(crate) fn write_index(idx: &Array, size: i64, span: i64) -> Result<Array> {
    let b = bound(idx, &[size], &[span], true)?;
    match b.valid {
        Some(valid) => {
            let past = ints(&[size], b.index.dtype(), true)?;
            ops::r#where(&valid, &b.index, &past)
        }
        None => Ok(b.index),
    }
}
