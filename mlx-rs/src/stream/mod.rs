//! Streams: ordered queues of work on a device, and the choice of stream for each op.
//!
//! Every op runs on the *current stream* of the calling thread: the innermost stream
//! set by [`with_stream`] (or [`with_device`]), else the default stream of the default
//! device. Arrays live in unified memory, so an array made on one stream can be used by
//! ops on any other stream without copies; MLX inserts the needed synchronisation.
//!
//! # Threads
//!
//! Since MLX 0.32 streams are *thread-affine*: a stream's GPU command encoder belongs to
//! the thread that created it, and evaluating on it from another thread fails. So
//! [`Stream`] is neither `Send` nor `Sync`: make streams on the thread that uses them
//! (each thread gets its own default streams). [`Array`](crate::Array) is `Send`: an
//! array can be moved to another thread and used there; evaluate GPU work before sending
//! it (CPU streams are shared through the pool below, so CPU graphs evaluate anywhere).
//!
//! Streams and MLX's worker threads are used again rather than made anew (see
//! [`cpu_streams_made`]): a thread's default CPU stream goes back to a process-wide pool
//! when the thread exits, and a stream made by [`Stream::new`] when its last clone is
//! dropped. So a program that spawns a thread per task, or makes a stream per call,
//! holds only as many streams as it uses at once.

mod pool;

pub use pool::cpu_streams_made;
pub(crate) use pool::{dispatch, dispatch_then, ensure_thread_cpu};

use crate::device::{Device, DeviceType};
use crate::raw::{status, MlxString};
use crate::Result;
use mlx_sys as sys;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// A queue of work on one device. Not `Send`/`Sync`: see the `stream` module docs
/// (streams belong to their thread).
///
/// A constructor that MLX rejects (e.g. [`Stream::gpu`] when MLX has no GPU) still
/// returns a `Stream`, which remembers MLX's message: every use of it (ops run in its
/// [`scope`](Stream::scope), its methods) then fails with that message.
pub struct Stream {
    raw: sys::mlx_stream,
    /// MLX's message when the stream could not be made (`raw` is then empty).
    failure: Option<String>,
    /// The pool's lease when this stream came from [`Stream::new`]: the stream goes back
    /// to the pool when the last clone is dropped.
    lease: Option<Rc<pool::Lease>>,
    _not_send: PhantomData<*const ()>,
}

impl Stream {
    fn from_raw(raw: sys::mlx_stream) -> Stream {
        Stream {
            raw,
            failure: None,
            lease: None,
            _not_send: PhantomData,
        }
    }

    /// Wraps the result of an mlx-c stream constructor, which returns an empty handle
    /// (and reports the error) on failure.
    fn made(raw: sys::mlx_stream) -> Stream {
        let mut s = Stream::from_raw(raw);
        if raw.ctx.is_null() {
            s.failure = Some(
                crate::error::take_message()
                    .unwrap_or_else(|| "MLX could not create the stream".into()),
            );
        }
        s
    }

    /// Fails with MLX's message if this stream could not be made.
    fn check(&self) -> Result<()> {
        match &self.failure {
            Some(msg) => Err(crate::Error::InvalidArgument(format!(
                "unusable stream: {msg}"
            ))),
            None => Ok(()),
        }
    }

    /// A new stream on `device`, owned by this thread: no other live stream is the same
    /// queue. Streams are used again once dropped (see the module docs): a CPU stream goes
    /// back to a process-wide pool (its queued work finishes first), a GPU stream to a
    /// free list of this thread.
    pub fn new(device: &Device) -> Stream {
        crate::error::install_error_handler();
        let cpu = matches!(device.kind(), Ok(DeviceType::Cpu));
        let Some(lease) = pool::Lease::take(device, cpu) else {
            return Stream::made(sys::mlx_stream {
                ctx: std::ptr::null_mut(),
            });
        };
        // SAFETY: a fresh handle, set to a copy of the leased one.
        let mut s = Stream::from_raw(unsafe { sys::mlx_stream_new() });
        unsafe { sys::mlx_stream_set(&mut s.raw, lease.raw()) };
        s.lease = Some(Rc::new(lease));
        s
    }

