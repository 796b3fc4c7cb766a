//! NumPy-style indexing: integers, ranges with steps, new axes, ellipsis, integer-array
//! (advanced) indexing and boolean masks, for reading ([`Array::index`]) and for
//! updates ([`Array::index_put`], [`Array::set_index`]).
//!
//! ```
//! use mlx_rs::{s, Array};
//! let a = Array::from_slice(&(0..12).collect::<Vec<i32>>(), &[3, 4])?;
//! // a[1, ::-2]
//! assert_eq!(a.index(&s![1, ..;-2])?.to_vec::<i32>()?, vec![7, 5]);
//! // a[:, None, 1:3]
//! assert_eq!(a.index(&s![.., None, 1..3])?.shape(), &[3, 1, 2]);
//! // a[..., -1]
//! assert_eq!(a.index(&s![..., -1])?.to_vec::<i32>()?, vec![3, 7, 11]);
//! // a[[2, 0]]
//! let rows = Array::from_slice(&[2i32, 0], &[2])?;
//! assert_eq!(a.index(&s![rows])?.shape(), &[2, 4]);
//! // a[1:3, ::2] = 0
//! let b = a.index_put(&s![1..3, ..;2], &Array::from(0i32))?;
//! assert_eq!(b.to_vec::<i32>()?, vec![0, 1, 2, 3, 0, 5, 0, 7, 0, 9, 0, 11]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! Plain integer indices are checked against the axis size and give an error when out of
//! range. Values inside index *arrays* are not checked (that would force evaluation) and
//! MLX does not check them either: keep them in range (see
//! [`ops::gather`](crate::ops::gather)). Boolean masks are evaluated, so they are always in range.

use crate::error::Error;
use crate::{ops, Array, Dtype, Result};
use std::ops::{Bound, RangeBounds};

/// One entry of a NumPy-style index (see [`Array::index`]).
///
/// Build entries with `From` (`1`, `1..3`, `..`, `2..`, `..=4`, an [`Array`]), with
/// [`Index::step`] for strided ranges, or all at once with the [`s!`](crate::s) macro.
#[derive(Debug, Clone)]
pub enum Index {
    /// One position along an axis (negative counts from the end); removes the axis.
    Int(i32),
    /// A range `start..stop` taking every `step`-th element (Python's `start:stop:step`).
    /// `None` bounds mean "from the beginning" / "to the end" in the direction of `step`.
    Slice {
        /// First position (negative counts from the end).
        start: Option<i32>,
        /// Position where the range stops, excluded (negative counts from the end).
        stop: Option<i32>,
        /// Step between positions; negative walks backwards; never 0.
        step: i32,
    },
    /// A new axis of size 1 (NumPy's `None` / `np.newaxis`).
    NewAxis,
    /// As many full ranges as needed to cover the axes not otherwise indexed (`...`).
    Ellipsis,
    /// An integer array selecting positions along an axis (advanced indexing; several
    /// arrays broadcast together), or a boolean mask over one or more axes.
    Array(Array),
}

impl Index {
    /// The positions of a Rust `range` taken every `|step|`-th, walking forwards when
    /// `step > 0` and backwards from the end of the range when `step < 0` (as `ndarray`'s
    /// `s![range;step]` does). Negative bounds count from the end; bounds past the axis
    /// are clamped.
    ///
    /// | Rust | Python |
    /// | --- | --- |
    /// | `Index::step(.., -1)` | `::-1` |
    /// | `Index::step(1..7, 2)` | `1:7:2` |
    /// | `Index::step(1..=3, -1)` | `3:0:-1` |
    /// | `Index::step(..4, -2)` | `3::-2` |
    ///
    /// The range itself is always written low to high, so it never reads as an empty
    /// Rust range. For Python's own `start:stop:step` use [`Index::Slice`].
    pub fn step(range: impl RangeBounds<i32>, step: i32) -> Index {
        // The range as a start and an exclusive end.
        let lo = match range.start_bound() {
            Bound::Unbounded => None,
            Bound::Included(&s) => Some(s),
            // Past the last element when `s` is the last one.
            Bound::Excluded(&s) => Some(if s == -1 {
                i32::MAX
            } else {
                s.saturating_add(1)
            }),
        };
        let hi = match range.end_bound() {
            Bound::Unbounded => None,
            Bound::Excluded(&e) => Some(e),
            Bound::Included(&e) => (e != -1).then(|| e.saturating_add(1)),
        };
        if step > 0 {
            return Index::Slice {
                start: lo,
                stop: hi,
                step,
            };
        }
        // Backwards: from the range's last element down to just before its first.
        match hi {
            Some(0) => Index::Slice {
                start: Some(0),
                stop: Some(0),
                step,
            },
            _ => Index::Slice {
                start: hi.map(|e| e.saturating_sub(1)),
                stop: lo.and_then(|s| (s != 0).then(|| s.saturating_sub(1))),
                step,
            },
        }
    }

