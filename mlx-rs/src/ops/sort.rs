//! Sorting, partitioning, top-k and searchsorted.

use super::creation::c_string;
use super::empty::or_empty;
use crate::raw::stream_op;
use crate::{Array, Result};
use mlx_sys as sys;

/// The flattened `a`, sorted ascending.
#[track_caller]
pub fn sort(a: &Array) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_sort(res, a.as_raw(), s)
    })?)
}

/// `a` sorted ascending along `axis`.
#[track_caller]
pub fn sort_axis(a: &Array, axis: i32) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_sort_axis(res, a.as_raw(), axis, s)
    })?)
}

/// The indices (`uint32`) that sort the flattened `a` ascending.
#[track_caller]
pub fn argsort(a: &Array) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_argsort(res, a.as_raw(), s)
    })?)
}

/// The indices (`uint32`) that sort `a` ascending along `axis`.
#[track_caller]
pub fn argsort_axis(a: &Array, axis: i32) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_argsort_axis(res, a.as_raw(), axis, s)
    })?)
}

/// The flattened `a` partitioned around its `kth` element: that element is in its sorted
/// place, smaller ones before it and larger ones after, each side in unspecified order.
#[track_caller]
pub fn partition(a: &Array, kth: i32) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_partition(res, a.as_raw(), kth, s)
    })?)
}

/// `a` partitioned along `axis` around the `kth` element (see [`partition`]).
#[track_caller]
pub fn partition_axis(a: &Array, kth: i32, axis: i32) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_partition_axis(res, a.as_raw(), kth, axis, s)
    })?)
}

/// The indices (`uint32`) that partition the flattened `a` around its `kth` element.
#[track_caller]
pub fn argpartition(a: &Array, kth: i32) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_argpartition(res, a.as_raw(), kth, s)
    })?)
}

/// The indices (`uint32`) that partition `a` along `axis` around the `kth` element.
#[track_caller]
pub fn argpartition_axis(a: &Array, kth: i32, axis: i32) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_argpartition_axis(res, a.as_raw(), kth, axis, s)
    })?)
}

/// The `k` largest elements of the flattened `a`, in unspecified order.
#[track_caller]
pub fn topk(a: &Array, k: i32) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_topk(res, a.as_raw(), k, s)
    })?)
}

/// The `k` largest elements along `axis`, in unspecified order.
#[track_caller]
pub fn topk_axis(a: &Array, k: i32, axis: i32) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_topk_axis(res, a.as_raw(), k, axis, s)
    })?)
}

/// The positions at which `values` would be inserted into the ascending 1-D
/// `sorted_sequence` to keep it sorted: `side` `"left"` gives the first such position,
/// `"right"` the last.
#[track_caller]
pub fn searchsorted(sorted_sequence: &Array, values: &Array, side: &str) -> Result<Array> {
    let side = c_string(side)?;
    stream_op(|res, s| unsafe {
        sys::mlx_searchsorted(
            res,
            sorted_sequence.as_raw(),
            values.as_raw(),
            side.as_ptr(),
            s,
        )
    })
}

impl Array {
    /// Sorted ascending along `axis`.
    #[track_caller]
    pub fn sort_axis(&self, axis: i32) -> Result<Array> {
        sort_axis(self, axis)
    }

    /// The indices that sort along `axis`.
    #[track_caller]
    pub fn argsort_axis(&self, axis: i32) -> Result<Array> {
        argsort_axis(self, axis)
    }
}
