//! Matrix and tensor products beyond `matmul`: addmm, inner, outer, kron, tensordot, einsum, vecdot.
