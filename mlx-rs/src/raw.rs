//! The audited bridge to mlx-c: every FFI call that produces arrays goes through the
//! helpers here, which install the error handler, own the out-handles, free them on
//! failure, and turn return codes into [`Error`](crate::Error)s at the Rust call site.

// Some helpers serve op families that are still being added.
#![allow(dead_code)]

use crate::error::{install_error_handler, mlx_error};
use crate::{Array, Dtype, Error, Result};
use mlx_sys as sys;
use std::ffi::{c_int, CStr};
use std::panic::Location;

/// Runs an mlx-c call that writes one array into its out-parameter.
#[track_caller]
pub(crate) fn array_op(f: impl FnOnce(*mut sys::mlx_array) -> c_int) -> Result<Array> {
    install_error_handler();
    // SAFETY: a fresh empty handle; freed below on failure or owned by the Array.
    let mut res = unsafe { sys::mlx_array_new() };
    if f(&mut res) != 0 {
        // SAFETY: `res` came from mlx_array_new and is not used afterwards.
        unsafe { sys::mlx_array_free(res) };
        return Err(mlx_error(Location::caller()));
    }
    Ok(Array::from_raw(res))
}

/// Runs an mlx-c call that writes two arrays.
#[track_caller]
pub(crate) fn array_pair_op(
    f: impl FnOnce(*mut sys::mlx_array, *mut sys::mlx_array) -> c_int,
) -> Result<(Array, Array)> {
    install_error_handler();
    // SAFETY: fresh handles, owned by the Arrays built right after the call.
    let (mut ra, mut rb) = unsafe { (sys::mlx_array_new(), sys::mlx_array_new()) };
    let code = f(&mut ra, &mut rb);
    let (a, b) = (Array::from_raw(ra), Array::from_raw(rb));
    if code != 0 {
        return Err(mlx_error(Location::caller()));
    }
    Ok((a, b))
}

/// Runs an mlx-c call that writes a vector of arrays.
#[track_caller]
pub(crate) fn vector_op(f: impl FnOnce(*mut sys::mlx_vector_array) -> c_int) -> Result<Vec<Array>> {
    install_error_handler();
    let mut vec = VectorArray::empty();
    if f(&mut vec.0) != 0 {
        return Err(mlx_error(Location::caller()));
    }
    vec.to_vec()
}

/// Runs an mlx-c call that only returns a status code.
#[track_caller]
pub(crate) fn status(f: impl FnOnce() -> c_int) -> Result<()> {
    install_error_handler();
    if f() != 0 {
        return Err(mlx_error(Location::caller()));
    }
    Ok(())
}

/// Runs an mlx-c call that evaluates arrays (`eval`, `async_eval`, waits, synchronisation)
/// on the caller's stack: MLX's evaluation does not recurse over the graph (see
/// `graph_stack`), and small evaluations are frequent (every decoding step), so they skip
/// the deep stack's switch and check.
#[track_caller]
pub(crate) fn eval_status(f: impl FnOnce() -> c_int) -> Result<()> {
    let location = Location::caller();
    install_error_handler();
    if f() != 0 {
        return Err(mlx_error(location));
    }
    Ok(())
}

/// Runs an mlx-c call that walks the graph recursively inside MLX (graph export), or that
/// is rare and may (saving), on a deep stack (see `graph_stack`).
#[track_caller]
pub(crate) fn walk_status(f: impl FnOnce() -> c_int) -> Result<()> {
    let location = Location::caller();
    install_error_handler();
    if crate::graph_stack::run(f) != 0 {
        return Err(mlx_error(location));
    }
    Ok(())
}

/// An owned `mlx_vector_array`.
pub(crate) struct VectorArray(pub(crate) sys::mlx_vector_array);

impl VectorArray {
    pub(crate) fn empty() -> Self {
        // SAFETY: creates an empty vector, owned by the returned value.
        VectorArray(unsafe { sys::mlx_vector_array_new() })
    }

    /// Copies the handles of `arrays` (MLX shares the underlying data).
    pub(crate) fn from_arrays<A: AsRef<Array>>(arrays: &[A]) -> Self {
        let new = |raws: &[sys::mlx_array]| {
            // SAFETY: `raws` holds live handles for the duration of the call; mlx copies
            // them.
            VectorArray(unsafe { sys::mlx_vector_array_new_data(raws.as_ptr(), raws.len()) })
        };
        // Few arrays (every evaluation, most ops taking a list) need no heap buffer here.
        const INLINE: usize = 8;
        if arrays.len() <= INLINE {
            let mut raws = [sys::mlx_array {
                ctx: std::ptr::null_mut(),
            }; INLINE];
            for (raw, a) in raws.iter_mut().zip(arrays) {
                *raw = a.as_ref().as_raw();
            }
            return new(&raws[..arrays.len()]);
        }
        new(&arrays
            .iter()
            .map(|a| a.as_ref().as_raw())
            .collect::<Vec<_>>())
    }

