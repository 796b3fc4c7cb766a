//! Gather/scatter style ops: take, slice, slice updates, scatter, put/take along axis,
//! masked scatter.
//!
//! Index arrays must be integers; negative indices count from the end of their axis.
//!
//! # Out-of-range index values
//!
//! MLX trusts index values, so an index outside its axis would read or write outside
//! the array. Index arrays are lazy and cannot be checked without evaluating them, so
//! every op here bounds them with a few cheap lazy ops instead (the policy of JAX):
//! **reads clamp** an out-of-range index to the nearest end of its axis, **writes drop**
//! an update whose index is out of range (the array keeps its old value), and dynamic
//! slice starts are clamped so the window lies inside the array. In-range indices give
//! MLX's results unchanged. Writes work on a copy of the array padded past the indexed
//! axes (one extra copy of the array per scatter).
//!
//! ```
//! use mlx_rs::{ops, Array};
//! let a = Array::from_slice(&[10i32, 20, 30], &[3])?;
//! let i = Array::from_slice(&[-1i32, 7, -9], &[3])?;
//! assert_eq!(ops::take(&a, &i)?.to_vec::<i32>()?, vec![30, 30, 10]); // -1 is the last
//! let u = Array::from_slice(&[1i32, 2, 3], &[3, 1])?;
//! let b = ops::scatter(&a, &[&i], &u, &[0])?;
//! assert_eq!(b.to_vec::<i32>()?, vec![10, 20, 1]); // 7 and -9 dropped
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use super::bounds::{self, axis_index};
use crate::error::Error;
use crate::raw::{stream_op, VectorArray};
use crate::{Array, Result};
use mlx_sys as sys;
use std::panic::Location;

/// Puts the caller's location on an MLX error raised inside a helper closure.
fn at(location: &'static Location<'static>) -> impl Fn(Error) -> Error {
    move |e| match e {
        Error::Mlx { message, .. } => Error::Mlx { message, location },
        e => e,
    }
}

/// `indices` bounded for reading windows of `spans[axis]` along `axes` of `a`; the
/// arrays unchanged where the arguments are not a valid gather (MLX reports that).
fn read_indices<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    axes: &[i32],
    spans: Option<&[i32]>,
    op: &str,
) -> Result<Vec<Array>> {
    indices
        .iter()
        .zip(axes)
        .map(|(idx, &axis)| {
            let idx = idx.as_ref();
            match axis_index(axis, a.ndim()) {
                Some(ax) => {
                    let span = spans.map_or(Some(1), |s| s.get(ax).copied());
                    match span {
                        Some(span) if spans.is_none_or(|s| s.len() == a.ndim()) => {
                            bounds::read_index(idx, a.shape()[ax] as i64, span as i64, op)
                        }
                        _ => Ok(idx.clone()),
                    }
                }
                None => Ok(idx.clone()),
            }
        })
        .collect()
}

/// Runs a scatter-like `call` with `indices` bounded for writing (see the module docs):
/// out-of-range updates are redirected past the end of a padded copy of `a`, which is cut
/// back afterwards. `spans` gives the update window along each indexed axis; `None`
/// means the arguments are not a valid scatter, and `call` gets them unchanged for MLX
/// to report.
fn bounded_write(
    a: &Array,
    indices: &[Array],
    axes: &[i32],
    spans: Option<Vec<i64>>,
    call: impl FnOnce(&Array, &[Array]) -> Result<Array>,
) -> Result<Array> {
    let plan: Option<Vec<(usize, i64)>> = spans.and_then(|spans| {
        axes.iter()
            .zip(&spans)
            .map(|(&axis, &span)| {
                let ax = axis_index(axis, a.ndim())?;
                (span >= 0 && span <= a.shape()[ax] as i64).then_some((ax, span))
            })
            .collect()
    });
    let all_int = indices.iter().all(|i| i.dtype().is_integer());
    match plan {
        Some(pads) if all_int && !pads.is_empty() => {
            let bounded = indices
                .iter()
                .zip(&pads)
                .map(|(idx, &(ax, span))| bounds::write_index(idx, a.shape()[ax] as i64, span))
                .collect::<Result<Vec<_>>>()?;
            bounds::write_padded(a, &pads, |padded| call(padded, &bounded))
        }
        _ => call(a, indices),
    }
}

