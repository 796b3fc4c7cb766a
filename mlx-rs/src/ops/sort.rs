//! Sorting, partitioning, top-k and searchsorted.
