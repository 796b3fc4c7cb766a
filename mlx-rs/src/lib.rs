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
//!
//! # Threads
//!
//! [`Array`] is `Send` but not `Sync`; [`Stream`] is neither (MLX 0.32 streams belong to
//! the thread that made them); [`ThreadLocalStream`] and [`Device`] are both. The compiler
//! enforces it:
//!
//! ```
//! fn send<T: Send>(_: T) {}
//! fn sync<T: Sync>(_: &T) {}
//! send(mlx_rs::Array::scalar(1.0f32));
//! send(mlx_rs::Device::cpu());
//! sync(&mlx_rs::ThreadLocalStream::new(&mlx_rs::Device::cpu()));
//! ```
//!
//! ```compile_fail
//! fn send<T: Send>(_: T) {}
//! send(mlx_rs::Stream::cpu()); // a stream cannot leave its thread
//! ```
//!
//! ```compile_fail
//! fn sync<T: Sync>(_: &T) {}
//! sync(&mlx_rs::Array::scalar(1.0f32)); // no shared use of one array from two threads
//! ```
//!
//! ```compile_fail
//! fn send<T: Send>(_: T) {}
//! let c = mlx_rs::transforms::Closure::new(|x: &[mlx_rs::Array]| Ok(x.to_vec()));
//! send(c); // closures may borrow thread-local state
//! ```
//!
//! # Deliberate exceptions
//!
//! Every function of mlx-c's `array.h`, `device.h`, `stream.h`, `ops.h`, `random.h`,
//! `fft.h`, `linalg.h`, `io.h`, `memory.h`, `transforms.h`, `compile.h`, `closure.h`,
//! `fast.h` and `export.h` is reachable from this crate (a test checks it), except:
//!
//! - `mlx_array_new_bool`, `mlx_array_new_int`, `mlx_array_new_float*`, `mlx_array_new_double`,
//!   `mlx_array_new_complex`: [`Array::scalar`] builds every dtype through `mlx_array_new_data`.
//! - `mlx_array_set_*`: arrays are values here; in-place replacement is `Array::set_index`
//!   or plain assignment.
//! - `mlx_array_item_*`, `mlx_array_data_*` (typed forms): [`Array::item`], [`Array::to_vec`]
//!   and [`Array::as_slice`] read every dtype through one byte pointer after checking the dtype.
//! - `mlx_array_new_data_managed`, `mlx_array_new_data_managed_payload`: arrays always copy
//!   Rust data; adopting Rust allocations without a copy would need page-aligned buffers on
//!   Metal and would let MLX write into memory Rust still thinks it owns.
//! - `mlx_closure_new_func`, `mlx_closure_new_unary`, `mlx_closure_kwargs_new_func`,
//!   `mlx_closure_custom_new_func`, `mlx_closure_custom_jvp_new_func`,
//!   `mlx_closure_custom_vmap_new_func`: these take a bare C function pointer, which cannot
//!   carry a Rust closure; the `*_new_func_payload` forms are used instead.
//! - `mlx_closure_value_and_grad_new_func`, `mlx_closure_value_and_grad_new_func_payload`:
//!   MLX makes value-and-grad closures (from `mlx_value_and_grad`); nothing takes one made by
//!   the user.
//! - `mlx_closure_custom_set`, `mlx_closure_custom_apply`, `mlx_closure_custom_jvp_set`,
//!   `mlx_closure_custom_jvp_apply`, `mlx_closure_custom_vmap_set`,
//!   `mlx_closure_custom_vmap_apply`: custom-rule closures are only built to be handed to MLX
//!   ([`transforms::CustomFunction`]); Rust never copies or calls them itself.
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
pub use operators::Scalar;
pub use stream::{
    clear_streams, current_stream, streams, synchronize, with_device, with_stream, Stream,
    ThreadLocalStream,
};

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

/// The backend of the MLX loaded at run time: `metal` or `cuda` when it has a GPU,
/// else `cpu`.
///
/// This can differ from the build: a binary linked against the CPU wheel runs on the GPU
/// when the CUDA `libmlx` (same version) is found first at run time. See
/// [`linked_backend`] for the build-time choice.
pub fn backend() -> &'static str {
    if Device::gpu().is_available() {
        if cfg!(target_os = "macos") {
            "metal"
        } else {
            "cuda"
        }
    } else {
        "cpu"
    }
}

/// Which MLX build was linked at build time: `cpu`, `cuda`, `metal`, or `custom`
/// (`MLX_DIR`).
pub fn linked_backend() -> &'static str {
    mlx_sys::MLX_BACKEND
}
