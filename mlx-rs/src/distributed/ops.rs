//! Collectives and point-to-point ops over a [`Group`].

use super::{Backend, Group};
use crate::error::{install_error_handler, mlx_error};
use crate::raw::check_fits;
use crate::{Array, Device, Dtype, Error, Result};
use mlx_sys as sys;
use std::ffi::c_int;
use std::panic::Location;

/// Runs an mlx-c distributed op on `group` (or the default group) and the stream its
/// backend communicates on, unless a `with_stream` scope chose one.
fn dist_op(
    group: Option<&Group>,
    location: &'static Location<'static>,
    f: impl FnOnce(*mut sys::mlx_array, sys::mlx_distributed_group, sys::mlx_stream) -> c_int,
) -> Result<Array> {
    let default;
    let group = match group {
        Some(g) => g,
        None => {
            default = Group::init(Backend::Any, false)?;
            &default
        }
    };
    // As Python's `stream=None`: NCCL communicates on the GPU, every other backend on
    // the CPU, whatever the default device.
    let device = if group.backend() == Some(Backend::Nccl) {
        Device::gpu()
    } else {
        Device::cpu()
    };
    install_error_handler();
    crate::stream::with_scoped_or_default(&device, |s| {
        // SAFETY: a fresh empty handle, owned by the Array (freed on drop either way).
        let mut res = unsafe { sys::mlx_array_new() };
        let code = f(&mut res, group.as_raw(), s);
        let out = Array::from_raw(res);
        if code != 0 {
            return Err(mlx_error(location));
        }
        check_fits(out.shape(), out.dtype(), 0)?;
        Ok(out)
    })?
}

/// The sum of `x` over all processes of `group` (`None`: the default group, as
/// [`Group::init`]`(Backend::Any, false)` gives). Every process gets the result.
///
/// Lazy like every op: the processes communicate when the result is evaluated, and every
/// process of the group must evaluate the same collectives in the same order. In a group of
/// one process it returns `x`.
///
/// ```
/// use mlx_rs::{distributed, Array};
/// let x = Array::from_slice(&[1.0f32, 2.0], &[2])?;
/// // Alone, the sum over all processes is `x` itself.
/// assert_eq!(distributed::all_sum(&x, None)?.to_vec::<f32>()?, vec![1.0, 2.0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn all_sum(x: &Array, group: Option<&Group>) -> Result<Array> {
    dist_op(group, Location::caller(), |res, g, s| unsafe {
        sys::mlx_distributed_all_sum(res, x.as_raw(), g, s)
    })
}

/// The elementwise maximum of `x` over all processes of `group` (see [`all_sum`]).
#[track_caller]
pub fn all_max(x: &Array, group: Option<&Group>) -> Result<Array> {
    dist_op(group, Location::caller(), |res, g, s| unsafe {
        sys::mlx_distributed_all_max(res, x.as_raw(), g, s)
    })
}

/// The elementwise minimum of `x` over all processes of `group` (see [`all_sum`]).
#[track_caller]
pub fn all_min(x: &Array, group: Option<&Group>) -> Result<Array> {
    dist_op(group, Location::caller(), |res, g, s| unsafe {
        sys::mlx_distributed_all_min(res, x.as_raw(), g, s)
    })
}

/// The `x` of every process of `group`, concatenated along axis 0 in rank order (a scalar
/// `x` gives a vector of `size` elements). Every process gets the result. See
/// [`all_sum`].
#[track_caller]
pub fn all_gather(x: &Array, group: Option<&Group>) -> Result<Array> {
    dist_op(group, Location::caller(), |res, g, s| unsafe {
        sys::mlx_distributed_all_gather(res, x.as_raw(), g, s)
    })
}

/// The sum of `x` over all processes, scattered: process `r` gets the `r`-th of `size`
/// equal slices along axis 0 (which must divide by the group size). See [`all_sum`].
///
/// MLX 0.32.2's ring backend does not have it: evaluating the result fails with MLX's
/// message. In a group of one process it returns `x`.
#[track_caller]
pub fn sum_scatter(x: &Array, group: Option<&Group>) -> Result<Array> {
    dist_op(group, Location::caller(), |res, g, s| unsafe {
        sys::mlx_distributed_sum_scatter(res, x.as_raw(), g, s)
    })
}

/// Sends `x` to process `dst` of `group`; the result (equal to `x`) must be evaluated
/// for the data to be sent, and `dst` must evaluate a matching [`recv`].
///
/// Errors: a group of one process, `dst` outside the group; on the ring backend (at
/// evaluation) a `dst` that is not a neighbour (`rank ± 1` around the ring).
#[track_caller]
pub fn send(x: &Array, dst: i32, group: Option<&Group>) -> Result<Array> {
    dist_op(group, Location::caller(), |res, g, s| unsafe {
        sys::mlx_distributed_send(res, x.as_raw(), dst, g, s)
    })
}

/// Receives an array of `shape` and `dtype` sent by process `src` of `group` with
/// [`send`]. Errors as for [`send`].
#[track_caller]
pub fn recv(shape: &[i32], dtype: Dtype, src: i32, group: Option<&Group>) -> Result<Array> {
    if let Some(d) = shape.iter().find(|&&d| d < 0) {
        return Err(Error::Shape(format!(
            "negative dimension {d} in shape {shape:?}"
        )));
    }
    dist_op(group, Location::caller(), |res, g, s| unsafe {
        sys::mlx_distributed_recv(res, shape.as_ptr(), shape.len(), dtype.to_raw(), src, g, s)
    })
}

/// Receives an array of the shape and dtype of `x` sent by process `src` (see [`recv`]).
#[track_caller]
pub fn recv_like(x: &Array, src: i32, group: Option<&Group>) -> Result<Array> {
    dist_op(group, Location::caller(), |res, g, s| unsafe {
        sys::mlx_distributed_recv_like(res, x.as_raw(), src, g, s)
    })
}
