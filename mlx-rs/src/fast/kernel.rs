//! Custom GPU kernels: CUDA source (CUDA backend) or Metal source (Metal backend),
//! compiled at run time by MLX and applied to arrays like any op.
//!
//! ```no_run
//! use mlx_rs::{fast::{KernelBuilder, KernelConfig}, Array, Dtype};
//! // out[i] = 2 · a[i], on the CUDA backend
//! let kernel = KernelBuilder::new(
//!     "double_it",
//!     "auto i = blockIdx.x * blockDim.x + threadIdx.x;
//!      if (i < a_shape[0]) { out[i] = 2 * a[i]; }",
//! )
//! .input_names(&["a"])
//! .output_names(&["out"])
//! .build_cuda()?;
//! let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3])?;
//! let config = KernelConfig::new([3, 1, 1], [32, 1, 1]).output(&[3], Dtype::Float32);
//! let out = kernel.apply(&[a], &config)?;
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! A kernel for a backend that is not linked (CUDA on the CPU or Metal build, Metal off
//! macOS) fails with an error — when it is built or when it is applied or evaluated,
//! depending on the backend — never by aborting.

use crate::error::{install_error_handler, mlx_error};
use crate::raw::{status, stream_vector_op, VectorArray};
use crate::{Array, Dtype, Error, Result};
use mlx_sys as sys;
use std::ffi::{c_int, CString};
use std::panic::Location;

/// A template argument of a kernel (`template <typename T, int N, bool B>` in the source).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TemplateArg {
    /// A type parameter, given as a dtype.
    Dtype(Dtype),
    /// An `int` parameter (non-negative: MLX 0.32.2 writes template values into the
    /// kernel's name, where a minus sign does not compile).
    Int(i32),
    /// A `bool` parameter.
    Bool(bool),
}

fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| Error::InvalidArgument(format!("{what} contains a NUL byte: {s:?}")))
}

/// An owned `mlx_vector_string`.
struct VectorString(sys::mlx_vector_string);

impl VectorString {
    fn new(what: &str, items: &[String]) -> Result<Self> {
        // SAFETY: an empty vector, owned by the returned value.
        let v = VectorString(unsafe { sys::mlx_vector_string_new() });
        for s in items {
            let c = c_string(what, s)?;
            status(|| unsafe { sys::mlx_vector_string_append_value(v.0, c.as_ptr()) })?;
        }
        Ok(v)
    }
}

impl Drop for VectorString {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_vector_string_free(self.0) };
    }
}

/// Describes a custom kernel: its name, the names of its inputs and outputs (the
/// variables the source uses), the body and an optional header. Build it for a backend
/// with [`build_cuda`](KernelBuilder::build_cuda) or [`build_metal`](KernelBuilder::build_metal).
///
/// The source is the *body* of the kernel: MLX writes the signature from the names and
/// the dtypes of the arrays at apply time, adding `<name>_shape`, `<name>_strides` and
/// `<name>_ndim` for inputs that are not row-contiguous (or for all, depending on the
/// backend and on `ensure_row_contiguous`).
#[derive(Debug, Clone)]
pub struct KernelBuilder {
    name: String,
    input_names: Vec<String>,
    output_names: Vec<String>,
    source: String,
    header: String,
    ensure_row_contiguous: bool,
    atomic_outputs: bool,
    shared_memory: i32,
}

impl KernelBuilder {
    /// A kernel called `name` with body `source`, no inputs and no outputs yet.
    pub fn new(name: &str, source: &str) -> Self {
        KernelBuilder {
            name: name.to_string(),
            input_names: Vec::new(),
            output_names: Vec::new(),
            source: source.to_string(),
            header: String::new(),
            ensure_row_contiguous: true,
            atomic_outputs: false,
            shared_memory: 0,
        }
    }

