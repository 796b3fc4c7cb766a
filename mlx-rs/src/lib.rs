//! Safe Rust bindings to Apple's [MLX](https://github.com/ml-explore/mlx) 0.32.2 through
//! its C API, mlx-c.
//!
//! ```
//! use mlx_rs::{Array, Dtype};
//! let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let b = mlx_rs::ops::eye(2, 2, 0, Dtype::Float32)?;
//! let c = a.matmul(&b)?.add(&a)?;
//! assert_eq!(c.to_vec::<f32>()?, vec![2.0, 4.0, 6.0, 8.0]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! Every fallible call returns [`Result`]; nothing in this crate exits or aborts the
//! process on bad input.
#![deny(missing_docs)]

mod array;
mod device;
mod dtype;
mod error;
pub mod export;
pub mod fast;
pub mod fft;
mod index;
pub mod io;
pub mod linalg;
pub mod memory;
mod operators;
pub mod ops;
pub mod random;
mod raw;
mod stream;
pub mod transforms;

pub use array::{async_eval, eval, Array};
pub use device::{Device, DeviceType};
pub use dtype::{Dtype, Element};
pub use error::{install_error_handler, Error, Result};
pub use index::Index;
pub use stream::{current_stream, synchronize, with_device, with_stream, Stream};

/// Re-exported element types for `float16`, `bfloat16` and `complex64` arrays.
pub use half::{bf16, f16};
pub use num_complex::Complex32;

/// The version of the MLX library loaded at run time (e.g. `"0.32.2"`).
pub fn version() -> String {
    let mut s = raw::MlxString::new();
    // SAFETY: writes into an owned string handle.
    if unsafe { mlx_sys::mlx_version(&mut s.0) } != 0 {
        return String::from("unknown");
    }
    s.to_string_lossy()
}

/// Which MLX backend was linked at build time: `cpu`, `cuda`, `metal`, or `custom`.
pub fn backend() -> &'static str {
    mlx_sys::MLX_BACKEND
}
