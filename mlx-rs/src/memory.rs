//! Memory accounting and limits of MLX's allocator.
//!
//! MLX keeps freed buffers in a cache for reuse. *Active* memory is held by live arrays,
//! *cache* memory by freed buffers kept for reuse, *peak* is the highest active memory
//! since start (or the last [`reset_peak_memory`]). All sizes are in bytes and cover the
//! whole process.
//!
//! mlx-rs enforces the memory limit when arrays are made: an array of 4 KiB or more that
//! is larger than the limit minus the active memory is refused with
//! [`Error::OutOfMemory`](crate::Error::OutOfMemory) (loads check the total they would
//! read). MLX itself does not enforce it on the CPU, and its CPU backend crashes when an
//! allocation fails, so this check is what keeps an oversized array (or a model larger
//! than the limit) an error instead of a crash. Arrays must also fit what the operating
//! system still lets the process allocate under its own limits (`ulimit -v`, `ulimit -d`,
//! the memory limit of its cgroup, e.g. a container's). The check sees arrays already
//! evaluated, not others still waiting in a lazy graph.
//!
//! ```
//! use mlx_rs::memory;
//! let before = memory::get_active_memory()?;
//! let a = mlx_rs::ops::ones(&[1024], mlx_rs::Dtype::Float32)?;
//! a.eval()?;
//! assert!(memory::get_peak_memory()? >= 4096);
//! # let _ = before;
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use crate::raw::status;
use crate::Result;
use mlx_sys as sys;

/// Bytes held by live arrays.
#[track_caller]
pub fn get_active_memory() -> Result<usize> {
    let mut n = 0;
    status(|| unsafe { sys::mlx_get_active_memory(&mut n) })?;
    Ok(n)
}

/// Bytes held in the allocator's cache (freed buffers kept for reuse).
#[track_caller]
pub fn get_cache_memory() -> Result<usize> {
    let mut n = 0;
    status(|| unsafe { sys::mlx_get_cache_memory(&mut n) })?;
    Ok(n)
}

/// The highest active memory since start or the last [`reset_peak_memory`].
#[track_caller]
pub fn get_peak_memory() -> Result<usize> {
    let mut n = 0;
    status(|| unsafe { sys::mlx_get_peak_memory(&mut n) })?;
    Ok(n)
}

/// Resets the peak memory counter to zero.
#[track_caller]
pub fn reset_peak_memory() -> Result<()> {
    status(|| unsafe { sys::mlx_reset_peak_memory() })
}

/// The memory limit: a guideline for the most memory MLX should use (allocations past
/// it first wait for pending work and free the cache).
#[track_caller]
pub fn get_memory_limit() -> Result<usize> {
    let mut n = 0;
    status(|| unsafe { sys::mlx_get_memory_limit(&mut n) })?;
    Ok(n)
}

/// Sets the memory limit (see [`get_memory_limit`]); returns the previous limit. Arrays
/// that do not fit under it are refused when they are made (see the `ops::indexing` notes in `docs/bad-input.md`).
#[track_caller]
pub fn set_memory_limit(limit: usize) -> Result<usize> {
    let mut prev = 0;
    status(|| unsafe { sys::mlx_set_memory_limit(&mut prev, limit) })?;
    Ok(prev)
}

/// Sets the most memory the allocator's cache may hold (0 disables caching); returns the
/// previous limit. Extra cached buffers are freed on the next allocation.
#[track_caller]
pub fn set_cache_limit(limit: usize) -> Result<usize> {
    let mut prev = 0;
    status(|| unsafe { sys::mlx_set_cache_limit(&mut prev, limit) })?;
    Ok(prev)
}

/// Sets the wired limit: how much memory may be kept resident (Metal on macOS 15+; a
/// no-op elsewhere); returns the previous limit. MLX fails if `limit` exceeds what the
/// system allows.
#[track_caller]
pub fn set_wired_limit(limit: usize) -> Result<usize> {
    let mut prev = 0;
    status(|| unsafe { sys::mlx_set_wired_limit(&mut prev, limit) })?;
    Ok(prev)
}

/// Frees the buffers held in the allocator's cache.
#[track_caller]
pub fn clear_cache() -> Result<()> {
    status(|| unsafe { sys::mlx_clear_cache() })
}