    /// The names of the inputs, in the order arrays are passed to `apply`.
    pub fn input_names(mut self, names: &[&str]) -> Self {
        self.input_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The names of the outputs, in the order of [`KernelConfig::output`].
    pub fn output_names(mut self, names: &[&str]) -> Self {
        self.output_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Code placed before the kernel (helper functions, includes).
    pub fn header(mut self, header: &str) -> Self {
        self.header = header.to_string();
        self
    }

    /// Whether inputs are copied to row-contiguous layout first (default `true`).
    pub fn ensure_row_contiguous(mut self, yes: bool) -> Self {
        self.ensure_row_contiguous = yes;
        self
    }

    /// Metal only: outputs are `device atomic<T>*` (default `false`).
    pub fn atomic_outputs(mut self, yes: bool) -> Self {
        self.atomic_outputs = yes;
        self
    }

    /// CUDA only: bytes of dynamic shared memory per block (default 0).
    pub fn shared_memory(mut self, bytes: i32) -> Self {
        self.shared_memory = bytes;
        self
    }

    fn check(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::InvalidArgument("a kernel needs a name".into()));
        }
        if self.output_names.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "kernel {}: no output names",
                self.name
            )));
        }
        if self.shared_memory < 0 {
            return Err(Error::InvalidArgument(format!(
                "kernel {}: negative shared memory size {}",
                self.name, self.shared_memory
            )));
        }
        Ok(())
    }

    /// Strings for mlx-c (name, inputs, outputs, source, header).
    fn c_parts(&self) -> Result<(CString, VectorString, VectorString, CString, CString)> {
        self.check()?;
        Ok((
            c_string("kernel name", &self.name)?,
            VectorString::new("input name", &self.input_names)?,
            VectorString::new("output name", &self.output_names)?,
            c_string("kernel source", &self.source)?,
            c_string("kernel header", &self.header)?,
        ))
    }

    /// Builds a CUDA kernel. Fails (with MLX's message) when MLX has no CUDA backend.
    #[track_caller]
    pub fn build_cuda(&self) -> Result<CudaKernel> {
        let (name, inputs, outputs, source, header) = self.c_parts()?;
        install_error_handler();
        // SAFETY: live strings and vectors; mlx-c copies them.
        let raw = unsafe {
            sys::mlx_fast_cuda_kernel_new(
                name.as_ptr(),
                inputs.0,
                outputs.0,
                source.as_ptr(),
                header.as_ptr(),
                self.ensure_row_contiguous,
                self.shared_memory as c_int,
            )
        };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(CudaKernel {
            raw,
            name: self.name.clone(),
            n_inputs: self.input_names.len(),
            n_outputs: self.output_names.len(),
        })
    }

    /// Builds a Metal kernel. Off macOS, MLX accepts the description but applying the
    /// kernel fails (no Metal backend).
    #[track_caller]
    pub fn build_metal(&self) -> Result<MetalKernel> {
        let (name, inputs, outputs, source, header) = self.c_parts()?;
        install_error_handler();
        // SAFETY: live strings and vectors; mlx-c copies them.
        let raw = unsafe {
            sys::mlx_fast_metal_kernel_new(
                name.as_ptr(),
                inputs.0,
                outputs.0,
                source.as_ptr(),
                header.as_ptr(),
                self.ensure_row_contiguous,
                self.atomic_outputs,
            )
        };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(MetalKernel {
            raw,
            name: self.name.clone(),
            n_inputs: self.input_names.len(),
            n_outputs: self.output_names.len(),
        })
    }
}

/// How to launch a kernel: grid and thread-group sizes, the outputs' shapes and dtypes,
/// template arguments, an optional initial value for the outputs, and whether MLX prints
/// the generated source.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelConfig {
    /// Total threads in each dimension (Metal: threads; CUDA: MLX divides by the
    /// thread-group size to get blocks).
    pub grid: [i32; 3],
    /// Threads per group (block) in each dimension.
    pub thread_group: [i32; 3],
    /// Shape and dtype of each output, in the order of the output names.
    pub outputs: Vec<(Vec<i32>, Dtype)>,
    /// Template arguments, by name.
    pub template_args: Vec<(String, TemplateArg)>,
    /// Fill the outputs with this value before the kernel runs (else uninitialized).
    pub init_value: Option<f32>,
    /// Print the generated kernel source.
    pub verbose: bool,
}

impl KernelConfig {
    /// A launch of `grid` threads in groups of `thread_group`, with no outputs yet.
    pub fn new(grid: [i32; 3], thread_group: [i32; 3]) -> Self {
        KernelConfig {
            grid,
            thread_group,
            outputs: Vec::new(),
            template_args: Vec::new(),
            init_value: None,
            verbose: false,
        }
    }

    /// Adds an output of `shape` and `dtype`.
    pub fn output(mut self, shape: &[i32], dtype: Dtype) -> Self {
        self.outputs.push((shape.to_vec(), dtype));
        self
    }