    /// This thread's default stream on `device`.
    pub fn default_for(device: &Device) -> Result<Stream> {
        crate::error::install_error_handler();
        let mut s = Stream::from_raw(unsafe { sys::mlx_stream_new() });
        status(|| unsafe { sys::mlx_get_default_stream(&mut s.raw, device.as_raw()) })?;
        Ok(s)
    }

    /// This thread's default CPU stream.
    pub fn cpu() -> Stream {
        crate::error::install_error_handler();
        // SAFETY: returns a new handle, owned by the returned value.
        Stream::made(unsafe { sys::mlx_default_cpu_stream_new() })
    }

    /// This thread's default GPU stream (fails at first use if there is no GPU; see
    /// [`Stream::is_valid`]).
    pub fn gpu() -> Stream {
        crate::error::install_error_handler();
        // SAFETY: returns a new handle, owned by the returned value.
        Stream::made(unsafe { sys::mlx_default_gpu_stream_new() })
    }

    /// Whether MLX made this stream; `false` e.g. for [`Stream::gpu`] without a GPU
    /// (then every use of it fails with MLX's message).
    pub fn is_valid(&self) -> bool {
        self.failure.is_none()
    }

    /// Makes this stream the default one for its device on this thread.
    pub fn set_as_default(&self) -> Result<()> {
        self.check()?;
        status(|| dispatch(|| unsafe { sys::mlx_set_default_stream(self.raw) }))?;
        forget_cached_default();
        Ok(())
    }

    /// The device this stream runs on.
    pub fn device(&self) -> Result<Device> {
        self.check()?;
        let mut dev = Device::cpu();
        status(|| unsafe { sys::mlx_stream_get_device(dev.as_raw_mut(), self.raw) })?;
        Ok(dev)
    }

    /// The stream's index.
    pub fn index(&self) -> Result<i32> {
        self.check()?;
        let mut i = 0;
        status(|| unsafe { sys::mlx_stream_get_index(&mut i, self.raw) })?;
        Ok(i)
    }

    /// Blocks until all work queued on this stream has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.check()?;
        // Under the dispatch lock: it queues a task through the stream's encoder.
        crate::raw::eval_status(|| dispatch(|| unsafe { sys::mlx_synchronize(self.raw) }))
    }

    /// Runs `f` with this stream as the current stream of the thread.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        with_stream(self, f)
    }

    #[allow(dead_code)]
    pub(crate) fn as_raw(&self) -> sys::mlx_stream {
        self.raw
    }
}

impl Clone for Stream {
    fn clone(&self) -> Stream {
        let mut s = Stream::from_raw(unsafe { sys::mlx_stream_new() });
        if self.failure.is_some() {
            s.failure = self.failure.clone();
            return s;
        }
        // SAFETY: copies a live handle into an owned one.
        unsafe { sys::mlx_stream_set(&mut s.raw, self.raw) };
        s.lease = self.lease.clone();
        s
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_stream_free(self.raw) };
    }
}

impl PartialEq for Stream {
    fn eq(&self, other: &Stream) -> bool {
        // mlx_stream_equal throws (through C, aborting) on an empty handle.
        if self.raw.ctx.is_null() || other.raw.ctx.is_null() {
            return false;
        }
        // SAFETY: reads two live handles.
        unsafe { sys::mlx_stream_equal(self.raw, other.raw) }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(msg) = &self.failure {
            return write!(f, "Stream(unusable: {msg})");
        }
        let mut s = MlxString::new();
        // SAFETY: writes into an owned string handle.
        if unsafe { sys::mlx_stream_tostring(&mut s.0, self.raw) } == 0 {
            f.write_str(&s.to_string_lossy())
        } else {
            f.write_str("Stream(?)")
        }
    }
}