    /// The full range `..` (every element of the axis).
    pub fn full() -> Index {
        Index::Slice {
            start: None,
            stop: None,
            step: 1,
        }
    }

    /// How many axes of the indexed array this entry consumes.
    fn consumed_axes(&self) -> usize {
        match self {
            Index::Int(_) | Index::Slice { .. } => 1,
            Index::Array(a) if a.dtype() == Dtype::Bool => a.ndim(),
            Index::Array(_) => 1,
            Index::NewAxis | Index::Ellipsis => 0,
        }
    }
}

impl From<i32> for Index {
    fn from(i: i32) -> Index {
        Index::Int(i)
    }
}

impl From<Array> for Index {
    fn from(a: Array) -> Index {
        Index::Array(a)
    }
}

impl From<&Array> for Index {
    fn from(a: &Array) -> Index {
        Index::Array(a.clone())
    }
}

macro_rules! range_into_index {
    ($($t:ty),*) => {$(
        impl From<$t> for Index {
            fn from(r: $t) -> Index {
                Index::step(r, 1)
            }
        }
    )*};
}
range_into_index!(
    std::ops::Range<i32>,
    std::ops::RangeFrom<i32>,
    std::ops::RangeTo<i32>,
    std::ops::RangeFull,
    std::ops::RangeInclusive<i32>,
    std::ops::RangeToInclusive<i32>,
    (Bound<i32>, Bound<i32>)
);

/// Builds an index list (`[Index; N]`) for [`Array::index`] and friends, converting each
/// entry with `Index::from`; `range;step` adds a step, as in `ndarray`'s `s!`, and
/// Python's `...` and `None` are written as in Python.
///
/// | Python | Rust |
/// | --- | --- |
/// | `a[1, :, ::-1]` | `a.index(&s![1, .., ..;-1])` |
/// | `a[:, -1, :]` (the last position) | `a.index(&s![.., -1, ..])` |
/// | `a[..., 2:8:3, None]` | `a.index(&s![..., 2..8;3, None])` |
/// | `a[:, None]` | `a.index(&s![.., None])` |
/// | `a[idx, -1]` | `a.index(&s![&idx, -1])` |
/// | `a[-4:]` (the last 4) | `a.index(&s![-4..])` |
/// | `a[:, t - 1 : t]` | `a.index(&s![.., t - 1..t])` |
///
/// `...` and `None` stand for [`Index::Ellipsis`] and [`Index::NewAxis`] (either form
/// works). Entries are expressions, so bounds may be computed (`t - 1..t`).
///
/// ```
/// use mlx_rs::{s, Array};
/// let a = Array::from_slice(&[0i32, 1, 2, 3, 4, 5], &[6])?;
/// assert_eq!(a.index(&s![1..;2])?.to_vec::<i32>()?, vec![1, 3, 5]);
/// assert_eq!(a.index(&s![..;-3])?.to_vec::<i32>()?, vec![5, 2]);
///
/// // model code: the hidden state of the last position of `[B, T, D]`, kept as `[B, 1, D]`
/// let h = Array::from_slice(&(0..24).map(|v| v as f32).collect::<Vec<_>>(), &[2, 3, 4])?;
/// let t = h.dim(1);
/// assert_eq!(h.index(&s![.., t - 1..t, ..])?.shape(), &[2, 1, 4]);
/// assert_eq!(h.index(&s![.., -1, ..])?.shape(), &[2, 4]);
/// // every other feature of every position, with a new axis in front of the features
/// assert_eq!(h.index(&s![..., None, ..;2])?.shape(), &[2, 3, 1, 2]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[macro_export]
macro_rules! s {
    (@acc [$($out:expr),*]) => { [$($out),*] };
    (@acc [$($out:expr),*] ... $(, $($rest:tt)*)?) => {
        $crate::s!(@acc [$($out,)* $crate::Index::Ellipsis] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] None $(, $($rest:tt)*)?) => {
        $crate::s!(@acc [$($out,)* $crate::Index::NewAxis] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $r:expr ; $step:expr , $($rest:tt)*) => {
        $crate::s!(@acc [$($out,)* $crate::Index::step($r, $step)] $($rest)*)
    };
    (@acc [$($out:expr),*] $r:expr ; $step:expr) => {
        $crate::s!(@acc [$($out,)* $crate::Index::step($r, $step)])
    };
    (@acc [$($out:expr),*] $e:expr , $($rest:tt)*) => {
        $crate::s!(@acc [$($out,)* $crate::Index::from($e)] $($rest)*)
    };
    (@acc [$($out:expr),*] $e:expr) => {
        $crate::s!(@acc [$($out,)* $crate::Index::from($e)])
    };
    ($($t:tt)*) => { $crate::s!(@acc [] $($t)*) };
}

/// A range resolved against an axis size: `count` positions `start + k * step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: i64,
    count: i64,
    step: i64,
    size: i64,
}