    /// Adds a template argument.
    pub fn template(mut self, name: &str, arg: TemplateArg) -> Self {
        self.template_args.push((name.to_string(), arg));
        self
    }

    /// Fills the outputs with `value` before the kernel runs.
    pub fn init_value(mut self, value: f32) -> Self {
        self.init_value = Some(value);
        self
    }

    /// Prints the generated source when the kernel is built.
    pub fn verbose(mut self, yes: bool) -> Self {
        self.verbose = yes;
        self
    }

    fn check(&self, kernel: &str, n_inputs: usize, n_outputs: usize, inputs: usize) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidArgument(format!("kernel {kernel}: {msg}")));
        if inputs != n_inputs {
            return bad(format!("{n_inputs} input names but {inputs} arrays"));
        }
        if self.outputs.len() != n_outputs {
            return bad(format!(
                "{n_outputs} output names but {} output shapes",
                self.outputs.len()
            ));
        }
        if self.grid.iter().chain(&self.thread_group).any(|&d| d <= 0) {
            return bad(format!(
                "grid {:?} and thread group {:?} must be positive",
                self.grid, self.thread_group
            ));
        }
        if let Some((shape, _)) = self.outputs.iter().find(|(s, _)| s.iter().any(|&d| d < 0)) {
            return bad(format!("negative dimension in output shape {shape:?}"));
        }
        for (name, arg) in &self.template_args {
            if let TemplateArg::Int(v) = arg {
                if *v < 0 {
                    return bad(format!(
                        "template argument {name} = {v}: MLX puts template values into the \
                         kernel's name, where a negative number does not compile"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An owned `mlx_fast_cuda_kernel_config` filled from a [`KernelConfig`].
struct RawCudaConfig(sys::mlx_fast_cuda_kernel_config);

impl RawCudaConfig {
    #[track_caller]
    fn new(c: &KernelConfig) -> Result<Self> {
        install_error_handler();
        // SAFETY: a fresh config, owned (and freed) by the returned value.
        let cfg = RawCudaConfig(unsafe { sys::mlx_fast_cuda_kernel_config_new() });
        if cfg.0.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        let raw = cfg.0;
        for (shape, dtype) in &c.outputs {
            status(|| unsafe {
                sys::mlx_fast_cuda_kernel_config_add_output_arg(
                    raw,
                    shape.as_ptr(),
                    shape.len(),
                    dtype.to_raw(),
                )
            })?;
        }
        let ([g1, g2, g3], [t1, t2, t3]) = (c.grid, c.thread_group);
        status(|| unsafe { sys::mlx_fast_cuda_kernel_config_set_grid(raw, g1, g2, g3) })?;
        status(|| unsafe { sys::mlx_fast_cuda_kernel_config_set_thread_group(raw, t1, t2, t3) })?;
        if let Some(v) = c.init_value {
            status(|| unsafe { sys::mlx_fast_cuda_kernel_config_set_init_value(raw, v) })?;
        }
        status(|| unsafe { sys::mlx_fast_cuda_kernel_config_set_verbose(raw, c.verbose) })?;
        for (name, arg) in &c.template_args {
            let n = c_string("template argument name", name)?;
            status(|| unsafe {
                match *arg {
                    TemplateArg::Dtype(d) => {
                        sys::mlx_fast_cuda_kernel_config_add_template_arg_dtype(
                            raw,
                            n.as_ptr(),
                            d.to_raw(),
                        )
                    }
                    TemplateArg::Int(i) => {
                        sys::mlx_fast_cuda_kernel_config_add_template_arg_int(raw, n.as_ptr(), i)
                    }
                    TemplateArg::Bool(b) => {
                        sys::mlx_fast_cuda_kernel_config_add_template_arg_bool(raw, n.as_ptr(), b)
                    }
                }
            })?;
        }
        Ok(cfg)
    }
}

impl Drop for RawCudaConfig {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_fast_cuda_kernel_config_free(self.0) };
    }
}

/// An owned `mlx_fast_metal_kernel_config` filled from a [`KernelConfig`].
struct RawMetalConfig(sys::mlx_fast_metal_kernel_config);

impl RawMetalConfig {
    #[track_caller]
    fn new(c: &KernelConfig) -> Result<Self> {
        install_error_handler();
        // SAFETY: a fresh config, owned (and freed) by the returned value.
        let cfg = RawMetalConfig(unsafe { sys::mlx_fast_metal_kernel_config_new() });
        if cfg.0.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        let raw = cfg.0;
        for (shape, dtype) in &c.outputs {
            status(|| unsafe {
                sys::mlx_fast_metal_kernel_config_add_output_arg(
                    raw,
                    shape.as_ptr(),
                    shape.len(),
                    dtype.to_raw(),
                )
            })?;
        }
        let ([g1, g2, g3], [t1, t2, t3]) = (c.grid, c.thread_group);
        status(|| unsafe { sys::mlx_fast_metal_kernel_config_set_grid(raw, g1, g2, g3) })?;
        status(|| unsafe { sys::mlx_fast_metal_kernel_config_set_thread_group(raw, t1, t2, t3) })?;
        if let Some(v) = c.init_value {
            status(|| unsafe { sys::mlx_fast_metal_kernel_config_set_init_value(raw, v) })?;
        }
        status(|| unsafe { sys::mlx_fast_metal_kernel_config_set_verbose(raw, c.verbose) })?;
        for (name, arg) in &c.template_args {
            let n = c_string("template argument name", name)?;
            status(|| unsafe {
                match *arg {
                    TemplateArg::Dtype(d) => {
                        sys::mlx_fast_metal_kernel_config_add_template_arg_dtype(
                            raw,
                            n.as_ptr(),
                            d.to_raw(),
                        )
                    }
                    TemplateArg::Int(i) => {
                        sys::mlx_fast_metal_kernel_config_add_template_arg_int(raw, n.as_ptr(), i)
                    }
                    TemplateArg::Bool(b) => {
                        sys::mlx_fast_metal_kernel_config_add_template_arg_bool(raw, n.as_ptr(), b)
                    }
                }
            })?;
        }
        Ok(cfg)
    }
}

impl Drop for RawMetalConfig {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_fast_metal_kernel_config_free(self.0) };
    }
}

/// A custom CUDA kernel, made by [`KernelBuilder::build_cuda`]. `Send`, not `Sync`.
pub struct CudaKernel {
    raw: sys::mlx_fast_cuda_kernel,
    name: String,
    n_inputs: usize,
    n_outputs: usize,
}

// SAFETY: the kernel is an immutable description (strings) plus MLX's callable; it has no
// thread affinity. Not Sync: MLX does not promise concurrent applies of one kernel.
unsafe impl Send for CudaKernel {}

impl CudaKernel {
    /// Runs the kernel on `inputs` (in the order of the input names) on the current
    /// stream; returns the outputs (lazy, like any op).
    #[track_caller]
    pub fn apply<A: AsRef<Array>>(
        &self,
        inputs: &[A],
        config: &KernelConfig,
    ) -> Result<Vec<Array>> {
        config.check(&self.name, self.n_inputs, self.n_outputs, inputs.len())?;
        let cfg = RawCudaConfig::new(config)?;
        let x = VectorArray::from_arrays(inputs);
        stream_vector_op(|res, s| unsafe {
            sys::mlx_fast_cuda_kernel_apply(res, self.raw, x.0, cfg.0, s)
        })
    }
}

impl Drop for CudaKernel {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_fast_cuda_kernel_free(self.raw) };
    }
}

