//! BLAS/LAPACK argument errors as [`Error`](crate::Error)s instead of a process exit.
//!
//! MLX's Linux CPU build multiplies and factorises through the reference BLAS/LAPACK it
//! bundles. When a routine gets an illegal argument (a leading dimension of 0 from a
//! convolution with no output channels, a workspace size LAPACK computed from NaN in
//! `eig`, …) it calls `xerbla_`, whose reference version prints `** On entry to SGEMM
//! parameter number 13 had an illegal value` and ends the whole process with exit
//! status 0.
//!
//! mlx-sys's shim defines `xerbla_`, `xerbla_array_` and `cblas_xerbla` itself, and makes
//! every binary that links it export them, so that the bundled libraries (which call them
//! through the dynamic linker) use them. They throw a C++ exception naming the routine and
//! the argument; MLX's scheduler catches it in the task that called BLAS and fails the
//! evaluation with that message, which comes back as [`Error::Mlx`](crate::Error::Mlx).
//! [`handlers_in_effect`] tells whether this is so in the running process; where it is not
//! (macOS, where MLX uses Accelerate; an MLX build without bundled BLAS), mlx-rs relies on
//! its own checks of the arguments it knows reach BLAS (`ops::conv*` with an empty
//! output).

/// Whether the shim's handlers are the ones the process resolves `xerbla_` to.
pub(crate) fn handlers_in_effect() -> bool {
    if !cfg!(target_os = "linux") || mlx_sys::BLAS_LIBS_HOOKED == 0 {
        return false;
    }
    static RESOLVED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RESOLVED.get_or_init(|| {
        // SAFETY: looks a symbol up in the global scope; the name is a C string.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"xerbla_".as_ptr()) };
        std::ptr::eq(found as *const (), mlx_sys::xerbla_ as *const ())
    })
}
