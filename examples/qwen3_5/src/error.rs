//! The error type of this crate.