impl Span {
    fn full(size: i32) -> Span {
        Span {
            start: 0,
            count: size as i64,
            step: 1,
            size: size as i64,
        }
    }

    fn single(i: i64, size: i32) -> Span {
        Span {
            start: i,
            count: 1,
            step: 1,
            size: size as i64,
        }
    }

    /// Python's `slice(start, stop, step).indices(size)`, as a start and a count.
    fn resolve(start: Option<i32>, stop: Option<i32>, step: i32, size: i32) -> Result<Span> {
        if step == 0 {
            return Err(Error::InvalidArgument("slice step cannot be zero".into()));
        }
        let (n, st) = (size as i64, step as i64);
        // Clamp a bound into [lo, hi] after counting negatives from the end.
        let clamp = |v: i32, lo: i64, hi: i64| {
            let v = v as i64;
            (if v < 0 { v + n } else { v }).clamp(lo, hi)
        };
        let (first, end, count);
        if st > 0 {
            first = start.map_or(0, |v| clamp(v, 0, n));
            end = stop.map_or(n, |v| clamp(v, 0, n));
            count = if end > first {
                (end - first + st - 1) / st
            } else {
                0
            };
        } else {
            first = start.map_or(n - 1, |v| clamp(v, -1, n - 1));
            end = stop.map_or(-1, |v| clamp(v, -1, n - 1));
            count = if first > end {
                (first - end - st - 1) / -st
            } else {
                0
            };
        }
        Ok(Span {
            start: first,
            count,
            step: st,
            size: n,
        })
    }

    fn is_full(&self) -> bool {
        self.start == 0 && self.step == 1 && self.count == self.size
    }

    /// `(start, stop, stride)` for MLX's `slice`, unambiguous under its normalisation
    /// (which reads a negative stop as counted from the end).
    fn mlx_bounds(&self) -> (i32, i32, i32) {
        if self.count == 0 {
            return (0, 0, 1);
        }
        let last = self.start + (self.count - 1) * self.step;
        let stop = if self.step > 0 {
            last + 1
        } else if last == 0 {
            -self.size - 1
        } else {
            last - 1
        };
        (self.start as i32, stop as i32, self.step as i32)
    }
}

/// One entry after ellipsis expansion, with integers and masks resolved.
enum Entry {
    /// A range over the next axis (integers become one-element spans when no arrays
    /// are present, and `drop` removes their axis).
    Span {
        span: Span,
        drop: bool,
    },
    /// An integer index array for the next axis (advanced indexing).
    Advanced(Array),
    NewAxis,
}

/// The resolved form of an index list against a shape.
struct Plan {
    entries: Vec<Entry>,
    /// Whether any entry is an index array.
    advanced: bool,
}