    pub(crate) fn len(&self) -> usize {
        // SAFETY: `self.0` is a live vector.
        unsafe { sys::mlx_vector_array_size(self.0) }
    }

    #[track_caller]
    pub(crate) fn to_vec(&self) -> Result<Vec<Array>> {
        (0..self.len())
            .map(|i| array_op(|res| unsafe { sys::mlx_vector_array_get(res, self.0, i) }))
            .collect()
    }
}

impl Drop for VectorArray {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_vector_array_free(self.0) };
    }
}

/// An owned `mlx_string`.
pub(crate) struct MlxString(pub(crate) sys::mlx_string);

impl MlxString {
    pub(crate) fn new() -> Self {
        // SAFETY: creates an empty string, owned by the returned value.
        MlxString(unsafe { sys::mlx_string_new() })
    }

    pub(crate) fn from_str(s: &str) -> Result<Self> {
        let c = std::ffi::CString::new(s).map_err(|_| {
            crate::Error::InvalidArgument(format!("string contains a NUL byte: {s:?}"))
        })?;
        // SAFETY: `c` is a valid C string; mlx copies it.
        Ok(MlxString(unsafe { sys::mlx_string_new_data(c.as_ptr()) }))
    }

    pub(crate) fn to_string_lossy(&self) -> String {
        // SAFETY: mlx_string_data returns NUL-terminated data owned by `self` (or null).
        let p = unsafe { sys::mlx_string_data(self.0) };
        if p.is_null() {
            return String::new();
        }
        // SAFETY: non-null NUL-terminated string that outlives this borrow.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Drop for MlxString {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_string_free(self.0) };
    }
}

/// Runs an mlx-c op that writes one array and takes the current stream last.
#[track_caller]
pub(crate) fn stream_op(
    f: impl FnOnce(*mut sys::mlx_array, sys::mlx_stream) -> c_int,
) -> Result<Array> {
    let location = Location::caller();
    install_error_handler();
    crate::stream::with_current_raw(|s| {
        // SAFETY: a fresh empty handle; owned by the Array (freed on drop either way).
        let mut res = unsafe { sys::mlx_array_new() };
        let code = f(&mut res, s);
        let out = Array::from_raw(res);
        if code != 0 {
            return Err(mlx_error(location));
        }
        check_array_made(&out)?;
        Ok(out)
    })?
}

/// Runs an mlx-c op that writes two arrays and takes the current stream last.
#[track_caller]
pub(crate) fn stream_pair_op(
    f: impl FnOnce(*mut sys::mlx_array, *mut sys::mlx_array, sys::mlx_stream) -> c_int,
) -> Result<(Array, Array)> {
    let location = Location::caller();
    install_error_handler();
    crate::stream::with_current_raw(|s| {
        // SAFETY: fresh handles, owned by the Arrays built right after the call.
        let (mut ra, mut rb) = unsafe { (sys::mlx_array_new(), sys::mlx_array_new()) };
        let code = f(&mut ra, &mut rb, s);
        let (a, b) = (Array::from_raw(ra), Array::from_raw(rb));
        if code != 0 {
            return Err(mlx_error(location));
        }
        check_array_made(&a)?;
        check_array_made(&b)?;
        Ok((a, b))
    })?
}

/// Runs an mlx-c op that writes a vector of arrays and takes the current stream last.
#[track_caller]
pub(crate) fn stream_vector_op(
    f: impl FnOnce(*mut sys::mlx_vector_array, sys::mlx_stream) -> c_int,
) -> Result<Vec<Array>> {
    let location = Location::caller();
    install_error_handler();
    crate::stream::with_current_raw(|s| {
        let mut vec = VectorArray::empty();
        if f(&mut vec.0, s) != 0 {
            return Err(mlx_error(location));
        }
        let out = vec.to_vec()?;
        for a in &out {
            check_array_made(a)?;
        }
        Ok(out)
    })?
}

