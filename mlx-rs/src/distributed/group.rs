//! [`Group`]: the processes that communicate, and how a process joins them.

use super::{is_available, Backend};
use crate::error::{install_error_handler, mlx_error};
use crate::{Device, Error, Result};
use mlx_sys as sys;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How [`Group::init_with`] sets up the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// The backend to start (default [`Backend::Any`]: the first that works).
    pub backend: Backend,
    /// Fail when the backend cannot be started, instead of returning a group of this
    /// process alone (default `false`, as in MLX).
    pub strict: bool,
    /// How long to wait for the other processes (default `None`: as long as it takes, as
    /// MLX does). See [`Group::init_with`] for what happens when it runs out.
    pub timeout: Option<Duration>,
}

impl Default for InitOptions {
    fn default() -> InitOptions {
        InitOptions {
            backend: Backend::Any,
            strict: false,
            timeout: None,
        }
    }
}

/// A group of processes that run collectives together: Python's
/// `mlx.core.distributed.Group`.
///
/// Every process of the group gets the same group with its own [`rank`](Group::rank).
/// MLX keeps the group of each backend once it is made: initializing the same backend
/// again returns the same group.
///
/// `Group` is `Send` (it may move to another thread) but not `Sync` or `Clone`; share it
/// by reference. Collectives on one group must be issued in the same order by every
/// rank, and not from two threads at once (the ring backend has one set of buffers and
/// sockets per group).
///
/// ```
/// let group = mlx_rs::distributed::Group::init(mlx_rs::distributed::Backend::Any, false)?;
/// std::thread::spawn(move || assert!(group.rank() < group.size())).join().unwrap();
/// # Ok::<(), mlx_rs::Error>(())
/// ```
///
/// ```compile_fail
/// fn sync<T: Sync>(_: &T) {}
/// let group = mlx_rs::distributed::Group::init(mlx_rs::distributed::Backend::Any, false)?;
/// sync(&group); // not shared between threads
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub struct Group {
    raw: sys::mlx_distributed_group,
    /// The backend that connects the processes; `None` for a group of one process.
    backend: Option<Backend>,
}

// SAFETY: the handle owns a heap copy of MLX's `Group`, a shared pointer to the
// backend's state; moving it to another thread is sound. Not Sync: see the type docs.
unsafe impl Send for Group {}

/// Set while an init runs (by this thread or a helper thread waiting for peers), so that
/// two inits never touch MLX's unsynchronised table of backends at once.
static INIT_BUSY: AtomicBool = AtomicBool::new(false);

/// Releases [`INIT_BUSY`] when dropped (on the thread that ends the init).
struct InitGuard;

impl Drop for InitGuard {
    fn drop(&mut self) {
        INIT_BUSY.store(false, Ordering::Release);
    }
}

