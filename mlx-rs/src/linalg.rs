//! Linear algebra: norms, cross products, factorisations (Cholesky, QR, SVD, LU,
//! eigen-decompositions), inverses, determinants and solvers.
//!
//! Functions take batches: the last two axes are the matrix, leading axes are batch axes.
//! Empty matrices (`0 × 0`, or an empty batch) give empty results of the right shapes,
//! and [`det`] of a `0 × 0` matrix is 1, as in NumPy.
//!
//! # Streams
//!
//! Like every op here, these run on the thread's current stream. In MLX 0.32 the
//! factorisations and everything built on them (`cholesky*`, `qr`, `svd`, `eig*`, `lu*`,
//! `inv`, `tri_inv`, `pinv`, `det`, `slogdet`, `solve*`) are implemented only on the CPU:
//! on a GPU stream they fail with MLX's error. When the default device is a GPU, run them
//! on the CPU stream — arrays live in unified memory, so no copies are made:
//!
//! ```
//! use mlx_rs::{linalg, with_stream, Array, Stream};
//! let a = Array::from_slice(&[4.0f32, 1.0, 1.0, 3.0], &[2, 2])?;
//! let inv = with_stream(&Stream::cpu(), || linalg::inv(&a))?;
//! let id = a.matmul(&inv)?.to_vec::<f32>()?;
//! assert!((id[0] - 1.0).abs() < 1e-5 && id[1].abs() < 1e-5);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! `norm*` and [`cross`] run on any device.

use crate::ops::empty::{or_empty, or_empty_all, or_empty_pair};
use crate::raw::{stream_op, stream_pair_op, stream_vector_op};
use crate::{Array, Error, Result};
use mlx_sys as sys;
use std::ffi::CString;

/// A C string for `what`, or [`Error::InvalidArgument`] if it holds a NUL byte.
fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| Error::InvalidArgument(format!("{what} contains a NUL byte: {s:?}")))
}

/// `uplo` as a C string; MLX silently treats anything but `"L"` as `"U"`, so check it.
fn c_uplo(uplo: &str) -> Result<CString> {
    if uplo != "L" && uplo != "U" {
        return Err(Error::InvalidArgument(format!(
            "uplo must be \"L\" or \"U\", got {uplo:?}"
        )));
    }
    c_string("uplo", uplo)
}

/// `(pointer, len)` for an optional axis list; null means "all axes" to mlx-c.
fn opt_axes(axes: Option<&[i32]>) -> (*const i32, usize) {
    match axes {
        Some(ax) => (ax.as_ptr(), ax.len()),
        None => (std::ptr::null(), 0),
    }
}

/// The Cholesky factor of a symmetric positive-definite matrix: lower `L` with
/// `a = L Lᵀ` (or upper `U` with `a = Uᵀ U` when `upper`). CPU only.
#[track_caller]
pub fn cholesky(a: &Array, upper: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_cholesky(res, a.as_raw(), upper, s)
    })?)
}

/// The inverse of a matrix from its Cholesky factor `a` (lower, or upper when `upper`).
/// CPU only.
#[track_caller]
pub fn cholesky_inv(a: &Array, upper: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_cholesky_inv(res, a.as_raw(), upper, s)
    })?)
}

/// The cross product of 3-vectors along `axis`.
#[track_caller]
pub fn cross(a: &Array, b: &Array, axis: i32) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_linalg_cross(res, a.as_raw(), b.as_raw(), axis, s) })
}

/// The determinant of a square matrix. CPU only.
#[track_caller]
pub fn det(a: &Array) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_linalg_det(res, a.as_raw(), s) })
}

/// Eigenvalues and right eigenvectors `(w, v)` of a general square matrix (complex
/// results). CPU only.
#[track_caller]
pub fn eig(a: &Array) -> Result<(Array, Array)> {
    or_empty_pair(stream_pair_op(|r0, r1, s| unsafe {
        sys::mlx_linalg_eig(r0, r1, a.as_raw(), s)
    })?)
}

/// Eigenvalues (ascending) and orthonormal eigenvectors `(w, v)` of a symmetric
/// (Hermitian) matrix, reading its lower (`uplo = "L"`) or upper (`"U"`) triangle.
/// CPU only.
#[track_caller]
pub fn eigh(a: &Array, uplo: &str) -> Result<(Array, Array)> {
    let uplo = c_uplo(uplo)?;
    or_empty_pair(stream_pair_op(|r0, r1, s| unsafe {
        sys::mlx_linalg_eigh(r0, r1, a.as_raw(), uplo.as_ptr(), s)
    })?)
}

/// Eigenvalues of a general square matrix (complex). CPU only.
#[track_caller]
pub fn eigvals(a: &Array) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_eigvals(res, a.as_raw(), s)
    })?)
}

/// Eigenvalues (ascending) of a symmetric (Hermitian) matrix, reading its lower
/// (`uplo = "L"`) or upper (`"U"`) triangle. CPU only.
#[track_caller]
pub fn eigvalsh(a: &Array, uplo: &str) -> Result<Array> {
    let uplo = c_uplo(uplo)?;
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_eigvalsh(res, a.as_raw(), uplo.as_ptr(), s)
    })?)
}