/// [`check_made`] for an array MLX just made. Most arrays an op makes are small: one pass
/// over the shape settles those without asking MLX for the dtype (every op pays this).
pub(crate) fn check_array_made(a: &Array) -> Result<()> {
    let shape = a.shape();
    let mut elements = 1u128;
    let mut negative = false;
    for &d in shape {
        negative |= d < 0;
        elements = elements.saturating_mul(d.unsigned_abs() as u128);
    }
    if !negative && elements.saturating_mul(MAX_ITEM_BYTES) < CHECKED_BYTES {
        return Ok(());
    }
    check_made(shape, a.dtype())
}

/// The largest element size of any dtype (float64, int64, uint64, complex64).
const MAX_ITEM_BYTES: u128 = 8;

/// Refuses an array that MLX made with a negative dimension (the last line of defence:
/// every shape argument is checked where it enters, but such an array would crash,
/// hang or read garbage when evaluated), then checks that it fits in memory.
pub(crate) fn check_made(shape: &[i32], dtype: Dtype) -> Result<()> {
    check_not_negative(shape)?;
    check_fits(shape, dtype, 0)
}

/// Refuses the shape of an array that MLX made with a negative dimension.
pub(crate) fn check_not_negative(shape: &[i32]) -> Result<()> {
    match shape.iter().find(|&&d| d < 0) {
        Some(d) => Err(Error::Shape(format!(
            "MLX made an array of shape {shape:?}, with the negative dimension {d}"
        ))),
        None => Ok(()),
    }
}

/// Arrays below this size are not checked against the memory limit (scalars and other
/// small arrays can always be made, so error paths never fail for lack of memory).
const CHECKED_BYTES: u128 = 4 << 10;

/// Bytes of an array of `shape` and `dtype`, without overflow.
pub(crate) fn bytes_of(shape: &[i32], dtype: Dtype) -> u128 {
    shape.iter().fold(dtype.size() as u128, |n, &d| {
        n.saturating_mul(d.max(0) as u128)
    })
}

fn show_bytes(n: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n > u64::MAX as u128 {
        return "more than 16 EiB".into();
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Refuses to make an array of `shape` and `dtype` (plus `extra` bytes made at the same
/// time) that cannot fit under MLX's memory limit next to the arrays alive now.
///
/// MLX's CPU backend does not check its allocations: a `malloc` that fails (a buffer
/// larger than the machine can give) is written through anyway and crashes the process.
/// Its memory limit is not enforced on the CPU either. So mlx-rs checks every array it
/// makes of 4 KiB or more: the array's bytes must not exceed the memory limit minus the
/// active memory, nor what is left under the process's own limits (`ulimit -v`, `ulimit
/// -d`, its cgroup's memory limit; see `limits`). The check is made when the (lazy) array
/// is built, so it sees the memory of arrays already evaluated, not of other arrays still
/// waiting to be.
pub(crate) fn check_fits(shape: &[i32], dtype: Dtype, extra: u128) -> Result<()> {
    let need = bytes_of(shape, dtype).saturating_add(extra);
    if need < CHECKED_BYTES {
        return Ok(());
    }
    let (mut limit, mut active) = (0usize, 0usize);
    // SAFETY: plain reads of the allocator's counters.
    let ok = unsafe {
        sys::mlx_get_memory_limit(&mut limit) == 0 && sys::mlx_get_active_memory(&mut active) == 0
    };
    if !ok {
        crate::error::take_message();
    }
    // No limit known: refuse only what no allocator can give.
    let limit = if ok && limit > 0 {
        limit as u128
    } else {
        isize::MAX as u128
    };
    let free = limit.saturating_sub(active as u128);
    // The operating system's limits on the process (ulimit -v/-d, cgroup): an allocation
    // past them fails just the same.
    if need <= free && crate::limits::fits_quickly(need) {
        return Ok(());
    }
    let process = crate::limits::headroom(need).filter(|h| h.bytes < free);
    let free = process.as_ref().map_or(free, |h| h.bytes);
    if need <= free {
        return Ok(());
    }
    let what = if extra == 0 {
        format!("an array of shape {shape:?} and dtype {dtype} needs")
    } else {
        "the arrays being loaded need".to_string()
    };
    if let Some(h) = process {
        return Err(Error::OutOfMemory(format!(
            "{what} {} but the process may allocate only {} more under its {} of {}; \
             use smaller arrays or raise that limit",
            show_bytes(need),
            show_bytes(free),
            h.limit,
            show_bytes(h.limit_bytes)
        )));
    }
    Err(Error::OutOfMemory(format!(
        "{what} {} but MLX may use only {} more (memory limit {}, {} held by live \
         arrays); raise the limit with mlx_rs::memory::set_memory_limit or use smaller arrays",
        show_bytes(need),
        show_bytes(free),
        show_bytes(limit),
        show_bytes(active as u128)
    )))
}
