//! Shape manipulation: reshape, transpose, squeeze, expand, broadcast, concatenate, stack,
//! split, tile, repeat, pad, roll, flip, strided views and dtype views.

use super::creation::{c_string, check_dims, check_size};
use crate::error::Error;
use crate::raw::{stream_op, stream_vector_op, vector_op, VectorArray};
use crate::{Array, Dtype, Result};
use mlx_sys as sys;

/// `a` with the same elements in a new `shape` (one dimension may be `-1`, inferred).
///
/// ```
/// use mlx_rs::Array;
/// let a = Array::from_slice(&[1i32, 2, 3, 4, 5, 6], &[6])?;
/// assert_eq!(a.reshape(&[2, -1])?.shape(), &[2, 3]);
/// assert!(a.reshape(&[4, 2]).is_err());
/// # Ok::<(), mlx_rs::Error>(())
/// ```
///
/// Fails on a dimension below -1, on more than one -1, and on a -1 next to a 0 (nothing
/// to infer it from); MLX accepted the first two and made arrays of negative size.
#[track_caller]
pub fn reshape(a: &Array, shape: &[i32]) -> Result<Array> {
    check_target_shape("reshape", shape)?;
    stream_op(|res, s| unsafe { sys::mlx_reshape(res, a.as_raw(), shape.as_ptr(), shape.len(), s) })
}

/// Checks the target `shape` of [`reshape`] or [`unflatten`]: every dimension is at least
/// 0 except for one -1, to be inferred from the others, which must not hold 0 elements
/// (MLX divides by their product).
fn check_target_shape(op: &str, shape: &[i32]) -> Result<()> {
    if let Some(d) = shape.iter().find(|&&d| d < -1) {
        return Err(Error::Shape(format!(
            "{op}: negative dimension {d} in shape {shape:?} (only one -1, to infer a \
             dimension, is allowed)"
        )));
    }
    match shape.iter().filter(|&&d| d == -1).count() {
        0 => Ok(()),
        1 if !shape.contains(&0) => Ok(()),
        1 => Err(Error::Shape(format!(
            "{op}: cannot infer the -1 in shape {shape:?} next to a dimension of 0"
        ))),
        _ => Err(Error::Shape(format!(
            "{op}: more than one -1 in shape {shape:?} (only one dimension can be inferred)"
        ))),
    }
}

/// Merges axes `start_axis..=end_axis` into one (negative axes count from the end).
#[track_caller]
pub fn flatten(a: &Array, start_axis: i32, end_axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_flatten(res, a.as_raw(), start_axis, end_axis, s) })
}

/// Splits `axis` into the dimensions `shape` (one may be `-1`).
///
/// `shape` is checked as for [`reshape`].
#[track_caller]
pub fn unflatten(a: &Array, axis: i32, shape: &[i32]) -> Result<Array> {
    check_target_shape("unflatten", shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_unflatten(res, a.as_raw(), axis, shape.as_ptr(), shape.len(), s)
    })
}

/// Removes every axis of size 1.
#[track_caller]
pub fn squeeze(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_squeeze(res, a.as_raw(), s) })
}

/// Removes `axis`, which must have size 1.
#[track_caller]
pub fn squeeze_axis(a: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_squeeze_axis(res, a.as_raw(), axis, s) })
}

/// Removes `axes`, which must all have size 1.
#[track_caller]
pub fn squeeze_axes(a: &Array, axes: &[i32]) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_squeeze_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), s)
    })
}

/// Inserts an axis of size 1 at `axis` (an axis of the result).
#[track_caller]
pub fn expand_dims(a: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_expand_dims(res, a.as_raw(), axis, s) })
}

/// Inserts axes of size 1 at each of `axes` (axes of the result).
#[track_caller]
pub fn expand_dims_axes(a: &Array, axes: &[i32]) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_expand_dims_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), s)
    })
}

/// Reverses the order of the axes.
#[track_caller]
pub fn transpose(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_transpose(res, a.as_raw(), s) })
}

/// Permutes the axes: axis `i` of the result is axis `axes[i]` of `a`.
#[track_caller]
pub fn transpose_axes(a: &Array, axes: &[i32]) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_transpose_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), s)
    })
}

/// Swaps two axes.
#[track_caller]
pub fn swapaxes(a: &Array, axis1: i32, axis2: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_swapaxes(res, a.as_raw(), axis1, axis2, s) })
}