/// Takes [`INIT_BUSY`], waiting for another init until `deadline`.
fn lock_init(deadline: Option<Instant>) -> Result<InitGuard> {
    loop {
        if INIT_BUSY
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(InitGuard);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout(
                "another distributed init has not finished (an earlier one that timed out \
                 may still be waiting for its peers)"
                    .into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An owned handle, possibly empty (before the init or split that fills it).
struct RawGroup(sys::mlx_distributed_group);

impl Drop for RawGroup {
    fn drop(&mut self) {
        // SAFETY: owned handle (possibly empty), freed once.
        unsafe { sys::mlx_distributed_group_free(self.0) };
    }
}

impl RawGroup {
    fn size(&self) -> i32 {
        // SAFETY: a group filled by a successful init or split.
        unsafe { sys::mlx_distributed_group_size(self.0) }
    }

    fn into_group(self, backend: Backend) -> Group {
        let backend = (self.size() > 1).then_some(backend);
        let raw = self.0;
        std::mem::forget(self);
        Group { raw, backend }
    }
}

/// `mlx_distributed_init` for one backend name; the caller holds the init lock.
fn init_raw(
    strict: bool,
    backend: Backend,
    location: &'static Location<'static>,
) -> Result<RawGroup> {
    install_error_handler();
    let name = backend.as_c_str();
    // SAFETY: a fresh empty handle, owned by the returned value (freed on error too).
    let mut out = RawGroup(unsafe { sys::mlx_distributed_group_new() });
    // SAFETY: `out.0` is a live empty handle and `name` a C string valid for the call.
    if unsafe { sys::mlx_distributed_init(&mut out.0, strict, name.as_ptr()) } != 0 {
        let mut e = mlx_error(location);
        // nlohmann's message alone ("parse error at line 1, column 1: attempting to parse
        // an empty input") does not say which file: a missing hostfile reads as empty.
        if let Error::Mlx { message, .. } = &mut e {
            if matches!(backend, Backend::Ring | Backend::Any)
                && message.contains("[json.exception")
            {
                *message = format!(
                    "[ring] the hostfile (MLX_HOSTFILE) is missing or not a JSON list of \
                     \"ip:port\" lists: {message}"
                );
            }
        }
        return Err(e);
    }
    if out.0.ctx.is_null() {
        return Err(mlx_error(location));
    }
    Ok(out)
}

/// The backends MLX's `any` tries, in its order, that this process can have.
fn any_candidates() -> Vec<Backend> {
    let mut out = Vec::new();
    if is_available(Backend::Nccl) && Device::gpu().is_available() {
        out.push(Backend::Nccl);
    }
    out.push(Backend::Ring);
    for b in [Backend::Mpi, Backend::Jaccl] {
        if is_available(b) {
            out.push(b);
        }
    }
    out
}

/// Starts the group (the init lock is held).
fn init_locked(
    backend: Backend,
    strict: bool,
    location: &'static Location<'static>,
) -> Result<Group> {
    if backend != Backend::Any {
        let group = init_raw(strict, backend, location)?;
        // MLX keeps the group of one process that a non-strict init of an unconfigured
        // backend gave, and returns it to later strict inits too. Only NCCL can really
        // have a group of one (MLX_WORLD_SIZE=1).
        if strict && group.size() <= 1 && backend != Backend::Nccl {
            return Err(Error::Mlx {
                message: format!(
                    "[{backend}] cannot initialize the backend: an earlier non-strict init \
                     found it unconfigured in this process"
                ),
                location,
            });
        }
        return Ok(group.into_group(backend));
    }
    let group = init_raw(strict, Backend::Any, location)?;
    if group.size() <= 1 {
        return Ok(group.into_group(Backend::Any));
    }
    // MLX's `any` took the first candidate that started; the ones before it cannot start
    // in this process (they return no group again), and the one it took is cached.
    let candidates = any_candidates();
    if let [only] = candidates[..] {
        return Ok(group.into_group(only));
    }
    for candidate in candidates {
        if init_raw(false, candidate, location)?.size() > 1 {
            return Ok(group.into_group(candidate));
        }
    }
    Ok(group.into_group(Backend::Any))
}

impl Group {
    /// Joins the group of `backend` (Python's `mx.distributed.init(strict, backend)`),
    /// waiting as long as the backend waits for its peers; see [`Group::init_with`].
    ///
    /// ```
    /// use mlx_rs::distributed::{Backend, Group};
    /// // A process started without a launcher is a group of one.
    /// let group = Group::init(Backend::Any, false)?;
    /// assert_eq!((group.rank(), group.size()), (0, 1));
    /// // Strict: an unconfigured backend is an error.
    /// assert!(Group::init(Backend::Ring, true).is_err());
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    #[track_caller]
    pub fn init(backend: Backend, strict: bool) -> Result<Group> {
        Group::init_with(&InitOptions {
            backend,
            strict,
            timeout: None,
        })
    }

    /// Joins the group of `options.backend`.
    ///
    /// MLX reads the group's configuration from the environment that a launcher
    /// (`mlx-launch`, or Python's `mlx.launch`) sets: for the ring backend `MLX_RANK` and
    /// `MLX_HOSTFILE` (a JSON list of `"ip:port"` addresses, one entry per rank), for NCCL
    /// `MLX_RANK`, `MLX_WORLD_SIZE`, `NCCL_HOST_IP` and `NCCL_PORT`. When the backend is
    /// not configured (or not built into this MLX), the result is a group of this process
    /// alone, or an error if `options.strict`.
    ///
    /// Errors: an unusable backend with `strict`, a hostfile that is missing, not JSON,
    /// or has an address that does not parse, a rank beyond the hostfile, a peer that
    /// refuses the connection for too long (the ring backend tries for about 31 s), and
    /// [`Error::Timeout`] when `options.timeout` runs out.
    ///
    /// # Waiting for peers
    ///
    /// The ring backend accepts connections from its left neighbour without a time limit:
    /// a peer that never starts makes MLX wait forever. With `options.timeout` the init
    /// runs on a helper thread and this call returns [`Error::Timeout`] when the time is
    /// up; the helper thread then stays blocked in MLX until the peer comes or the process
    /// ends, and further inits wait for it (with their own timeout, if any), since MLX's
    /// table of backends is not synchronised. A process that timed out usually reports the
    /// error and exits. (On the NCCL backend, whose own wait is bounded by
    /// `MLX_NCCL_TIMEOUT`, the helper thread also picks the CUDA device for its rank.)
    ///
    /// Two configurations crash MLX 0.32.2's ring backend instead of raising an error (it
    /// divides by the hostfile's length and indexes it by the rank): a hostfile that is an
    /// empty list, and a negative `MLX_RANK`. This crate does not read the environment to
    /// catch them; `mlx-launch` never writes either.
    #[track_caller]
    pub fn init_with(options: &InitOptions) -> Result<Group> {
        let location = Location::caller();
        let InitOptions {
            backend,
            strict,
            timeout,
        } = options.clone();
        let Some(timeout) = timeout else {
            let _guard = lock_init(None)?;
            return init_locked(backend, strict, location);
        };
        let deadline = Instant::now() + timeout;
        let guard = lock_init(Some(deadline))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("mlx-distributed-init".into())
            .spawn(move || {
                let _guard = guard;
                // Nobody receives after a timeout: the group is then dropped here.
                let _ = tx.send(init_locked(backend, strict, location));
            })
            .map_err(|e| Error::InvalidArgument(format!("cannot start the init thread: {e}")))?;
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(format!(
                "the {backend} backend did not connect to its peers within {timeout:?} \
                 (are all ranks running, with the same hostfile?)"
            ))),
        }
    }

    /// This process's rank in the group, from 0 to `size() - 1`.
    pub fn rank(&self) -> i32 {
        // SAFETY: `raw` holds a group made by a successful init or split.
        unsafe { sys::mlx_distributed_group_rank(self.raw) }
    }

    /// The number of processes in the group.
    pub fn size(&self) -> i32 {
        // SAFETY: as in `rank`.
        unsafe { sys::mlx_distributed_group_size(self.raw) }
    }

    /// The backend that connects the processes (never [`Backend::Any`] unless MLX's
    /// choice could not be told apart); `None` for a group of one process.
    pub fn backend(&self) -> Option<Backend> {
        self.backend
    }

    /// Splits the group: the processes that pass the same `color` form a new group, ordered
    /// by `key` (`-1`: in the order of this group). Every process of the group must call it.
    ///
    /// Not every backend can: MLX 0.32.2's ring backend and a group of one process return
    /// an error (MPI and NCCL split).
    #[track_caller]
    pub fn split(&self, color: i32, key: i32) -> Result<Group> {
        let location = Location::caller();
        install_error_handler();
        // SAFETY: a fresh empty handle, owned by `out` (freed on error too).
        let mut out = RawGroup(unsafe { sys::mlx_distributed_group_new() });
        // SAFETY: `out.0` is a live empty handle, `self.raw` a live group.
        if unsafe { sys::mlx_distributed_group_split(&mut out.0, self.raw, color, key) } != 0
            || out.0.ctx.is_null()
        {
            return Err(mlx_error(location));
        }
        Ok(out.into_group(self.backend.unwrap_or(Backend::Any)))
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_distributed_group {
        self.raw
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_distributed_group_free(self.raw) };
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .field("backend", &self.backend)
            .finish()
    }
}