/// The update window of a scatter along each of `axes`: `updates` has the broadcast
/// index dimensions first, then one dimension per axis of `a`.
fn scatter_spans<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Option<Vec<i64>> {
    let index_ndim = indices.iter().map(|i| i.as_ref().ndim()).max().unwrap_or(0);
    if updates.ndim() != index_ndim + a.ndim() {
        return None;
    }
    axes.iter()
        .map(|&axis| axis_index(axis, a.ndim()).map(|ax| updates.shape()[index_ndim + ax] as i64))
        .collect()
}

fn owned<A: AsRef<Array>>(indices: &[A]) -> Vec<Array> {
    indices.iter().map(|i| i.as_ref().clone()).collect()
}

/// Elements of the flattened `a` at `indices` (the result has the shape of `indices`).
///
/// Out-of-range index values are clamped (see the `ops::indexing` notes in `docs/bad-input.md`); an empty `a`
/// with a non-empty `indices` is an error.
#[track_caller]
pub fn take(a: &Array, indices: &Array) -> Result<Array> {
    let idx = bounds::read_index(indices, a.size() as i64, 1, "take")?;
    stream_op(|res, s| unsafe { sys::mlx_take(res, a.as_raw(), idx.as_raw(), s) })
}

/// Slices of `a` along `axis` at `indices` (that axis is replaced by the shape of `indices`).
///
/// Out-of-range index values are clamped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn take_axis(a: &Array, indices: &Array, axis: i32) -> Result<Array> {
    let idx = read_indices(a, &[indices], &[axis], None, "take")?.remove(0);
    stream_op(|res, s| unsafe { sys::mlx_take_axis(res, a.as_raw(), idx.as_raw(), axis, s) })
}

/// Elements of `a` picked along `axis` by `indices`, which broadcasts with `a` on the
/// other axes (NumPy's `take_along_axis`).
///
/// Out-of-range index values are clamped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn take_along_axis(a: &Array, indices: &Array, axis: i32) -> Result<Array> {
    let idx = read_indices(a, &[indices], &[axis], None, "take_along_axis")?.remove(0);
    stream_op(|res, s| unsafe { sys::mlx_take_along_axis(res, a.as_raw(), idx.as_raw(), axis, s) })
}

/// `a` with `values` written along `axis` at `indices` (the inverse of [`take_along_axis`]).
///
/// Values at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn put_along_axis(a: &Array, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
    let loc = Location::caller();
    let spans = axis_index(axis, a.ndim()).map(|_| vec![1]);
    bounded_write(
        a,
        std::slice::from_ref(indices),
        &[axis],
        spans,
        |a, idx| {
            stream_op(|res, s| unsafe {
                sys::mlx_put_along_axis(res, a.as_raw(), idx[0].as_raw(), values.as_raw(), axis, s)
            })
        },
    )
    .map_err(at(loc))
}

fn check_index_axes(op: &str, n_indices: usize, axes: &[i32]) -> Result<()> {
    if n_indices != axes.len() {
        return Err(Error::InvalidArgument(format!(
            "{op}: {n_indices} index arrays need as many axes, got {axes:?}"
        )));
    }
    Ok(())
}

/// General gather: `indices[i]` (broadcast together) index `axes[i]`, and each gathered
/// element is the slice of shape `slice_sizes` starting there.
///
/// The result has shape `broadcast(indices).shape + slice_sizes`.
///
/// Negative index values count from the end; values out of range are clamped so that
/// the whole slice lies inside `a` (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn gather<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    axes: &[i32],
    slice_sizes: &[i32],
) -> Result<Array> {
    check_index_axes("gather", indices.len(), axes)?;
    let idx = read_indices(a, indices, axes, Some(slice_sizes), "gather")?;
    let v = VectorArray::from_arrays(&idx);
    stream_op(|res, s| unsafe {
        sys::mlx_gather(
            res,
            a.as_raw(),
            v.0,
            axes.as_ptr(),
            axes.len(),
            slice_sizes.as_ptr(),
            slice_sizes.len(),
            s,
        )
    })
}

/// [`gather`] with one index array for one `axis`.
///
/// Out-of-range index values are clamped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn gather_single(a: &Array, indices: &Array, axis: i32, slice_sizes: &[i32]) -> Result<Array> {
    let idx = read_indices(a, &[indices], &[axis], Some(slice_sizes), "gather")?.remove(0);
    stream_op(|res, s| unsafe {
        sys::mlx_gather_single(
            res,
            a.as_raw(),
            idx.as_raw(),
            axis,
            slice_sizes.as_ptr(),
            slice_sizes.len(),
            s,
        )
    })
}