impl Plan {
    fn new(shape: &[i32], indices: &[Index]) -> Result<Plan> {
        let ndim = shape.len();
        let ellipses = indices
            .iter()
            .filter(|i| matches!(i, Index::Ellipsis))
            .count();
        if ellipses > 1 {
            return Err(Error::InvalidArgument(
                "an index can have only one ellipsis (...)".into(),
            ));
        }
        let consumed: usize = indices.iter().map(Index::consumed_axes).sum();
        if consumed > ndim {
            return Err(Error::Shape(format!(
                "too many indices for an array of shape {shape:?}: {consumed} axes indexed"
            )));
        }
        // Integers are advanced indices when an index array is present (NumPy's rule).
        let advanced = indices.iter().any(|i| matches!(i, Index::Array(_)));

        let mut entries = Vec::with_capacity(ndim + indices.len());
        let mut axis = 0usize;
        for index in indices {
            match index {
                Index::Ellipsis => {
                    for _ in 0..ndim - consumed {
                        entries.push(Entry::Span {
                            span: Span::full(shape[axis]),
                            drop: false,
                        });
                        axis += 1;
                    }
                }
                Index::NewAxis => entries.push(Entry::NewAxis),
                Index::Int(i) => {
                    let size = shape[axis];
                    let pos = *i as i64 + if *i < 0 { size as i64 } else { 0 };
                    if pos < 0 || pos >= size as i64 {
                        return Err(Error::Shape(format!(
                            "index {i} is out of bounds for axis {axis} with size {size}"
                        )));
                    }
                    entries.push(if advanced {
                        Entry::Advanced(Array::scalar(pos as i32))
                    } else {
                        Entry::Span {
                            span: Span::single(pos, size),
                            drop: true,
                        }
                    });
                    axis += 1;
                }
                Index::Slice { start, stop, step } => {
                    let span = Span::resolve(*start, *stop, *step, shape[axis])?;
                    entries.push(Entry::Span { span, drop: false });
                    axis += 1;
                }
                Index::Array(a) if a.dtype() == Dtype::Bool => {
                    let k = a.ndim();
                    if k == 0 {
                        return Err(Error::InvalidArgument(
                            "a boolean mask index needs at least one dimension".into(),
                        ));
                    }
                    let dims = &shape[axis..axis + k];
                    if a.shape() != dims {
                        return Err(Error::Shape(format!(
                            "boolean mask of shape {:?} does not match axes {axis}..{} of shape \
                             {shape:?}",
                            a.shape(),
                            axis + k
                        )));
                    }
                    entries.extend(mask_positions(a)?.into_iter().map(Entry::Advanced));
                    axis += k;
                }
                Index::Array(a) => {
                    if !a.dtype().is_integer() {
                        return Err(Error::InvalidArgument(format!(
                            "index arrays must hold integers or booleans, got {}",
                            a.dtype()
                        )));
                    }
                    entries.push(Entry::Advanced(a.clone()));
                    axis += 1;
                }
            }
        }
        while axis < ndim {
            entries.push(Entry::Span {
                span: Span::full(shape[axis]),
                drop: false,
            });
            axis += 1;
        }
        Ok(Plan { entries, advanced })
    }

    /// The spans per axis for MLX's `slice` (index-array axes taken whole), and whether
    /// they select everything.
    fn region(&self, shape: &[i32]) -> (Vec<i32>, Vec<i32>, Vec<i32>, bool) {
        let (mut start, mut stop, mut strides) = (vec![], vec![], vec![]);
        let mut full = true;
        let mut axis = 0;
        for e in &self.entries {
            let span = match e {
                Entry::Span { span, .. } => *span,
                Entry::Advanced(_) => Span::full(shape[axis]),
                Entry::NewAxis => continue,
            };
            full &= span.is_full();
            let (b, e, s) = span.mlx_bounds();
            start.push(b);
            stop.push(e);
            strides.push(s);
            axis += 1;
        }
        (start, stop, strides, full)
    }

    /// Whether the index arrays sit next to each other (then their result axes replace
    /// them in place; otherwise they go first, as in NumPy).
    fn adjacent(&self) -> bool {
        let pos: Vec<usize> = (0..self.entries.len())
            .filter(|&i| matches!(self.entries[i], Entry::Advanced(_)))
            .collect();
        pos.windows(2).all(|w| w[1] == w[0] + 1)
    }

    /// Axes (of the indexed array) of the index arrays, and the arrays.
    fn advanced_axes(&self) -> (Vec<i32>, Vec<Array>) {
        let (mut axes, mut arrays) = (vec![], vec![]);
        let mut axis = 0;
        for e in &self.entries {
            match e {
                Entry::Advanced(a) => {
                    axes.push(axis);
                    arrays.push(a.clone());
                    axis += 1;
                }
                Entry::Span { .. } => axis += 1,
                Entry::NewAxis => {}
            }
        }
        (axes, arrays)
    }