/// Moves axis `source` to position `destination`, keeping the others in order.
#[track_caller]
pub fn moveaxis(a: &Array, source: i32, destination: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_moveaxis(res, a.as_raw(), source, destination, s) })
}

/// `a` broadcast to `shape` with NumPy's rules.
#[track_caller]
pub fn broadcast_to(a: &Array, shape: &[i32]) -> Result<Array> {
    check_dims(shape)?;
    stream_op(|res, s| unsafe {
        sys::mlx_broadcast_to(res, a.as_raw(), shape.as_ptr(), shape.len(), s)
    })
}

/// The inputs broadcast against each other to one common shape.
#[track_caller]
pub fn broadcast_arrays<A: AsRef<Array>>(inputs: &[A]) -> Result<Vec<Array>> {
    let v = VectorArray::from_arrays(inputs);
    stream_vector_op(|res, s| unsafe { sys::mlx_broadcast_arrays(res, v.0, s) })
}

/// Joins arrays along `axis`; the other dimensions must match.
#[track_caller]
pub fn concatenate_axis<A: AsRef<Array>>(arrays: &[A], axis: i32) -> Result<Array> {
    let v = VectorArray::from_arrays(arrays);
    stream_op(|res, s| unsafe { sys::mlx_concatenate_axis(res, v.0, axis, s) })
}

/// Joins the flattened arrays into one 1-D array.
#[track_caller]
pub fn concatenate<A: AsRef<Array>>(arrays: &[A]) -> Result<Array> {
    let v = VectorArray::from_arrays(arrays);
    stream_op(|res, s| unsafe { sys::mlx_concatenate(res, v.0, s) })
}

/// Stacks arrays of one shape along a new `axis`.
#[track_caller]
pub fn stack_axis<A: AsRef<Array>>(arrays: &[A], axis: i32) -> Result<Array> {
    let v = VectorArray::from_arrays(arrays);
    stream_op(|res, s| unsafe { sys::mlx_stack_axis(res, v.0, axis, s) })
}

/// Stacks arrays of one shape along a new first axis.
#[track_caller]
pub fn stack<A: AsRef<Array>>(arrays: &[A]) -> Result<Array> {
    let v = VectorArray::from_arrays(arrays);
    stream_op(|res, s| unsafe { sys::mlx_stack(res, v.0, s) })
}

/// Splits `a` along `axis` into `num_splits` equal parts (the axis must divide evenly).
#[track_caller]
pub fn split(a: &Array, num_splits: i32, axis: i32) -> Result<Vec<Array>> {
    if num_splits <= 0 {
        return Err(Error::InvalidArgument(format!(
            "split: the number of splits must be positive, got {num_splits}"
        )));
    }
    stream_vector_op(|res, s| unsafe { sys::mlx_split(res, a.as_raw(), num_splits, axis, s) })
}

/// Splits `a` along `axis` before each of the increasing positions `indices`.
#[track_caller]
pub fn split_sections(a: &Array, indices: &[i32], axis: i32) -> Result<Vec<Array>> {
    stream_vector_op(|res, s| unsafe {
        sys::mlx_split_sections(res, a.as_raw(), indices.as_ptr(), indices.len(), axis, s)
    })
}

/// The slices of `a` along its first axis.
#[track_caller]
pub fn unstack(a: &Array) -> Result<Vec<Array>> {
    stream_vector_op(|res, s| unsafe { sys::mlx_unstack(res, a.as_raw(), s) })
}

/// The slices of `a` along `axis`.
#[track_caller]
pub fn unstack_axis(a: &Array, axis: i32) -> Result<Vec<Array>> {
    stream_vector_op(|res, s| unsafe { sys::mlx_unstack_axis(res, a.as_raw(), axis, s) })
}

/// `arr` repeated `reps[i]` times along each axis (NumPy's `tile`).
#[track_caller]
pub fn tile(arr: &Array, reps: &[i32]) -> Result<Array> {
    if let Some(r) = reps.iter().find(|&&r| r < 0) {
        return Err(Error::InvalidArgument(format!(
            "tile: repetitions must be non-negative, got {r} in {reps:?}"
        )));
    }
    stream_op(|res, s| unsafe { sys::mlx_tile(res, arr.as_raw(), reps.as_ptr(), reps.len(), s) })
}

