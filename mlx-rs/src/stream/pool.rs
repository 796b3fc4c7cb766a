//! Streams used again instead of made anew, so that threads and streams are bounded.
//!
//! MLX 0.32 starts an OS thread (its scheduler's worker) for every CPU stream the first
//! time work is queued on it, and never ends it; a GPU stream keeps its command encoder
//! (a CUDA stream, a worker thread) until the thread that made it exits. Every thread
//! that runs an op gets a default CPU stream. So a program that spawns a thread per task,
//! or makes a stream per call, would grow by one OS thread per task for ever. MLX 0.32.2
//! has no call that ends a stream's worker, so streams are used again instead:
//!
//! - **CPU** streams are made with MLX's "thread-unsafe" constructor (registered for every
//!   thread) and kept in one process-wide pool. A thread's default CPU stream is leased
//!   from the pool on first use and goes back when the thread exits; [`Stream::new`] on
//!   the CPU leases one that goes back when its last clone is dropped. So the process
//!   holds at most as many CPU streams (and MLX workers) as it ever used at once.
//! - **GPU** streams made by [`Stream::new`] go back to a free list of the thread that
//!   made them (GPU streams belong to their thread) and are used again by that thread.
//!
//! Streams shared between threads are safe because every MLX call that reaches its
//! command encoders or its table of streams runs under one process-wide lock
//! ([`dispatch`]): handing a graph to MLX, making a stream, setting a thread's default
//! stream, synchronizing a stream. MLX keeps these in process-wide maps it does not lock
//! for streams made with its "thread-unsafe" constructor. With streams made and set
//! outside the lock while other threads handed graphs over, `tests/threads.rs` read
//! another thread's values, or a value with an op missing, in 2–4 % of its runs (24 of
//! 600 with only those two calls outside, 0 of 2,000 with every one inside). Waiting for
//! results happens outside the lock (see [`dispatch_then`]).
//!
//! [`Stream::new`]: super::Stream::new

use crate::device::Device;
use crate::raw::VectorArray;
use mlx_sys as sys;
use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A stream handle kept in the process-wide pool.
struct Idle(sys::mlx_stream);

// SAFETY: the handle is plain data (a stream's index and device) owned by the pool; the
// stream itself is registered for every thread (MLX's thread-unsafe constructor).
unsafe impl Send for Idle {}

impl Idle {
    fn into_raw(self) -> sys::mlx_stream {
        let raw = self.0;
        std::mem::forget(self);
        raw
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once (a GPU free list at thread exit).
        unsafe { sys::mlx_stream_free(self.0) };
    }
}

/// CPU streams not leased now.
static IDLE_CPU: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

/// CPU streams made by the pool so far (the most the process ever held at once).
static MADE_CPU: AtomicUsize = AtomicUsize::new(0);

/// Serializes handing graphs to MLX (see the module docs).
static DISPATCH: Mutex<()> = Mutex::new(());

/// Threads holding a leased default CPU stream now (threads that use MLX).
static LIVE_THREADS: AtomicUsize = AtomicUsize::new(0);

