//! Safe Rust bindings to Apple's [MLX](https://github.com/ml-explore/mlx) 0.32.2 through
//! its C API, mlx-c. Runs on Linux (CPU, NVIDIA CUDA) and Apple silicon (Metal).
//!
//! Every fallible call returns [`Result`]; nothing in this crate exits or aborts the
//! process on bad input: MLX's errors come back as [`Error::Mlx`] with MLX's message and
//! the Rust call site.
//!
//! # Arrays are lazy
//!
//! Ops build a graph; values are computed when needed (reading them, or [`Array::eval`]).
//! `Clone` shares the data.
//!
//! ```
//! use mlx_rs::{Array, Dtype};
//! let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let b = mlx_rs::ops::eye(2, 2, 0, Dtype::Float32)?;
//! let c = a.matmul(&b)?.add(&a)?; // nothing computed yet
//! assert_eq!(c.to_vec::<f32>()?, vec![2.0, 4.0, 6.0, 8.0]); // evaluated here
//! assert_eq!(c.shape(), &[2, 2]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! [`graph::print_graph`] lists what evaluating some arrays would run (one line per op,
//! with shapes and dtypes) without evaluating them; [`graph::to_dot`] writes the same
//! graph for Graphviz.
//!
//! # Dtypes
//!
//! Every MLX dtype ([`Dtype`]) has a Rust element type ([`Element`]): `bool`, `u8`…`u64`,
//! `i8`…`i64`, [`f16`](struct@f16), [`bf16`], `f32`, `f64`, [`Complex32`]. Reading values checks the
//! dtype; convert with [`Array::astype`].
//!
//! ```
//! use mlx_rs::{bf16, Array, Dtype};
//! let x = Array::from_slice(&[1.5f32, -2.0], &[2])?.astype(Dtype::Bfloat16)?;
//! assert_eq!(x.to_vec::<bf16>()?, vec![bf16::from_f32(1.5), bf16::from_f32(-2.0)]);
//! assert!(x.to_vec::<f32>().is_err()); // no silent conversion
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # Ops and operators
//!
//! Every op of mlx-c is a free function in [`ops`] (named as in mlx-c: `sum_axes`,
//! `softmax_axis`, …), most also an [`Array`] method. `std::ops` operators work on arrays
//! and scalars; scalars take the array's dtype as in Python MLX. Operators cannot return
//! `Result`, so they panic on failure (e.g. shapes that do not broadcast): use the
//! methods for fallible code.
//!
//! ```
//! use mlx_rs::{ops, Array};
//! let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let y = (&x * 2.0 + 1.0).exp()?;
//! let rows = y.sum_axes(&[1], false)?;
//! assert_eq!(rows.shape(), &[2]);
//! let probs = ops::softmax_axis(&x, -1, false)?;
//! let total: f32 = probs.sum(false)?.item()?;
//! assert!((total - 2.0).abs() < 1e-5);
//! assert!(x.add(&Array::from_slice(&[1.0f32, 2.0], &[2])?).is_err()); // [2,3] + [2]
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # Indexing
//!
//! NumPy-style indexing with the [`s!`] macro: ranges, steps, negative indices, new axes,
//! ellipsis, integer arrays, and updates ([`Array::index_put`], [`Array::set_index`]).
//!
//! ```
//! use mlx_rs::{s, Array, Index};
//! let mut a = Array::from_slice(&[0i32, 1, 2, 3, 4, 5], &[2, 3])?;
//! assert_eq!(a.index(&s![-1, ..;2])?.to_vec::<i32>()?, vec![3, 5]);
//! assert_eq!(a.index(&s![Index::NewAxis, .., 1])?.shape(), &[1, 2]);
//! a.set_index(&s![0, 1..], &Array::from_slice(&[9i32, 9], &[2])?)?;
//! assert_eq!(a.to_vec::<i32>()?, vec![0, 9, 9, 3, 4, 5]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # Devices and streams
//!
//! Ops run on the current stream of the thread: the innermost [`with_stream`] scope,
//! else the default stream of the default [`Device`]. Memory is unified: arrays feed ops
//! on any stream without copies.
//!
//! ```
//! use mlx_rs::{with_stream, Array, Device, Stream};
//! let cpu = Stream::new(&Device::cpu());
//! let a = Array::from_slice(&[3.0f32], &[1])?;
//! let b = with_stream(&cpu, || a.square())?;
//! assert_eq!(b.item::<f32>()?, 9.0);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # Transforms
//!
//! [`transforms`] has `grad`, `value_and_grad`, `vjp`, `jvp`, `vmap`, `compile` and custom
//! functions, over Rust closures. A panic or error inside a closure reaches the caller.
//!
//! ```
//! use mlx_rs::{transforms, Array};
//! // d/dx sum(x^2) = 2x
//! let g = transforms::grad(|x: &[Array]| Ok(vec![x[0].square()?.sum(false)?]), &[0])?;
//! let dx = g.call(&[Array::from_slice(&[1.0f32, -3.0], &[2])?])?;
//! assert_eq!(dx[0].to_vec::<f32>()?, vec![2.0, -6.0]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # Writing a model
//!
//! [`nn`] has the layers (linear, quantized, embedding, norms, RoPE, convolutions,
//! attention, dropout), activations and losses, all checked against Python's `mlx.nn`;
//! [`optimizers`] has SGD, Adam, AdamW and Lion with learning-rate schedules. A model is a
//! struct of layers with `#[derive(Module)]`, which makes its parameter tree (dotted names
//! such as `hidden.weight`, as in Python and in checkpoints); a training step is
//! [`nn::value_and_grad`] then [`optimizers::Optimizer::update`]:
//!
//! ```
//! use mlx_rs::nn::{self, Linear, Module, UnaryModule};
//! use mlx_rs::optimizers::{AdamW, Optimizer};
//! use mlx_rs::{Array, Result};
//!
//! #[derive(Module)]
//! struct Mlp {
//!     hidden: Linear,
//!     out: Linear,
//! }
//!
//! impl UnaryModule for Mlp {
//!     fn forward(&self, x: &Array) -> Result<Array> {
//!         self.out.forward(&nn::relu(&self.hidden.forward(x)?)?)
//!     }
//! }
//!
//! mlx_rs::random::seed(3)?;
//! let mut model = Mlp { hidden: Linear::new(2, 16, true)?, out: Linear::new(16, 1, true)? };
//! let mut optimizer = AdamW::new(0.05)?;
//! let x = Array::from_slice(&[0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[4, 2])?;
//! let y = Array::from_slice(&[0.0f32, 1.0, 1.0, 0.0], &[4, 1])?; // XOR
//! let mse = |m: &Mlp| nn::mse_loss(&m.forward(&x)?, &y, nn::Reduction::Mean);
//! for _ in 0..200 {
//!     let (_loss, grads) = nn::value_and_grad(&mut model, mse)?;
//!     optimizer.update(&mut model, &grads)?;
//!     model.eval_parameters()?;
//! }
//! assert!(mse(&model)?.item::<f32>()? < 0.01);
//!
//! // The tree: save, load (strictly checked), freeze, quantize in place.
//! assert_eq!(model.parameters()?.len(), 4); // hidden.{weight,bias}, out.{weight,bias}
//! let bytes_before = model.parameters()?["out.bias"].to_vec::<f32>()?;
//! # let dir = std::env::temp_dir().join(format!("mlx-rs-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let file = dir.join("mlp.safetensors");
//! model.save_weights(&file)?;
//! model.load_weights(&file, nn::UpdateMode::Strict)?;
//! assert_eq!(model.parameters()?["out.bias"].to_vec::<f32>()?, bytes_before);
//! model.freeze_prefix("hidden")?;
//! assert_eq!(model.trainable_parameters()?.len(), 2);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! Layers that may be quantized later are held as [`nn::MaybeQuantized`] fields, so that
//! [`nn::quantize`] can swap them in place; `examples/train_digits.rs` trains an MLP on
//! real handwritten digits (`cargo run --release --example train_digits`).
//!
//! # Files
//!
//! [`io`] reads and writes `.npy`, safetensors (with metadata; files or memory) and gguf.
//!
//! ```
//! use mlx_rs::{io, Array};
//! let w = Array::from_slice(&[1.0f32, 2.0], &[2])?;
//! let bytes = io::save_safetensors_writer([("w", &w)], [("format", "mlx")])?;
//! let back = io::load_safetensors_reader(bytes)?;
//! assert_eq!(back.arrays["w"].to_vec::<f32>()?, vec![1.0, 2.0]);
//! assert_eq!(back.metadata["format"], "mlx");
//! assert!(io::load_safetensors("no/such/file.safetensors").is_err());
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! [`memory`] reports and limits MLX's allocator; [`random`], [`fft`], [`linalg`] and
//! [`fast`] (fused norms, RoPE, attention, custom CUDA/Metal kernels) complete the API.
//! [`nn`] builds models as trees of named parameters, and [`optimizers`] trains them.
//! [`distributed`] runs one program as several processes (on one machine or many) with
//! MLX's collectives; the workspace's `mlx-launch` starts them.
//!
//! # Threads
//!
//! [`Array`] is `Send` but not `Sync`; [`Stream`] is neither (MLX 0.32 streams belong to
//! the thread that made them); [`ThreadLocalStream`] and [`Device`] are both. The compiler
//! enforces it. Streams and MLX's worker threads are pooled (see [`cpu_streams_made`]): a
//! thread spawned per task costs no OS thread once the pool is warm.
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
//! `fast.h`, `export.h`, `distributed.h` and `distributed_group.h` is reachable from this
//! crate (a test checks it), except:
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
//! - `mlx_stream_thread_local_new`, `mlx_stream_thread_local_set`,
//!   `mlx_stream_thread_local_free`, `mlx_stream_from_thread_local`,
//!   `mlx_synchronize_thread_local`: MLX's thread-local streams make a new stream (and an
//!   OS thread that never ends) on every thread that uses them; [`ThreadLocalStream`]
//!   keeps its per-thread streams itself, leased from the stream pool.
#![deny(missing_docs)]