/// Each element of the flattened `arr` repeated `repeats` times.
#[track_caller]
pub fn repeat(arr: &Array, repeats: i32) -> Result<Array> {
    check_size("repeat: repeats", repeats)?;
    stream_op(|res, s| unsafe { sys::mlx_repeat(res, arr.as_raw(), repeats, s) })
}

/// Each slice of `arr` along `axis` repeated `repeats` times.
#[track_caller]
pub fn repeat_axis(arr: &Array, repeats: i32, axis: i32) -> Result<Array> {
    check_size("repeat: repeats", repeats)?;
    stream_op(|res, s| unsafe { sys::mlx_repeat_axis(res, arr.as_raw(), repeats, axis, s) })
}

/// Pads `axes` of `a` with `low_pad_size[i]` elements before and `high_pad_size[i]` after.
///
/// `mode` is `"constant"` (fill with `pad_value`), `"edge"` (repeat the edge values),
/// `"reflect"` (mirror without the edge) or `"symmetric"` (mirror with the edge).
///
/// Axes may be negative (counted from the end). MLX is always handed every axis (zero
/// padding for the others): its gradient of a pad over some of the axes reads the pad
/// sizes by axis number instead of by position (MLX 0.32.2's `Pad::vjp`), and gave the
/// padded shape back as the gradient.
#[track_caller]
pub fn pad(
    a: &Array,
    axes: &[i32],
    low_pad_size: &[i32],
    high_pad_size: &[i32],
    pad_value: &Array,
    mode: &str,
) -> Result<Array> {
    if axes.len() != low_pad_size.len() || axes.len() != high_pad_size.len() {
        return Err(Error::InvalidArgument(format!(
            "pad: {} axes need as many low and high pad sizes, got {} and {}",
            axes.len(),
            low_pad_size.len(),
            high_pad_size.len()
        )));
    }
    let ndim = a.ndim() as i32;
    let mut low = vec![0; ndim as usize];
    let mut high = vec![0; ndim as usize];
    let mut seen = vec![false; ndim as usize];
    for ((&axis, &lo), &hi) in axes.iter().zip(low_pad_size).zip(high_pad_size) {
        let ax = if axis < 0 { axis + ndim } else { axis };
        if !(0..ndim).contains(&ax) || seen[ax as usize] {
            return Err(Error::InvalidArgument(format!(
                "pad: axis {axis} is out of range or repeated for an array of {ndim} dimensions"
            )));
        }
        seen[ax as usize] = true;
        low[ax as usize] = lo;
        high[ax as usize] = hi;
    }
    let axes: Vec<i32> = (0..ndim).collect();
    let (low_pad_size, high_pad_size) = (&low[..], &high[..]);
    let mode = c_string(mode)?;
    stream_op(|res, s| unsafe {
        sys::mlx_pad(
            res,
            a.as_raw(),
            axes.as_ptr(),
            axes.len(),
            low_pad_size.as_ptr(),
            low_pad_size.len(),
            high_pad_size.as_ptr(),
            high_pad_size.len(),
            pad_value.as_raw(),
            mode.as_ptr(),
            s,
        )
    })
}

/// Pads every axis of `a` with `pad_width` elements on both sides (`mode` as in [`pad`]).
#[track_caller]
pub fn pad_symmetric(a: &Array, pad_width: i32, pad_value: &Array, mode: &str) -> Result<Array> {
    let mode = c_string(mode)?;
    stream_op(|res, s| unsafe {
        sys::mlx_pad_symmetric(
            res,
            a.as_raw(),
            pad_width,
            pad_value.as_raw(),
            mode.as_ptr(),
            s,
        )
    })
}

/// The flattened `a` shifted circularly by `shift` (one value), in the original shape.
#[track_caller]
pub fn roll(a: &Array, shift: &[i32]) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_roll(res, a.as_raw(), shift.as_ptr(), shift.len(), s) })
}

/// `a` shifted circularly along `axis` by `shift` (one value).
#[track_caller]
pub fn roll_axis(a: &Array, shift: &[i32], axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_roll_axis(res, a.as_raw(), shift.as_ptr(), shift.len(), axis, s)
    })
}

