//! Zero-size results kept away from MLX's kernels.
//!
//! Several MLX kernels divide by a dimension or hand it to BLAS/LAPACK unchecked, so a
//! zero-size input kills the process (SIGFPE, or the reference BLAS exiting) although
//! the result is well defined: an array with no elements has no values to compute.
//! The op families that do so (sorts and top-k, cumulative scans, the linear-algebra
//! factorisations and solvers, random permutations, the quantized, gathered and
//! segmented products, convolutions) build MLX's lazy node as usual, which checks the
//! arguments and gives the result's shape and dtype, and return a fresh empty array of
//! that shape and dtype when it has no elements. Nothing is evaluated.
//!
//! A function compiled with `shapeless` keeps what its first trace decided: these
//! checks see the shapes of that call.

use crate::{ops, Array, Result};

/// `out`, or a fresh array of its shape and dtype when it has no elements.
pub(crate) fn or_empty(out: Array) -> Result<Array> {
    if out.size() == 0 {
        ops::zeros(out.shape(), out.dtype())
    } else {
        Ok(out)
    }
}

/// [`or_empty`] for the outputs of one multi-output op: replaced only when all of them
/// are empty (otherwise MLX's kernel runs for the others anyway).
pub(crate) fn or_empty_all(outs: Vec<Array>) -> Result<Vec<Array>> {
    if outs.iter().all(|a| a.size() == 0) {
        outs.into_iter().map(or_empty).collect()
    } else {
        Ok(outs)
    }
}

/// [`or_empty_all`] for two outputs.
pub(crate) fn or_empty_pair((a, b): (Array, Array)) -> Result<(Array, Array)> {
    if a.size() == 0 && b.size() == 0 {
        Ok((or_empty(a)?, or_empty(b)?))
    } else {
        Ok((a, b))
    }
}