impl std::fmt::Debug for CudaKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaKernel({})", self.name)
    }
}

/// A custom Metal kernel, made by [`KernelBuilder::build_metal`]. `Send`, not `Sync`.
pub struct MetalKernel {
    raw: sys::mlx_fast_metal_kernel,
    name: String,
    n_inputs: usize,
    n_outputs: usize,
}

// SAFETY: as for CudaKernel.
unsafe impl Send for MetalKernel {}

impl MetalKernel {
    /// Runs the kernel on `inputs` (in the order of the input names) on the current
    /// stream; returns the outputs (lazy, like any op).
    #[track_caller]
    pub fn apply<A: AsRef<Array>>(
        &self,
        inputs: &[A],
        config: &KernelConfig,
    ) -> Result<Vec<Array>> {
        config.check(&self.name, self.n_inputs, self.n_outputs, inputs.len())?;
        let cfg = RawMetalConfig::new(config)?;
        let x = VectorArray::from_arrays(inputs);
        stream_vector_op(|res, s| unsafe {
            sys::mlx_fast_metal_kernel_apply(res, self.raw, x.0, cfg.0, s)
        })
    }
}

impl Drop for MetalKernel {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_fast_metal_kernel_free(self.raw) };
    }
}

impl std::fmt::Debug for MetalKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetalKernel({})", self.name)
    }
}