/// `a` shifted circularly by `shift[i]` along `axes[i]` (one shift broadcasts to all axes).
#[track_caller]
pub fn roll_axes(a: &Array, shift: &[i32], axes: &[i32]) -> Result<Array> {
    stream_op(|res, s| unsafe {
        sys::mlx_roll_axes(
            res,
            a.as_raw(),
            shift.as_ptr(),
            shift.len(),
            axes.as_ptr(),
            axes.len(),
            s,
        )
    })
}

/// `a` with the order of elements reversed along every axis.
#[track_caller]
pub fn flip(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_flip(res, a.as_raw(), s) })
}

/// `a` with the order of elements reversed along `axis`.
#[track_caller]
pub fn flip_axis(a: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_flip_axis(res, a.as_raw(), axis, s) })
}

/// `a` with the order of elements reversed along each of `axes`.
#[track_caller]
pub fn flip_axes(a: &Array, axes: &[i32]) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_flip_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), s) })
}

/// `a` with at least one dimension (a scalar becomes shape `[1]`).
#[track_caller]
pub fn atleast_1d(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_atleast_1d(res, a.as_raw(), s) })
}

/// `a` with at least two dimensions (leading axes of size 1 added).
#[track_caller]
pub fn atleast_2d(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_atleast_2d(res, a.as_raw(), s) })
}

/// `a` with at least three dimensions (NumPy's placement of the new axes).
#[track_caller]
pub fn atleast_3d(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_atleast_3d(res, a.as_raw(), s) })
}

/// A view of the row-major elements of `a` with the given `shape`, element `strides` and
/// element `offset`.
///
/// Fails if any element of the view would fall outside `a` (MLX itself does not check,
/// and reading outside would be undefined behaviour).
#[track_caller]
pub fn as_strided(a: &Array, shape: &[i32], strides: &[i64], offset: usize) -> Result<Array> {
    check_dims(shape)?;
    if shape.len() != strides.len() {
        return Err(Error::InvalidArgument(format!(
            "as_strided: shape {shape:?} and strides {strides:?} differ in length"
        )));
    }
    if !shape.contains(&0) {
        // The lowest and highest element offsets the view touches.
        let (mut lo, mut hi) = (offset as i128, offset as i128);
        for (&d, &st) in shape.iter().zip(strides) {
            let reach = (d as i128 - 1) * st as i128;
            if reach < 0 {
                lo += reach;
            } else {
                hi += reach;
            }
        }
        if lo < 0 || hi >= a.size() as i128 {
            return Err(Error::InvalidArgument(format!(
                "as_strided: shape {shape:?}, strides {strides:?} and offset {offset} reach \
                 element offsets {lo}..={hi}, outside the {} elements of the array",
                a.size()
            )));
        }
    }
    stream_op(|res, s| unsafe {
        sys::mlx_as_strided(
            res,
            a.as_raw(),
            shape.as_ptr(),
            shape.len(),
            strides.as_ptr(),
            strides.len(),
            offset,
            s,
        )
    })
}

/// The bytes of `a` reinterpreted as `dtype` (the last axis scales by the size ratio).
#[track_caller]
pub fn view(a: &Array, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_view(res, a.as_raw(), dtype.to_raw(), s) })
}

/// A copy of `a` (a new graph node with the same values).
#[track_caller]
pub fn copy(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_copy(res, a.as_raw(), s) })
}

/// The `inputs` made to depend on `dependencies`: evaluating an output also evaluates
/// the dependencies.
#[track_caller]
pub fn depends<A: AsRef<Array>, B: AsRef<Array>>(
    inputs: &[A],
    dependencies: &[B],
) -> Result<Vec<Array>> {
    if inputs.is_empty() {
        return Err(Error::InvalidArgument(
            "depends: at least one input array is needed".into(),
        ));
    }
    let i = VectorArray::from_arrays(inputs);
    let d = VectorArray::from_arrays(dependencies);
    vector_op(|res| unsafe { sys::mlx_depends(res, i.0, d.0) })
}

/// The number of elements spanned by `axes` of `a` (the product of their sizes), or its
/// reciprocal when `inverted`, as a scalar of `dtype`. Lazy, so a compiled function can
/// use shapes known only when it runs (e.g. for a mean).
#[track_caller]
pub fn number_of_elements(a: &Array, axes: &[i32], inverted: bool, dtype: Dtype) -> Result<Array> {
    // MLX wraps axes modulo ndim (and divides by zero for a scalar): check them here.
    let n = a.ndim() as i32;
    if let Some(ax) = axes.iter().find(|&&ax| ax < -n || ax >= n) {
        return Err(Error::InvalidArgument(format!(
            "number_of_elements: axis {ax} is out of range for an array of {n} dimensions"
        )));
    }
    stream_op(|res, s| unsafe {
        sys::mlx_number_of_elements(
            res,
            a.as_raw(),
            axes.as_ptr(),
            axes.len(),
            inverted,
            dtype.to_raw(),
            s,
        )
    })
}

