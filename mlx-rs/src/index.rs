//! NumPy-style indexing: ranges, steps, negative indices, new axes, ellipsis, integer-array indexing, and updates into slices.