thread_local! {
    /// Streams pushed by `with_stream`, innermost last.
    static SCOPED: RefCell<Vec<Stream>> = const { RefCell::new(Vec::new()) };
    /// The default stream of the default device, cached for this thread.
    static DEFAULT: RefCell<Option<Stream>> = const { RefCell::new(None) };
}

/// Runs `f` with `stream` as the current stream of this thread: every op inside `f`
/// (that names no other stream) runs there.
///
/// ```
/// use mlx_rs::{Array, Stream, with_stream};
/// let s = Stream::cpu();
/// let y = with_stream(&s, || Array::from_slice(&[1.0f32, 2.0], &[2])?.square()).unwrap();
/// assert_eq!(y.to_vec::<f32>().unwrap(), vec![1.0, 4.0]);
/// ```
pub fn with_stream<R>(stream: &Stream, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            let _ = SCOPED.try_with(|s| s.borrow_mut().pop());
        }
    }
    SCOPED.with(|s| s.borrow_mut().push(stream.clone()));
    let _pop = Pop;
    f()
}

/// Runs `f` on this thread's default CPU stream (for work that only the CPU can do, such
/// as reading files or float64 arithmetic).
pub(crate) fn on_cpu<R>(f: impl FnOnce() -> R) -> R {
    with_stream(&Stream::cpu(), f)
}

/// Runs `f` with this thread's default stream of `device` as the current stream.
pub fn with_device<R>(device: &Device, f: impl FnOnce() -> R) -> Result<R> {
    let s = Stream::default_for(device)?;
    Ok(with_stream(&s, f))
}

/// The stream ops on this thread run on right now.
pub fn current_stream() -> Result<Stream> {
    with_current_raw(|raw| {
        let mut s = Stream::from_raw(unsafe { sys::mlx_stream_new() });
        // SAFETY: copies a live handle into an owned one.
        unsafe { sys::mlx_stream_set(&mut s.raw, raw) };
        s
    })
}

/// Calls `f` with the raw handle of the current stream (valid for the call).
pub(crate) fn with_current_raw<R>(f: impl FnOnce(sys::mlx_stream) -> R) -> Result<R> {
    let scoped = SCOPED.with(|s| s.borrow().last().map(|s| s.check().map(|()| s.raw)));
    if let Some(raw) = scoped {
        return Ok(f(raw?));
    }
    let cached = DEFAULT.with(|d| d.borrow().as_ref().map(|s| s.raw));
    let raw = match cached {
        Some(raw) => raw,
        None => {
            let dev = Device::default_device()?;
            let s = Stream::default_for(&dev)?;
            let raw = s.raw;
            DEFAULT.with(|d| *d.borrow_mut() = Some(s));
            raw
        }
    };
    Ok(f(raw))
}

/// Calls `f` with the raw handle of the stream set by the innermost [`with_stream`] scope
/// of this thread, else of this thread's default stream of `device` (not the default
/// device's): for ops whose natural stream is fixed by something else than the default
/// device, as distributed collectives are by their backend.
pub(crate) fn with_scoped_or_default<R>(
    device: &Device,
    f: impl FnOnce(sys::mlx_stream) -> R,
) -> Result<R> {
    let scoped = SCOPED.with(|s| s.borrow().last().map(|s| s.check().map(|()| s.raw)));
    if let Some(raw) = scoped {
        return Ok(f(raw?));
    }
    let s = Stream::default_for(device)?;
    Ok(f(s.raw))
}

pub(crate) fn forget_cached_default() {
    let _ = DEFAULT.try_with(|d| d.borrow_mut().take());
}

