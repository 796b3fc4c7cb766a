//! Logical and bitwise operations.