    /// Number of spans before the first index array (where the broadcast index axes go
    /// when the arrays are adjacent).
    fn spans_before_advanced(&self) -> usize {
        self.entries
            .iter()
            .take_while(|e| !matches!(e, Entry::Advanced(_)))
            .filter(|e| matches!(e, Entry::Span { .. }))
            .count()
    }

    /// The result shape of `a[indices]`, given the broadcast shape of the index arrays;
    /// without `new_axes`, the shape before the new axes are inserted.
    fn result_shape(&self, index_shape: &[i32], new_axes: bool) -> Vec<i32> {
        let adjacent = self.adjacent();
        let mut out = vec![];
        if self.advanced && !adjacent {
            out.extend_from_slice(index_shape);
        }
        let mut placed = false;
        for e in &self.entries {
            match e {
                Entry::Span { span, drop: false } => out.push(span.count as i32),
                Entry::Span { drop: true, .. } => {}
                Entry::NewAxis => {
                    if new_axes {
                        out.push(1);
                    }
                }
                Entry::Advanced(_) => {
                    if adjacent && !placed {
                        out.extend_from_slice(index_shape);
                        placed = true;
                    }
                }
            }
        }
        out
    }

    /// The permutation taking the gather layout (index axes first, then the other axes)
    /// to the result layout, or `None` if they agree.
    fn gather_to_result_perm(&self, index_ndim: usize, rest_ndim: usize) -> Option<Vec<i32>> {
        let p = self.spans_before_advanced();
        if !self.adjacent() || p == 0 || index_ndim == 0 {
            return None;
        }
        let (b, p) = (index_ndim as i32, p as i32);
        let total = b + rest_ndim as i32;
        Some((b..b + p).chain(0..b).chain(b + p..total).collect())
    }
}

/// The coordinates of the true elements of a boolean mask, one `int32` array per mask
/// axis (evaluates the mask).
fn mask_positions(mask: &Array) -> Result<Vec<Array>> {
    let values = mask.to_vec::<bool>()?;
    let shape = mask.shape().to_vec();
    let mut coords: Vec<Vec<i32>> = vec![Vec::new(); shape.len()];
    for (flat, _) in values.iter().enumerate().filter(|(_, &v)| v) {
        let mut rest = flat;
        for d in (0..shape.len()).rev() {
            let size = shape[d] as usize;
            coords[d].push((rest % size) as i32);
            rest /= size;
        }
    }
    coords
        .iter()
        .map(|c| Array::from_slice(c, &[c.len() as i32]))
        .collect()
}

/// Shape with its leading size-1 axes removed (NumPy lets assigned values carry them).
fn strip_leading_ones(value: &Array) -> Result<Array> {
    let shape = value.shape();
    let lead = shape.iter().take_while(|&&d| d == 1).count();
    if lead == 0 {
        return Ok(value.clone());
    }
    value.reshape(&shape[lead..])
}