/// Every stream MLX has created in this process so far.
pub fn streams() -> Result<Vec<Stream>> {
    // SAFETY: fresh vector, freed below.
    let mut vec = unsafe { sys::mlx_vector_stream_new() };
    let result = status(|| unsafe { sys::mlx_get_streams(&mut vec) }).and_then(|()| {
        let n = unsafe { sys::mlx_vector_stream_size(vec) };
        (0..n)
            .map(|i| {
                let mut s = Stream::from_raw(unsafe { sys::mlx_stream_new() });
                status(|| unsafe { sys::mlx_vector_stream_get(&mut s.raw, vec, i) })?;
                Ok(s)
            })
            .collect()
    });
    // SAFETY: owned vector, freed once.
    unsafe { sys::mlx_vector_stream_free(vec) };
    result
}

/// Destroys the streams created on this thread (their queued work finishes first).
/// Streams of this thread must not be used afterwards; this crate's cached default
/// stream is dropped too.
pub fn clear_streams() -> Result<()> {
    forget_cached_default();
    pool::forget_thread_gpu();
    status(|| unsafe { sys::mlx_clear_streams() })
}

/// A stream that is distinct on every thread that uses it: each thread that calls
/// [`ThreadLocalStream::get`] gets (and keeps, while this handle or a clone lives) its own
/// stream on the device. Unlike [`Stream`], it is `Send` and `Sync`, so one value can be
/// shared by worker threads. A thread's streams go back to the pool when the thread exits.
#[derive(Clone)]
pub struct ThreadLocalStream {
    id: Arc<u64>,
    device: Device,
}

/// Handles made so far (each gets the next number).
static NEXT_THREAD_LOCAL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's stream of each live `ThreadLocalStream` (by handle; the weak
    /// reference tells when every clone of the handle is gone).
    static THREAD_LOCALS: RefCell<Vec<(Weak<u64>, Stream)>> = const { RefCell::new(Vec::new()) };
}

impl ThreadLocalStream {
    /// A new per-thread stream on `device`.
    pub fn new(device: &Device) -> ThreadLocalStream {
        crate::error::install_error_handler();
        ThreadLocalStream {
            id: Arc::new(NEXT_THREAD_LOCAL.fetch_add(1, Ordering::Relaxed)),
            device: device.clone(),
        }
    }

    /// The calling thread's stream.
    pub fn get(&self) -> Result<Stream> {
        let s = THREAD_LOCALS.with(|streams| {
            let mut streams = streams.borrow_mut();
            // Streams of handles that are gone go back to the pool.
            streams.retain(|(handle, _)| handle.strong_count() > 0);
            let found = streams
                .iter()
                .find(|(handle, _)| handle.upgrade().is_some_and(|h| Arc::ptr_eq(&h, &self.id)));
            match found {
                Some((_, s)) => s.clone(),
                None => {
                    let s = Stream::new(&self.device);
                    streams.push((Arc::downgrade(&self.id), s.clone()));
                    s
                }
            }
        });
        s.check()?;
        Ok(s)
    }

    /// Blocks until the calling thread's stream has finished its queued work.
    pub fn synchronize(&self) -> Result<()> {
        self.get()?.synchronize()
    }
}

impl Stream {
    /// A stream on `device` that may be used from any thread.
    ///
    /// # Safety
    ///
    /// MLX does not synchronise such streams: the caller must make sure no two threads
    /// queue or evaluate work on it at the same time. The returned value is still not
    /// `Send`; move the raw need for sharing into your own synchronised wrapper.
    pub unsafe fn new_thread_unsafe(device: &Device) -> Stream {
        crate::error::install_error_handler();
        // SAFETY: creates a new handle, owned by the returned value.
        Stream::made(dispatch(|| unsafe {
            sys::mlx_stream_new_thread_unsafe(device.as_raw())
        }))
    }
}

/// Blocks until all work queued on this thread's default stream has finished.
pub fn synchronize() -> Result<()> {
    crate::raw::eval_status(|| dispatch(|| unsafe { sys::mlx_synchronize_default() }))
}
