//! Several processes working as one: MLX's distributed engine, Python's
//! `mlx.core.distributed`.
//!
//! A [`Group`] is the set of processes that communicate; each has a rank. Collectives
//! ([`all_sum`], [`all_gather`], [`all_max`], [`all_min`], [`sum_scatter`]) and
//! point-to-point ops ([`send`], [`recv`], [`recv_like`]) are lazy ops like any other:
//! processes exchange data when the results are evaluated.
//!
//! ```
//! use mlx_rs::distributed::{self, Backend, Group};
//! use mlx_rs::Array;
//! let group = Group::init(Backend::Any, false)?;
//! let x = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3])?;
//! // Mean of the gradients of all processes (data-parallel training).
//! let mean = distributed::all_sum(&x, Some(&group))?.divide(&Array::scalar(group.size() as f32))?;
//! if group.rank() == 0 {
//!     println!("{} processes: {mean}", group.size());
//! }
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # Starting the processes
//!
//! MLX reads the group from environment variables that a launcher sets; `mlx-launch`
//! (this workspace) and Python's `mlx.launch` both do:
//!
//! ```text
//! mlx-launch -n 4 -- target/release/my_training   # 4 local processes, ring backend
//! ```
//!
//! A process started without a launcher is a group of one: collectives return their input
//! and [`send`]/[`recv`] fail, so the same program runs alone.
//!
//! # Backends
//!
//! [`Backend::Ring`] (TCP between neighbours; any machines, or several processes on one) is
//! in every MLX build, [`Backend::Nccl`] in the CUDA build, [`Backend::Jaccl`] (RDMA over
//! Thunderbolt) on macOS, [`Backend::Mpi`] where an MPI library can be loaded; see
//! [`is_available`]. In MLX 0.32.2 the ring backend has no [`sum_scatter`] and no
//! [`Group::split`], and sends only to the neighbours of a rank (`rank ± 1` around the
//! ring); those return errors.
//!
//! # Streams
//!
//! An op runs on the stream of the innermost [`with_stream`](crate::with_stream) scope, if
//! any; else on the stream its backend communicates on (the CPU's for ring, MPI and JACCL,
//! the GPU's for NCCL), whatever the default device, as Python's `stream=None` does.
//!
//! # Failures and waiting
//!
//! Errors come back as values: a backend that cannot start, a bad hostfile, ops a backend
//! lacks, a peer that dies during a collective (`[ring] connection to a peer was lost`,
//! when the result is evaluated). Two waits have no limit in MLX: [`Group::init`] waits for
//! a peer that never starts (use [`Group::init_with`] and a timeout), and an evaluation
//! waits for a peer that is alive but never joins the collective. `mlx-launch` stops all
//! processes when one fails, and has `--timeout` for the rest.

mod group;
mod ops;

pub use group::{Group, InitOptions};
pub use ops::{all_gather, all_max, all_min, all_sum, recv, recv_like, send, sum_scatter};

use crate::{Error, Result};
use std::ffi::CStr;

/// A distributed backend of MLX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The first that works, in MLX's order: NCCL (with a CUDA GPU), ring, MPI, JACCL.
    Any,
    /// TCP sockets around a ring of processes (`MLX_RANK`, `MLX_HOSTFILE`).
    Ring,
    /// MPI (processes started by `mpirun`).
    Mpi,
    /// NVIDIA NCCL (`MLX_RANK`, `MLX_WORLD_SIZE`, `NCCL_HOST_IP`, `NCCL_PORT`).
    Nccl,
    /// RDMA over Thunderbolt between Macs.
    Jaccl,
}

impl Backend {
    /// Every backend, `Any` first.
    pub const ALL: [Backend; 5] = [
        Backend::Any,
        Backend::Ring,
        Backend::Mpi,
        Backend::Nccl,
        Backend::Jaccl,
    ];

    /// MLX's name of the backend: `any`, `ring`, `mpi`, `nccl` or `jaccl`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Any => "any",
            Backend::Ring => "ring",
            Backend::Mpi => "mpi",
            Backend::Nccl => "nccl",
            Backend::Jaccl => "jaccl",
        }
    }

    fn as_c_str(self) -> &'static CStr {
        match self {
            Backend::Any => c"any",
            Backend::Ring => c"ring",
            Backend::Mpi => c"mpi",
            Backend::Nccl => c"nccl",
            Backend::Jaccl => c"jaccl",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;

    /// Parses MLX's name of a backend (`any`, `ring`, `mpi`, `nccl`, `jaccl`).
    fn from_str(s: &str) -> Result<Backend> {
        Backend::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown distributed backend {s:?} (expected any, ring, mpi, nccl or jaccl)"
                ))
            })
    }
}

/// Whether this MLX can use `backend` (for [`Backend::Any`]: any of them). This says the
/// backend is built in (for MPI: that the MPI library loads), not that a group is
/// configured.
///
/// ```
/// use mlx_rs::distributed::{is_available, Backend};
/// assert!(is_available(Backend::Ring)); // in every MLX build
/// assert!(is_available(Backend::Any));
/// ```
pub fn is_available(backend: Backend) -> bool {
    crate::error::install_error_handler();
    // SAFETY: a static C string; the call only reads it.
    let available = unsafe { mlx_sys::mlx_distributed_is_available(backend.as_c_str().as_ptr()) };
    // A failure (none is known) reads as "not available"; drop its message.
    crate::error::take_message();
    available
}