/// A thread's default CPU stream: leaves the count of live threads when it goes back.
struct ThreadLease(#[allow(dead_code)] Lease);

impl Drop for ThreadLease {
    fn drop(&mut self) {
        LIVE_THREADS.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// GPU streams made by this thread and no longer used.
    static IDLE_GPU: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
    /// Bumped by `clear_streams`, which destroys this thread's GPU streams: a lease
    /// taken before does not go back to the free list.
    static GPU_GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// This thread's default CPU stream, leased on first use, returned at thread exit.
    static THREAD_CPU: RefCell<Option<ThreadLease>> = const { RefCell::new(None) };
    /// Whether this thread asked for its default CPU stream already (set before leasing,
    /// so that the MLX calls made while leasing do not ask again).
    static THREAD_CPU_ASKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where a leased stream goes back to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Home {
    Cpu,
    ThreadGpu,
}

/// A stream taken from a pool; it goes back when dropped.
pub(crate) struct Lease {
    raw: sys::mlx_stream,
    home: Home,
    /// This thread's `GPU_GENERATION` when a GPU stream was leased.
    generation: u64,
}

impl Lease {
    /// Leases a stream on `device`: an idle one, else a new one. `None` when MLX cannot
    /// make one (the caller reports MLX's message).
    pub(crate) fn take(device: &Device, cpu: bool) -> Option<Lease> {
        crate::error::install_handler_only();
        let home = if cpu { Home::Cpu } else { Home::ThreadGpu };
        let generation = GPU_GENERATION.try_with(|g| g.get()).unwrap_or(0);
        let idle = match home {
            Home::Cpu => IDLE_CPU.lock().unwrap_or_else(|e| e.into_inner()).pop(),
            Home::ThreadGpu => IDLE_GPU.try_with(|v| v.borrow_mut().pop()).ok().flatten(),
        };
        if let Some(idle) = idle {
            return Some(Lease {
                raw: idle.into_raw(),
                home,
                generation,
            });
        }
        // SAFETY: creates a new handle, owned by the lease. MLX registers the stream's
        // encoder in its process-wide map: under the lock.
        let raw = dispatch(|| unsafe {
            if cpu {
                sys::mlx_stream_new_thread_unsafe(device.as_raw())
            } else {
                sys::mlx_stream_new_device(device.as_raw())
            }
        });
        if raw.ctx.is_null() {
            return None;
        }
        if cpu {
            MADE_CPU.fetch_add(1, Ordering::Relaxed);
        }
        Some(Lease {
            raw,
            home,
            generation,
        })
    }

    /// The leased handle (owned by the lease; copy it to keep it).
    pub(crate) fn raw(&self) -> sys::mlx_stream {
        self.raw
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let raw = self.raw;
        match self.home {
            Home::Cpu => {
                // The next holder (maybe another thread) must not see this holder's queued
                // work or its error: wait for the work (`synchronize` reports a failed
                // task's error and clears it). This touches only MLX's process-wide
                // scheduler, so it is sound at thread exit too.
                // SAFETY: a live handle; an error is reported through the handler. It
                // queues a task through the stream's encoder: under the lock.
                dispatch(|| unsafe { sys::mlx_synchronize(raw) });
                let _ = crate::error::take_message_if_alive();
                IDLE_CPU
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Idle(raw));
            }
            // Used again by this thread only, after its earlier work in queue order. At
            // thread exit the free list is gone (MLX frees the thread's encoders) and the
            // handle is freed with the `Idle` that could not be pushed.
            Home::ThreadGpu => {
                let idle = Idle(raw);
                let current = GPU_GENERATION.try_with(|g| g.get());
                if current == Ok(self.generation) {
                    let _ = IDLE_GPU.try_with(move |v| v.borrow_mut().push(idle));
                }
            }
        }
    }
}

/// Makes sure this thread's default CPU stream is a leased one (set as MLX's default for
/// the CPU on this thread), so that the thread's MLX worker goes back to the pool when
/// the thread exits. Cheap after the first call on a thread.
pub(crate) fn ensure_thread_cpu() {
    match THREAD_CPU_ASKED.try_with(|asked| asked.replace(true)) {
        Ok(false) => {}
        _ => return, // asked before, or the thread is exiting
    }
    let _ = THREAD_CPU.try_with(|slot| {
        let Some(lease) = Lease::take(&Device::cpu(), true) else {
            let _ = crate::error::take_message_if_alive();
            return; // MLX keeps making its own default stream, as before
        };
        // SAFETY: a live handle; MLX copies it into the thread's default slot.
        if dispatch(|| unsafe { sys::mlx_set_default_stream(lease.raw) }) != 0 {
            let _ = crate::error::take_message_if_alive();
            return;
        }
        LIVE_THREADS.fetch_add(1, Ordering::Relaxed);
        *slot.borrow_mut() = Some(ThreadLease(lease));
    });
}

/// Forgets this thread's GPU free list (after `clear_streams` destroyed its streams).
pub(crate) fn forget_thread_gpu() {
    let _ = IDLE_GPU.try_with(|v| v.borrow_mut().clear());
    let _ = GPU_GENERATION.try_with(|g| g.set(g.get() + 1));
}

/// How many CPU streams the pool has made: the most this process ever used at once.
pub fn cpu_streams_made() -> usize {
    MADE_CPU.load(Ordering::Relaxed)
}

/// Evaluates `arrays` through `eval` (an mlx-c call that evaluates, waits for or reads
/// them) under the dispatch lock. When other threads use MLX too, the lock is not held
/// while waiting: the arrays are scheduled (`mlx_async_eval`) under it, each is then
/// evaluated on its own outside it (for a scheduled array MLX only waits for its event,
/// or reports its task's error, touching no encoder), and `eval`, which then finds them
/// computed, runs under it again. Inside a graph transformation MLX refuses `async_eval`
/// (tracers); then `eval` runs under the lock throughout.
pub(crate) fn dispatch_then<A: AsRef<crate::Array>>(
    arrays: &[A],
    eval: impl FnOnce() -> c_int,
) -> c_int {
    let turn = lock();
    if LIVE_THREADS.load(Ordering::Relaxed) <= 1 {
        return eval(); // alone: waiting under the lock holds no one up
    }
    // SAFETY: a live vector of live arrays.
    if unsafe { sys::mlx_async_eval(VectorArray::from_arrays(arrays).0) } != 0 {
        let _ = crate::error::take_message_if_alive();
        return eval();
    }
    drop(turn);
    for a in arrays {
        // SAFETY: a live array; the task's error is reported through the handler.
        let code = unsafe { sys::mlx_array_eval(a.as_ref().as_raw()) };
        if code != 0 {
            return code;
        }
    }
    let _turn = lock();
    eval()
}

thread_local! {
    /// Whether this thread holds the dispatch lock (so that an MLX call made while it does
    /// runs without taking it again).
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The dispatch lock, held until the guard drops; a no-op guard where this thread holds
/// it already.
struct Turn(Option<std::sync::MutexGuard<'static, ()>>);

impl Drop for Turn {
    fn drop(&mut self) {
        if self.0.take().is_some() {
            let _ = HOLDING.try_with(|h| h.set(false));
        }
    }
}

fn lock() -> Turn {
    if HOLDING.try_with(|h| h.get()).unwrap_or(false) {
        return Turn(None);
    }
    let guard = DISPATCH.lock().unwrap_or_else(|e| e.into_inner());
    let _ = HOLDING.try_with(|h| h.set(true));
    Turn(Some(guard))
}

/// Runs `f`, an MLX call that reaches its command encoders (hands a graph over, walks
/// one, makes or synchronizes a stream), under the dispatch lock.
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    let _turn = lock();
    f()
}