/// mlx-c's multi-index scatter functions (`mlx_scatter`, `mlx_scatter_add`, ...).
type ScatterFn = unsafe extern "C" fn(
    *mut sys::mlx_array,
    sys::mlx_array,
    sys::mlx_vector_array,
    sys::mlx_array,
    *const std::ffi::c_int,
    usize,
    sys::mlx_stream,
) -> std::ffi::c_int;

/// mlx-c's one-index scatter functions (`mlx_scatter_single`, ...).
type ScatterSingleFn = unsafe extern "C" fn(
    *mut sys::mlx_array,
    sys::mlx_array,
    sys::mlx_array,
    sys::mlx_array,
    std::ffi::c_int,
    sys::mlx_stream,
) -> std::ffi::c_int;

/// A multi-index scatter through `f`, with out-of-range updates dropped.
#[track_caller]
fn scatter_with<A: AsRef<Array>>(
    name: &str,
    f: ScatterFn,
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    check_index_axes(name, indices.len(), axes)?;
    let loc = Location::caller();
    let spans = scatter_spans(a, indices, updates, axes);
    bounded_write(a, &owned(indices), axes, spans, |a, idx| {
        let v = VectorArray::from_arrays(idx);
        // SAFETY: live handles for the call; `axes` outlives it.
        stream_op(|res, s| unsafe {
            f(
                res,
                a.as_raw(),
                v.0,
                updates.as_raw(),
                axes.as_ptr(),
                axes.len(),
                s,
            )
        })
    })
    .map_err(at(loc))
}

/// A one-index scatter through `f`, with out-of-range updates dropped.
#[track_caller]
fn scatter_single_with(
    f: ScatterSingleFn,
    a: &Array,
    indices: &Array,
    updates: &Array,
    axis: i32,
) -> Result<Array> {
    let loc = Location::caller();
    let spans = scatter_spans(a, &[indices], updates, &[axis]);
    bounded_write(
        a,
        std::slice::from_ref(indices),
        &[axis],
        spans,
        // SAFETY: live handles for the call.
        |a, idx| {
            stream_op(|res, s| unsafe {
                f(res, a.as_raw(), idx[0].as_raw(), updates.as_raw(), axis, s)
            })
        },
    )
    .map_err(at(loc))
}

/// `a` with slices replaced by `updates` at `indices` (which of duplicates wins is
/// unspecified).
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    scatter_with("scatter", sys::mlx_scatter, a, indices, updates, axes)
}

/// [`scatter`] with one index array for one `axis`.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_single(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    scatter_single_with(sys::mlx_scatter_single, a, indices, updates, axis)
}

/// `a` with `updates` added at `indices` (duplicates accumulate).
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_add<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    scatter_with(
        "scatter_add",
        sys::mlx_scatter_add,
        a,
        indices,
        updates,
        axes,
    )
}

/// [`scatter_add`] with one index array for one `axis`.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_add_single(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    scatter_single_with(sys::mlx_scatter_add_single, a, indices, updates, axis)
}

/// `a` with each indexed element replaced by its maximum with `updates`.
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_max<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    scatter_with(
        "scatter_max",
        sys::mlx_scatter_max,
        a,
        indices,
        updates,
        axes,
    )
}

/// [`scatter_max`] with one index array for one `axis`.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_max_single(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    scatter_single_with(sys::mlx_scatter_max_single, a, indices, updates, axis)
}

/// `a` with each indexed element replaced by its minimum with `updates`.
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_min<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    scatter_with(
        "scatter_min",
        sys::mlx_scatter_min,
        a,
        indices,
        updates,
        axes,
    )
}

/// [`scatter_min`] with one index array for one `axis`.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_min_single(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    scatter_single_with(sys::mlx_scatter_min_single, a, indices, updates, axis)
}

/// `a` with each indexed element multiplied by `updates`.
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_prod<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    scatter_with(
        "scatter_prod",
        sys::mlx_scatter_prod,
        a,
        indices,
        updates,
        axes,
    )
}

/// [`scatter_prod`] with one index array for one `axis`.
///
/// Updates at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_prod_single(
    a: &Array,
    indices: &Array,
    updates: &Array,
    axis: i32,
) -> Result<Array> {
    scatter_single_with(sys::mlx_scatter_prod_single, a, indices, updates, axis)
}

