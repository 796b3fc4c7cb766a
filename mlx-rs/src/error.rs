//! The one error type of this crate, and the bridge from MLX's error handler to it.
//!
//! mlx-c reports failures by calling a process-wide error handler and returning a non-zero
//! code. Its default handler prints the message and calls `exit(-1)`. This crate installs
//! its own handler (once, before the first fallible call): it stores the message in a
//! thread-local slot, and the call site turns the code plus message into [`Error::Mlx`].

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::panic::Location;
use std::sync::Once;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// MLX rejected an operation (bad shapes, axes, dtypes, files, …).
    #[error("{message} (at {location})")]
    Mlx {
        /// MLX's own message.
        message: String,
        /// The Rust call that failed.
        location: &'static Location<'static>,
    },
    /// A value was read as a Rust type that does not match the array's dtype.
    #[error("dtype mismatch: the array holds {found:?}, but {expected:?} was requested")]
    DtypeMismatch {
        /// The dtype the Rust type corresponds to.
        expected: crate::Dtype,
        /// The array's dtype.
        found: crate::Dtype,
    },
    /// A shape, size or index that does not fit what the operation needs.
    #[error("shape error: {0}")]
    Shape(String),
    /// An argument that cannot be valid (checked on the Rust side before calling MLX).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An array larger than the memory MLX may still use (its memory limit, see
    /// [`crate::memory::set_memory_limit`], minus what live arrays hold): refused when the
    /// array is made, before MLX tries to allocate it (a failed allocation in MLX's CPU
    /// backend crashes the process).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A Rust closure called by MLX (in a transform or compiled function) returned an error.
    #[error("closure failed: {0}")]
    Closure(String),
    /// A wait with a time limit ran out (for instance
    /// [`distributed::Group::init_with`](crate::distributed::Group::init_with) waiting for
    /// its peers).
    #[error("timed out: {0}")]
    Timeout(String),
    /// An error of another crate carried through this one: typically a model's own error
    /// returned from a closure that a transform ([`compile`](crate::transforms::compile),
    /// [`grad`](crate::transforms::grad), …) calls. Comes back unchanged out of the
    /// transform; [`Error::downcast_external`] recovers it. See [`Error::external`].
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an error of another crate as [`Error::External`].
    ///
    /// A crate with its own error type implements `From<its error> for mlx_rs::Error`
    /// with this (and the way back with [`Error::downcast_external`]); then `?` works on
    /// its own results inside closures passed to [`compile`](crate::transforms::compile)
    /// and the other transforms, which return `mlx_rs::Result`:
    ///
    /// ```
    /// use mlx_rs::{transforms::compile, Array};
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// enum ModelError {
    ///     #[error(transparent)]
    ///     Mlx(mlx_rs::Error),
    ///     #[error("bad config: {0}")]
    ///     Config(String),
    /// }
    /// impl From<mlx_rs::Error> for ModelError {
    ///     fn from(e: mlx_rs::Error) -> Self {
    ///         // an error of ours that went through MLX comes back as itself
    ///         e.downcast_external().unwrap_or_else(ModelError::Mlx)
    ///     }
    /// }
    /// impl From<ModelError> for mlx_rs::Error {
    ///     fn from(e: ModelError) -> Self {
    ///         match e {
    ///             ModelError::Mlx(e) => e,
    ///             other => mlx_rs::Error::external(other),
    ///         }
    ///     }
    /// }
    ///
    /// fn block(x: &Array, width: i32) -> Result<Array, ModelError> {
    ///     if width <= 0 {
    ///         return Err(ModelError::Config(format!("width {width}")));
    ///     }
    ///     Ok(x.square()?)
    /// }
    ///
    /// let x = Array::from_slice(&[3.0f32], &[1])?;
    /// // model code inside the closure: `?` on the model's own Result, no conversion glue
    /// let f = compile(|a: &[Array]| Ok(vec![block(&a[0], 4)?]), false)?;
    /// assert_eq!(f.call(&[&x])?[0].to_vec::<f32>()?, vec![9.0]);
    /// let bad = compile(|a: &[Array]| Ok(vec![block(&a[0], 0)?]), false)?;
    /// let err: ModelError = bad.call(&[&x]).unwrap_err().into();
    /// assert!(matches!(err, ModelError::Config(_)));
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    pub fn external(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Error {
        Error::External(e.into())
    }

    /// The error of type `E` inside an [`Error::External`], or `self` unchanged when this
    /// is another error (or an external error of another type).
    pub fn downcast_external<E: std::error::Error + 'static>(
        self,
    ) -> std::result::Result<E, Error> {
        match self {
            Error::External(b) => match b.downcast::<E>() {
                Ok(e) => Ok(*e),
                Err(b) => Err(Error::External(b)),
            },
            other => Err(other),
        }
    }
}

thread_local! {
    static LAST_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

unsafe extern "C" fn store_message(msg: *const c_char, _data: *mut c_void) {
    let text = if msg.is_null() {
        "unknown MLX error".to_string()
    } else {
        // SAFETY: mlx-c passes a NUL-terminated message valid for this call.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    };
    // Never unwind out of this callback: `try_with` fails only during thread teardown.
    let _ = LAST_MESSAGE.try_with(|m| *m.borrow_mut() = Some(text));
}

/// Installs this crate's error handler in place of mlx-c's exiting one, and gives the
/// calling thread its pooled default CPU stream (see the `stream` module) before MLX makes
/// one of its own. Idempotent and cheap; every fallible entry point calls it.
pub fn install_error_handler() {
    install_handler_only();
    crate::stream::ensure_thread_cpu();
}

/// The error-handler half of [`install_error_handler`].
pub(crate) fn install_handler_only() {
    INSTALL.call_once(|| {
        // SAFETY: `store_message` is a plain function that never unwinds; no user data.
        unsafe { mlx_sys::mlx_set_error_handler(Some(store_message), std::ptr::null_mut(), None) };
    });
}

/// Takes the message MLX left for this thread (if any).
pub(crate) fn take_message() -> Option<String> {
    LAST_MESSAGE.with(|m| m.borrow_mut().take())
}

/// As [`take_message`], also while the thread is exiting (then there is none).
pub(crate) fn take_message_if_alive() -> Option<String> {
    LAST_MESSAGE
        .try_with(|m| m.borrow_mut().take())
        .ok()
        .flatten()
}

/// Turns an mlx-c return code into a `Result`.
#[allow(dead_code)]
#[track_caller]
pub(crate) fn check(code: i32) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(mlx_error(Location::caller()))
    }
}

/// Builds [`Error::Mlx`] from the pending message.
pub(crate) fn mlx_error(location: &'static Location<'static>) -> Error {
    Error::Mlx {
        message: take_message()
            .unwrap_or_else(|| "MLX reported a failure without a message".into()),
        location,
    }
}