impl Array {
    /// NumPy-style indexing: `a.index(&s![...])` is Python's `a[...]`.
    ///
    /// Supports integers (negative from the end; out of range is an error), ranges with
    /// steps (also negative), [`Index::NewAxis`], one [`Index::Ellipsis`], integer index
    /// arrays (several broadcast together; adjacent ones put their axes in place, others
    /// first, as in NumPy) and boolean masks (which evaluate the mask to find the
    /// selected positions). Missing trailing entries select whole axes.
    ///
    /// ```
    /// use mlx_rs::{s, Array, Index};
    /// let a = Array::from_slice(&(0..24).collect::<Vec<i32>>(), &[2, 3, 4])?;
    /// assert_eq!(a.index(&s![Index::Ellipsis, -1])?.shape(), &[2, 3]);
    /// let i = Array::from_slice(&[0i32, 2], &[2])?;
    /// let j = Array::from_slice(&[1i32, 3], &[2])?;
    /// // a[:, [0, 2], [1, 3]]
    /// assert_eq!(a.index(&s![.., &i, &j])?.to_vec::<i32>()?, vec![1, 11, 13, 23]);
    /// assert!(a.index(&s![2]).is_err());
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    #[track_caller]
    pub fn index(&self, indices: &[Index]) -> Result<Array> {
        if indices.is_empty() {
            return Ok(self.clone());
        }
        let shape = self.shape().to_vec();
        let plan = Plan::new(&shape, indices)?;
        let (start, stop, strides, full) = plan.region(&shape);
        let region = if full {
            self.clone()
        } else {
            ops::slice(self, &start, &stop, &strides)?
        };

        let mut out = region;
        let mut index_shape = vec![];
        if plan.advanced {
            let (axes, arrays) = plan.advanced_axes();
            let arrays = ops::broadcast_arrays(&arrays)?;
            index_shape = arrays[0].shape().to_vec();
            let mut slice_sizes = out.shape().to_vec();
            for &ax in &axes {
                slice_sizes[ax as usize] = 1;
            }
            let gathered = ops::gather(&out, &arrays, &axes, &slice_sizes)?;
            // Drop the size-1 axes left by the gather at the indexed positions.
            let rest: Vec<i32> = (0..slice_sizes.len())
                .filter(|ax| !axes.contains(&(*ax as i32)))
                .map(|ax| slice_sizes[ax])
                .collect();
            let mut flat = index_shape.clone();
            flat.extend_from_slice(&rest);
            out = gathered.reshape(&flat)?;
            if let Some(perm) = plan.gather_to_result_perm(index_shape.len(), rest.len()) {
                out = out.transpose_axes(&perm)?;
            }
        }
        let target = plan.result_shape(&index_shape, true);
        if out.shape() != target.as_slice() {
            out = out.reshape(&target)?;
        }
        Ok(out)
    }