// `#[derive(Module)]` names `::mlx_rs`; this lets the crate's own layers use it too.
extern crate self as mlx_rs;

mod array;
mod blas;
mod device;
pub mod distributed;
mod dtype;
mod error;
pub mod export;
pub mod fast;
pub mod fft;
pub mod graph;
mod graph_stack;
mod index;
pub mod io;
mod limits;
pub mod linalg;
pub mod memory;
pub mod nn;
mod operators;
pub mod ops;
pub mod optimizers;
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
    clear_streams, cpu_streams_made, current_stream, streams, synchronize, with_device,
    with_stream, Stream, ThreadLocalStream,
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

/// Whether a BLAS/LAPACK argument error becomes an [`Error`] of the evaluation that hit it
/// (`true`), or ends the process as the reference BLAS does (`false`).
///
/// MLX's Linux CPU build bundles the reference BLAS/LAPACK, whose error handler prints
/// and exits with status 0. mlx-sys replaces that handler (`xerbla_`) with one that fails
/// the evaluation with the routine and the argument; this says whether the replacement is
/// in effect in this process (it is in every binary linked by cargo against the PyPI MLX
/// on Linux). Elsewhere (macOS, where
/// MLX uses Accelerate, or an MLX build without bundled BLAS) it is `false`, and mlx-rs
/// relies on its own checks of the arguments it knows reach BLAS (see
/// `docs/bad-input.md`).
pub fn blas_errors_are_caught() -> bool {
    blas::handlers_in_effect()
}

/// Which MLX build was linked at build time: `cpu`, `cuda`, `metal`, or `custom`
/// (`MLX_DIR`).
pub fn linked_backend() -> &'static str {
    mlx_sys::MLX_BACKEND
}