/// `a` with `values` added along `axis` at `indices` (the accumulating form of
/// [`put_along_axis`]).
///
/// Values at out-of-range indices are dropped (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn scatter_add_axis(a: &Array, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
    let loc = Location::caller();
    let spans = axis_index(axis, a.ndim()).map(|_| vec![1]);
    bounded_write(
        a,
        std::slice::from_ref(indices),
        &[axis],
        spans,
        |a, idx| {
            stream_op(|res, s| unsafe {
                sys::mlx_scatter_add_axis(
                    res,
                    a.as_raw(),
                    idx[0].as_raw(),
                    values.as_raw(),
                    axis,
                    s,
                )
            })
        },
    )
    .map_err(at(loc))
}

fn check_slice_args(
    op: &str,
    ndim: usize,
    start: &[i32],
    stop: &[i32],
    strides: &[i32],
) -> Result<()> {
    if start.len() != ndim || stop.len() != ndim || strides.len() != ndim {
        return Err(Error::InvalidArgument(format!(
            "{op}: an array of {ndim} dimensions needs {ndim} starts, stops and strides, \
             got {start:?}, {stop:?}, {strides:?}"
        )));
    }
    if strides.contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "{op}: strides must be non-zero, got {strides:?}"
        )));
    }
    Ok(())
}

/// The strided slice `start[i]..stop[i]` by `strides[i]` of each axis `i` (negative
/// positions count from the end and are clamped, as in Python).
#[track_caller]
pub fn slice(a: &Array, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
    check_slice_args("slice", a.ndim(), start, stop, strides)?;
    stream_op(|res, s| unsafe {
        sys::mlx_slice(
            res,
            a.as_raw(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            s,
        )
    })
}

/// The slice of shape `slice_size` (one size per axis of `a`) that starts, along `axes`,
/// at the positions held in the integer array `start` (one per axis; 0 on the other
/// axes), so the start can be computed lazily.
///
/// Negative starts count from the end; starts are clamped so that the slice lies inside
/// `a` (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn slice_dynamic(a: &Array, start: &Array, axes: &[i32], slice_size: &[i32]) -> Result<Array> {
    super::creation::check_dims(slice_size)?;
    let spans = (slice_size.len() == a.ndim()).then_some(slice_size);
    let start = dynamic_start(a, start, axes, spans)?;
    stream_op(|res, s| unsafe {
        sys::mlx_slice_dynamic(
            res,
            a.as_raw(),
            start.as_raw(),
            axes.as_ptr(),
            axes.len(),
            slice_size.as_ptr(),
            slice_size.len(),
            s,
        )
    })
}

/// `start` (one position per axis of `axes`, 0-D for one axis) bounded so that windows of
/// `spans[axis]` fit in `a`; unchanged where the arguments are not valid (MLX reports it).
fn dynamic_start(a: &Array, start: &Array, axes: &[i32], spans: Option<&[i32]>) -> Result<Array> {
    let Some(spans) = spans else {
        return Ok(start.clone());
    };
    let fits = match start.ndim() {
        0 => axes.len() == 1,
        1 => start.shape()[0] as usize == axes.len(),
        _ => false,
    };
    let axes: Option<Vec<usize>> = axes.iter().map(|&ax| axis_index(ax, a.ndim())).collect();
    match axes {
        Some(axes) if fits && !axes.is_empty() => {
            let sizes: Vec<i64> = axes.iter().map(|&ax| a.shape()[ax] as i64).collect();
            let spans: Vec<i64> = axes.iter().map(|&ax| spans[ax] as i64).collect();
            Ok(bounds::bound(start, &sizes, &spans, false)?.index)
        }
        _ => Ok(start.clone()),
    }
}