/// The inverse of a square matrix. CPU only.
#[track_caller]
pub fn inv(a: &Array) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_inv(res, a.as_raw(), s)
    })?)
}

/// The LU factorisation with partial pivoting: `[p, l, u]` with `a = L U` after
/// permuting rows by the indices `p` (`a[p] = l @ u`). CPU only.
#[track_caller]
pub fn lu(a: &Array) -> Result<Vec<Array>> {
    or_empty_all(stream_vector_op(|res, s| unsafe {
        sys::mlx_linalg_lu(res, a.as_raw(), s)
    })?)
}

/// The compact LU factorisation `(lu, pivots)` as in LAPACK's `getrf` (L's unit diagonal
/// implied, `pivots` the row swaps). CPU only.
#[track_caller]
pub fn lu_factor(a: &Array) -> Result<(Array, Array)> {
    or_empty_pair(stream_pair_op(|r0, r1, s| unsafe {
        sys::mlx_linalg_lu_factor(r0, r1, a.as_raw(), s)
    })?)
}

/// The vector (one axis) or matrix (two axes) norm of order `ord` (`f64::INFINITY`,
/// `-f64::INFINITY`, 0, 1, -1, 2, … as in NumPy) over `axis` (`None`: all axes, which
/// must then be one or two).
#[track_caller]
pub fn norm(a: &Array, ord: f64, axis: Option<&[i32]>, keepdims: bool) -> Result<Array> {
    let (ax, n) = opt_axes(axis);
    stream_op(|res, s| unsafe { sys::mlx_linalg_norm(res, a.as_raw(), ord, ax, n, keepdims, s) })
}

/// A matrix norm named by `ord` (`"fro"`/`"f"`: Frobenius, `"nuc"`: nuclear) over two
/// axes (`None`: all axes, which must then be two).
#[track_caller]
pub fn norm_matrix(a: &Array, ord: &str, axis: Option<&[i32]>, keepdims: bool) -> Result<Array> {
    let ord = c_string("ord", ord)?;
    let (ax, n) = opt_axes(axis);
    stream_op(|res, s| unsafe {
        sys::mlx_linalg_norm_matrix(res, a.as_raw(), ord.as_ptr(), ax, n, keepdims, s)
    })
}

/// The 2-norm of the flattened array (`axis = None`), or of vectors (one axis), or the
/// Frobenius norm of matrices (two axes).
#[track_caller]
pub fn norm_l2(a: &Array, axis: Option<&[i32]>, keepdims: bool) -> Result<Array> {
    let (ax, n) = opt_axes(axis);
    stream_op(|res, s| unsafe { sys::mlx_linalg_norm_l2(res, a.as_raw(), ax, n, keepdims, s) })
}

/// The Moore–Penrose pseudo-inverse (via SVD). CPU only.
#[track_caller]
pub fn pinv(a: &Array) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_pinv(res, a.as_raw(), s)
    })?)
}

/// The reduced QR factorisation `(q, r)`: `a = q r`, `q` with orthonormal columns, `r`
/// upper triangular. CPU only.
#[track_caller]
pub fn qr(a: &Array) -> Result<(Array, Array)> {
    or_empty_pair(stream_pair_op(|r0, r1, s| unsafe {
        sys::mlx_linalg_qr(r0, r1, a.as_raw(), s)
    })?)
}

/// The sign and the natural log of the absolute value of the determinant,
/// `(sign, logabsdet)`: stable where [`det`] would overflow. CPU only.
#[track_caller]
pub fn slogdet(a: &Array) -> Result<(Array, Array)> {
    stream_pair_op(|r0, r1, s| unsafe { sys::mlx_linalg_slogdet(r0, r1, a.as_raw(), s) })
}

/// Solves `a x = b` for `x` (`a` square). CPU only.
#[track_caller]
pub fn solve(a: &Array, b: &Array) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_solve(res, a.as_raw(), b.as_raw(), s)
    })?)
}

/// Solves `a x = b` for triangular `a` (upper when `upper`, else lower). CPU only.
#[track_caller]
pub fn solve_triangular(a: &Array, b: &Array, upper: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_solve_triangular(res, a.as_raw(), b.as_raw(), upper, s)
    })?)
}

/// The singular value decomposition: `[u, s, vt]` with `a = u diag(s) vt` when
/// `compute_uv`, else just `[s]`. Singular values are in descending order. CPU only.
#[track_caller]
pub fn svd(a: &Array, compute_uv: bool) -> Result<Vec<Array>> {
    or_empty_all(stream_vector_op(|res, s| unsafe {
        sys::mlx_linalg_svd(res, a.as_raw(), compute_uv, s)
    })?)
}

/// The inverse of a triangular matrix (upper when `upper`, else lower). CPU only.
#[track_caller]
pub fn tri_inv(a: &Array, upper: bool) -> Result<Array> {
    or_empty(stream_op(|res, s| unsafe {
        sys::mlx_linalg_tri_inv(res, a.as_raw(), upper, s)
    })?)
}