    /// NumPy-style update: a copy of `self` with `self[indices] = value` applied (lazy;
    /// `self` is unchanged). `value` is broadcast to the shape of `self.index(indices)`
    /// (leading axes of size 1 are allowed) and converted to `self`'s dtype.
    ///
    /// Ranges and integers alone update in place of a strided slice; index arrays and
    /// masks scatter (if an index array repeats a position, which value lands there is
    /// unspecified).
    ///
    /// ```
    /// use mlx_rs::{s, Array};
    /// let a = Array::from_slice(&[0.0f32; 6], &[2, 3])?;
    /// let b = a.index_put(&s![.., ..;-2], &Array::from_slice(&[1.0f32, 2.0], &[2])?)?;
    /// assert_eq!(b.to_vec::<f32>()?, vec![2.0, 0.0, 1.0, 2.0, 0.0, 1.0]);
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    #[track_caller]
    pub fn index_put(&self, indices: &[Index], value: &Array) -> Result<Array> {
        let shape = self.shape().to_vec();
        let plan = Plan::new(&shape, indices)?;
        let value = if value.dtype() == self.dtype() {
            value.clone()
        } else {
            value.astype(self.dtype())?
        };
        let (start, stop, strides, full) = plan.region(&shape);

        if !plan.advanced {
            // Broadcast to the result shape, then lay it out over the sliced region
            // (integer axes kept with size 1, new axes removed).
            let target = plan.result_shape(&[], true);
            let up = strip_leading_ones(&value)?.broadcast_to(&target)?;
            let region_shape: Vec<i32> = plan
                .entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Span { span, .. } => Some(span.count as i32),
                    _ => None,
                })
                .collect();
            let up = up.reshape(&region_shape)?;
            return ops::slice_update(self, &up, &start, &stop, &strides);
        }

        let region = if full {
            self.clone()
        } else {
            ops::slice(self, &start, &stop, &strides)?
        };
        let (axes, arrays) = plan.advanced_axes();
        let arrays = ops::broadcast_arrays(&arrays)?;
        let index_shape = arrays[0].shape().to_vec();
        let region_shape = region.shape().to_vec();
        let rest: Vec<i32> = (0..region_shape.len())
            .filter(|ax| !axes.contains(&(*ax as i32)))
            .map(|ax| region_shape[ax])
            .collect();

        // value -> result layout -> gather layout (index axes first) -> scatter layout
        // (index axes, then the region's axes with 1 at the indexed ones).
        let target = plan.result_shape(&index_shape, true);
        let mut up = strip_leading_ones(&value)?.broadcast_to(&target)?;
        up = up.reshape(&plan.result_shape(&index_shape, false))?;
        if let Some(perm) = plan.gather_to_result_perm(index_shape.len(), rest.len()) {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p as usize] = i as i32;
            }
            up = up.transpose_axes(&inverse)?;
        }
        let mut scatter_shape = index_shape.clone();
        scatter_shape.extend(region_shape.iter().enumerate().map(|(ax, &d)| {
            if axes.contains(&(ax as i32)) {
                1
            } else {
                d
            }
        }));
        up = up.reshape(&scatter_shape)?;
        let updated = ops::scatter(&region, &arrays, &up, &axes)?;
        if full {
            Ok(updated)
        } else {
            ops::slice_update(self, &updated, &start, &stop, &strides)
        }
    }

    /// NumPy-style assignment `self[indices] = value`: replaces `self` with
    /// [`index_put`](Array::index_put)'s result. On error `self` is unchanged.
    ///
    /// ```
    /// use mlx_rs::{s, Array};
    /// let mut a = Array::from_slice(&[1i32, 2, 3, 4], &[4])?;
    /// a.set_index(&s![-1], &Array::from(9i32))?;
    /// assert_eq!(a.to_vec::<i32>()?, vec![1, 2, 3, 9]);
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    #[track_caller]
    pub fn set_index(&mut self, indices: &[Index], value: &Array) -> Result<()> {
        *self = self.index_put(indices, value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(start: Option<i32>, stop: Option<i32>, step: i32, n: i32) -> Vec<i64> {
        let s = Span::resolve(start, stop, step, n).unwrap();
        (0..s.count).map(|k| s.start + k * s.step).collect()
    }

    /// Python's semantics, written out for a few cases (`list(range(n))[start:stop:step]`).
    #[test]
    fn spans_follow_python() {
        assert_eq!(indices(None, None, 1, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(indices(None, None, -1, 5), vec![4, 3, 2, 1, 0]);
        assert_eq!(indices(Some(-2), None, 1, 5), vec![3, 4]);
        assert_eq!(indices(Some(10), Some(-10), -2, 5), vec![4, 2, 0]);
        assert_eq!(indices(Some(1), Some(1), 1, 5), Vec::<i64>::new());
        assert_eq!(indices(Some(3), Some(0), -1, 5), vec![3, 2, 1]);
        assert_eq!(indices(Some(-100), Some(100), 3, 5), vec![0, 3]);
        assert_eq!(indices(None, None, -1, 0), Vec::<i64>::new());
        assert!(Span::resolve(None, None, 0, 5).is_err());
    }

    #[test]
    // `1..-1` is a real range here: position 1 up to the last one.
    #[allow(clippy::reversed_empty_ranges)]
    fn stepped_rust_ranges() {
        let span = |i: Index, n| match i {
            Index::Slice { start, stop, step } => indices(start, stop, step, n),
            _ => unreachable!(),
        };
        assert_eq!(span(Index::from(..=2), 5), vec![0, 1, 2]);
        assert_eq!(span(Index::from(..=-1), 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(span(Index::step(.., -1), 5), vec![4, 3, 2, 1, 0]);
        assert_eq!(span(Index::step(..=0, -1), 5), vec![0]);
        assert_eq!(span(Index::step(1..=3, -1), 5), vec![3, 2, 1]);
        assert_eq!(span(Index::step(0..5, -2), 5), vec![4, 2, 0]);
        assert_eq!(span(Index::step(..4, -2), 5), vec![3, 1]);
        assert_eq!(span(Index::step(-3.., -1), 5), vec![4, 3, 2]);
        assert_eq!(span(Index::step(-5..-1, -3), 5), vec![3, 0]);
        assert_eq!(span(Index::step(1..-1, -1), 5), vec![3, 2, 1]);
        assert_eq!(span(Index::step(..0, -1), 5), Vec::<i64>::new());
        assert_eq!(span(Index::step(-9..2, -1), 5), vec![1, 0]);
        assert_eq!(span(Index::step(1..7, 2), 5), vec![1, 3]);
        let after = |s| (Bound::Excluded(s), Bound::Unbounded);
        assert_eq!(span(Index::from(after(-1)), 5), Vec::<i64>::new());
        assert_eq!(span(Index::step(after(-1), -1), 5), Vec::<i64>::new());
        assert_eq!(span(Index::step(after(2), -1), 5), vec![4, 3]);
    }
}