/// `src` with a strided slice replaced by `update`.
///
/// The slice is given as in [`slice()`]; `update` must broadcast to its shape.
#[track_caller]
pub fn slice_update(
    src: &Array,
    update: &Array,
    start: &[i32],
    stop: &[i32],
    strides: &[i32],
) -> Result<Array> {
    check_slice_args("slice_update", src.ndim(), start, stop, strides)?;
    stream_op(|res, s| unsafe {
        sys::mlx_slice_update(
            res,
            src.as_raw(),
            update.as_raw(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            s,
        )
    })
}

/// `src` with `update` added to a strided slice.
///
/// The slice is given as in [`slice()`]; `update` must broadcast to its shape.
#[track_caller]
pub fn slice_update_add(
    src: &Array,
    update: &Array,
    start: &[i32],
    stop: &[i32],
    strides: &[i32],
) -> Result<Array> {
    check_slice_args("slice_update_add", src.ndim(), start, stop, strides)?;
    stream_op(|res, s| unsafe {
        sys::mlx_slice_update_add(
            res,
            src.as_raw(),
            update.as_raw(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            s,
        )
    })
}

/// `src` with a strided slice replaced by its element-wise maximum with `update`.
///
/// The slice is given as in [`slice()`]; `update` must broadcast to its shape.
#[track_caller]
pub fn slice_update_max(
    src: &Array,
    update: &Array,
    start: &[i32],
    stop: &[i32],
    strides: &[i32],
) -> Result<Array> {
    check_slice_args("slice_update_max", src.ndim(), start, stop, strides)?;
    stream_op(|res, s| unsafe {
        sys::mlx_slice_update_max(
            res,
            src.as_raw(),
            update.as_raw(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            s,
        )
    })
}

/// `src` with a strided slice replaced by its element-wise minimum with `update`.
///
/// The slice is given as in [`slice()`]; `update` must broadcast to its shape.
#[track_caller]
pub fn slice_update_min(
    src: &Array,
    update: &Array,
    start: &[i32],
    stop: &[i32],
    strides: &[i32],
) -> Result<Array> {
    check_slice_args("slice_update_min", src.ndim(), start, stop, strides)?;
    stream_op(|res, s| unsafe {
        sys::mlx_slice_update_min(
            res,
            src.as_raw(),
            update.as_raw(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            s,
        )
    })
}

/// `src` with a strided slice multiplied by `update`.
///
/// The slice is given as in [`slice()`]; `update` must broadcast to its shape.
#[track_caller]
pub fn slice_update_prod(
    src: &Array,
    update: &Array,
    start: &[i32],
    stop: &[i32],
    strides: &[i32],
) -> Result<Array> {
    check_slice_args("slice_update_prod", src.ndim(), start, stop, strides)?;
    stream_op(|res, s| unsafe {
        sys::mlx_slice_update_prod(
            res,
            src.as_raw(),
            update.as_raw(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            s,
        )
    })
}

/// `src` with the slice along `axes` that starts at the positions held in the array
/// `start` replaced by `update` (whose shape gives the slice size).
///
/// Negative starts count from the end; starts are clamped so that the slice lies inside
/// `src` (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn slice_update_dynamic(
    src: &Array,
    update: &Array,
    start: &Array,
    axes: &[i32],
) -> Result<Array> {
    let spans = (update.ndim() == src.ndim()).then(|| update.shape().to_vec());
    let start = dynamic_start(src, start, axes, spans.as_deref())?;
    stream_op(|res, s| unsafe {
        sys::mlx_slice_update_dynamic(
            res,
            src.as_raw(),
            update.as_raw(),
            start.as_raw(),
            axes.as_ptr(),
            axes.len(),
            s,
        )
    })
}

/// `a` with the positions where `mask` is true filled, in row-major order, with
/// consecutive elements of `src`.
///
/// When `src` has fewer slices than `mask` has true entries (an empty `src` too), the
/// entries past its end are dropped and keep the values of `a` (MLX aborts there).
#[track_caller]
pub fn masked_scatter(a: &Array, mask: &Array, src: &Array) -> Result<Array> {
    let loc = Location::caller();
    let scatter = |mask: &Array| {
        stream_op(|res, s| unsafe {
            sys::mlx_masked_scatter(res, a.as_raw(), mask.as_raw(), src.as_raw(), s)
        })
        .map_err(at(loc))
    };
    let out = scatter(mask)?;
    if src.size() == 0 || a.size() == 0 {
        return Ok(a.clone()); // nothing to write (MLX's kernel divides by the source size)
    }
    match bounds::limit_mask(a, mask, src)? {
        Some(limited) => scatter(&limited),
        None => Ok(out),
    }
}

impl Array {
    /// Elements of the flattened array at `indices` (see [`take`]).
    #[track_caller]
    pub fn take(&self, indices: &Array) -> Result<Array> {
        take(self, indices)
    }

    /// Slices along `axis` at `indices` (see [`take_axis`]).
    #[track_caller]
    pub fn take_axis(&self, indices: &Array, axis: i32) -> Result<Array> {
        take_axis(self, indices, axis)
    }

    /// Elements picked along `axis` by `indices` (see [`take_along_axis`]).
    #[track_caller]
    pub fn take_along_axis(&self, indices: &Array, axis: i32) -> Result<Array> {
        take_along_axis(self, indices, axis)
    }
}