/// The `n`-th discrete difference along `axis` (`a[i+1] - a[i]`, applied `n` times).
#[track_caller]
pub fn diff(a: &Array, n: i32, axis: i32) -> Result<Array> {
    check_size("diff: n", n)?;
    stream_op(|res, s| unsafe { sys::mlx_diff(res, a.as_raw(), n, axis, s) })
}

/// E4M3 float8 values stored as `uint8` converted to the floating-point `dtype`.
#[track_caller]
pub fn from_fp8(x: &Array, dtype: Dtype) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_from_fp8(res, x.as_raw(), dtype.to_raw(), s) })
}

/// Floating-point values converted to E4M3 float8, stored as `uint8`.
#[track_caller]
pub fn to_fp8(x: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_to_fp8(res, x.as_raw(), s) })
}

impl Array {
    /// The same elements in a new `shape` (see [`reshape`]).
    #[track_caller]
    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        reshape(self, shape)
    }

    /// Axes `start_axis..=end_axis` merged into one (see [`flatten`]); `flatten(0, -1)`
    /// gives a 1-D array.
    #[track_caller]
    pub fn flatten(&self, start_axis: i32, end_axis: i32) -> Result<Array> {
        flatten(self, start_axis, end_axis)
    }

    /// `axis` split into the dimensions `shape` (see [`unflatten`]).
    #[track_caller]
    pub fn unflatten(&self, axis: i32, shape: &[i32]) -> Result<Array> {
        unflatten(self, axis, shape)
    }

    /// Every axis of size 1 removed.
    #[track_caller]
    pub fn squeeze(&self) -> Result<Array> {
        squeeze(self)
    }

    /// `axis` (of size 1) removed.
    #[track_caller]
    pub fn squeeze_axis(&self, axis: i32) -> Result<Array> {
        squeeze_axis(self, axis)
    }

    /// `axes` (all of size 1) removed.
    #[track_caller]
    pub fn squeeze_axes(&self, axes: &[i32]) -> Result<Array> {
        squeeze_axes(self, axes)
    }

    /// A new axis of size 1 at `axis`.
    #[track_caller]
    pub fn expand_dims(&self, axis: i32) -> Result<Array> {
        expand_dims(self, axis)
    }

    /// New axes of size 1 at `axes`.
    #[track_caller]
    pub fn expand_dims_axes(&self, axes: &[i32]) -> Result<Array> {
        expand_dims_axes(self, axes)
    }

    /// The axes in reverse order.
    #[track_caller]
    pub fn transpose(&self) -> Result<Array> {
        transpose(self)
    }

    /// The axes permuted: axis `i` of the result is axis `axes[i]` of `self`.
    #[track_caller]
    pub fn transpose_axes(&self, axes: &[i32]) -> Result<Array> {
        transpose_axes(self, axes)
    }

    /// Two axes swapped.
    #[track_caller]
    pub fn swapaxes(&self, axis1: i32, axis2: i32) -> Result<Array> {
        swapaxes(self, axis1, axis2)
    }

    /// Axis `source` moved to `destination`.
    #[track_caller]
    pub fn moveaxis(&self, source: i32, destination: i32) -> Result<Array> {
        moveaxis(self, source, destination)
    }

    /// Broadcast to `shape`.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[i32]) -> Result<Array> {
        broadcast_to(self, shape)
    }

    /// Split along `axis` into `num_splits` equal parts.
    #[track_caller]
    pub fn split(&self, num_splits: i32, axis: i32) -> Result<Vec<Array>> {
        split(self, num_splits, axis)
    }

    /// Reversed along `axis`.
    #[track_caller]
    pub fn flip_axis(&self, axis: i32) -> Result<Array> {
        flip_axis(self, axis)
    }

    /// The bytes reinterpreted as `dtype` (see [`view`]).
    #[track_caller]
    pub fn view(&self, dtype: Dtype) -> Result<Array> {
        view(self, dtype)
    }
}
