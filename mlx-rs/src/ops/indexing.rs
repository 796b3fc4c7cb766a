//! Gather/scatter style ops: take, slice, slice updates, scatter, put/take along axis,
//! masked scatter.
//!
//! Index arrays must be integers; negative indices count from the end of their axis.
//! Index values must be in range (see [`gather`]).

use crate::error::Error;
use crate::raw::{stream_op, VectorArray};
use crate::{Array, Result};
use mlx_sys as sys;

/// Elements of the flattened `a` at `indices` (the result has the shape of `indices`).
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn take(a: &Array, indices: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_take(res, a.as_raw(), indices.as_raw(), s) })
}

/// Slices of `a` along `axis` at `indices` (that axis is replaced by the shape of `indices`).
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn take_axis(a: &Array, indices: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_take_axis(res, a.as_raw(), indices.as_raw(), axis, s) })
}

/// Elements of `a` picked along `axis` by `indices`, which broadcasts with `a` on the
/// other axes (NumPy's `take_along_axis`).
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn take_along_axis(a: &Array, indices: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_take_along_axis(res, a.as_raw(), indices.as_raw(), axis, s)
    })
}

/// `a` with `values` written along `axis` at `indices` (the inverse of [`take_along_axis`]).
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn put_along_axis(a: &Array, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_put_along_axis(res, a.as_raw(), indices.as_raw(), values.as_raw(), axis, s)
    })
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
/// Index values must lie inside their axis (negative values count from the end). Index
/// arrays are lazy, so their values cannot be checked here, and MLX does not check them
/// when it runs: a gather with an index outside its axis reads, and a scatter writes,
/// outside the array, which is undefined behaviour. The NumPy-style
/// [`Array::index`] checks plain integer indices.
#[track_caller]
pub fn gather<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    axes: &[i32],
    slice_sizes: &[i32],
) -> Result<Array> {
    check_index_axes("gather", indices.len(), axes)?;
    let v = VectorArray::from_arrays(indices);
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
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn gather_single(a: &Array, indices: &Array, axis: i32, slice_sizes: &[i32]) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_gather_single(
            res,
            a.as_raw(),
            indices.as_raw(),
            axis,
            slice_sizes.as_ptr(),
            slice_sizes.len(),
            s,
        )
    })
}

/// `a` with slices replaced by `updates` at `indices` (which of duplicates wins is
/// unspecified).
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    check_index_axes("scatter", indices.len(), axes)?;
    let v = VectorArray::from_arrays(indices);
    stream_op(|res, s| unsafe {
        sys::mlx_scatter(
            res,
            a.as_raw(),
            v.0,
            updates.as_raw(),
            axes.as_ptr(),
            axes.len(),
            s,
        )
    })
}

/// [`scatter`] with one index array for one `axis`.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_single(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_single(res, a.as_raw(), indices.as_raw(), updates.as_raw(), axis, s)
    })
}

/// `a` with `updates` added at `indices` (duplicates accumulate).
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_add<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    check_index_axes("scatter_add", indices.len(), axes)?;
    let v = VectorArray::from_arrays(indices);
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_add(
            res,
            a.as_raw(),
            v.0,
            updates.as_raw(),
            axes.as_ptr(),
            axes.len(),
            s,
        )
    })
}

/// [`scatter_add`] with one index array for one `axis`.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_add_single(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_add_single(res, a.as_raw(), indices.as_raw(), updates.as_raw(), axis, s)
    })
}

/// `a` with each indexed element replaced by its maximum with `updates`.
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_max<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    check_index_axes("scatter_max", indices.len(), axes)?;
    let v = VectorArray::from_arrays(indices);
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_max(
            res,
            a.as_raw(),
            v.0,
            updates.as_raw(),
            axes.as_ptr(),
            axes.len(),
            s,
        )
    })
}

/// [`scatter_max`] with one index array for one `axis`.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_max_single(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_max_single(res, a.as_raw(), indices.as_raw(), updates.as_raw(), axis, s)
    })
}

/// `a` with each indexed element replaced by its minimum with `updates`.
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_min<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    check_index_axes("scatter_min", indices.len(), axes)?;
    let v = VectorArray::from_arrays(indices);
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_min(
            res,
            a.as_raw(),
            v.0,
            updates.as_raw(),
            axes.as_ptr(),
            axes.len(),
            s,
        )
    })
}

/// [`scatter_min`] with one index array for one `axis`.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_min_single(a: &Array, indices: &Array, updates: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_min_single(res, a.as_raw(), indices.as_raw(), updates.as_raw(), axis, s)
    })
}

/// `a` with each indexed element multiplied by `updates`.
///
/// `indices[i]` (broadcast together) index `axes[i]`; `updates` has shape
/// `broadcast(indices).shape + slice shape`, where the slice has `a`'s number of dimensions.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_prod<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    check_index_axes("scatter_prod", indices.len(), axes)?;
    let v = VectorArray::from_arrays(indices);
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_prod(
            res,
            a.as_raw(),
            v.0,
            updates.as_raw(),
            axes.as_ptr(),
            axes.len(),
            s,
        )
    })
}

/// [`scatter_prod`] with one index array for one `axis`.
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_prod_single(
    a: &Array,
    indices: &Array,
    updates: &Array,
    axis: i32,
) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_prod_single(res, a.as_raw(), indices.as_raw(), updates.as_raw(), axis, s)
    })
}

/// `a` with `values` added along `axis` at `indices` (the accumulating form of
/// [`put_along_axis`]).
///
/// Index values must lie inside their axis: MLX does not check them (see the note on
/// [`gather`]).
#[track_caller]
pub fn scatter_add_axis(a: &Array, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_scatter_add_axis(res, a.as_raw(), indices.as_raw(), values.as_raw(), axis, s)
    })
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
#[track_caller]
pub fn slice_dynamic(a: &Array, start: &Array, axes: &[i32], slice_size: &[i32]) -> Result<Array> {
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
#[track_caller]
pub fn slice_update_dynamic(
    src: &Array,
    update: &Array,
    start: &Array,
    axes: &[i32],
) -> Result<Array> {
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
#[track_caller]
pub fn masked_scatter(a: &Array, mask: &Array, src: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_masked_scatter(res, a.as_raw(), mask.as_raw(), src.as_raw(), s)
    })
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
