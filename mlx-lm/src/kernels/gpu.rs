//! What the custom GPU kernels share: the backend choice, the headers of their sources
//! (`mlx-lm/kernels/`), small constant inputs, and the per-thread cache of built kernels.

use crate::error::{Error, Result};
use mlx_rs::fast::{CudaKernel, KernelBuilder, KernelConfig, MetalKernel};
use mlx_rs::{Array, Device};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Value helpers shared by both backends (rounding to a dtype, sigmoid, softplus, SiLU).
pub const COMMON_HEADER: &str = include_str!("../../kernels/gdn_common.h");
/// CUDA helpers (math functions, the warp sum), placed before [`COMMON_HEADER`].
pub const CUDA_HEADER: &str = include_str!("../../kernels/cuda_header.cuh");
/// Metal helpers (math functions, the SIMD-group sum), placed before [`COMMON_HEADER`].
pub const METAL_HEADER: &str = include_str!("../../kernels/metal_header.h");

/// The header of a kernel for CUDA.
pub fn cuda_header() -> String {
    format!("{CUDA_HEADER}\n{COMMON_HEADER}")
}

/// The header of a kernel for Metal.
pub fn metal_header() -> String {
    format!("{METAL_HEADER}\n{COMMON_HEADER}")
}

/// The GPU backend a custom kernel is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuBackend {
    /// MLX's CUDA backend (`mlx_fast_cuda_kernel`).
    Cuda,
    /// MLX's Metal backend (`mlx_fast_metal_kernel`).
    Metal,
}

impl GpuBackend {
    /// The backend of this platform (Metal on macOS, CUDA elsewhere) if the MLX loaded at
    /// run time has a GPU; `None` otherwise. Decided at run time, not from the backend MLX
    /// was built against: a binary built against the CPU library runs on the CUDA one
    /// unchanged.
    pub fn available() -> Option<GpuBackend> {
        if !Device::gpu().is_available() {
            None
        } else if cfg!(target_os = "macos") {
            Some(GpuBackend::Metal)
        } else {
            Some(GpuBackend::Cuda)
        }
    }
}

/// A one-element fp32 array holding `value`, made once per thread and value: the small
/// constant inputs of the kernels (epsilons, scales), so that a decode step does not make
/// (allocate and copy) one per launch.
pub fn f32_constant(value: f32) -> Result<Array> {
    thread_local! {
        static CONSTANTS: RefCell<HashMap<u32, Array>> = RefCell::new(HashMap::new());
    }
    CONSTANTS.with(|c| {
        if let Some(a) = c.borrow().get(&value.to_bits()) {
            return Ok(a.clone());
        }
        let a = Array::from_slice(&[value], &[1])?;
        c.borrow_mut().insert(value.to_bits(), a.clone());
        Ok(a)
    })
}

/// A built kernel of either backend.
#[derive(Clone)]
pub(crate) enum GpuKernel {
    Cuda(Rc<CudaKernel>),
    Metal(Rc<MetalKernel>),
}

impl GpuKernel {
    /// Launches the kernel on `inputs` (in the order of its input names).
    pub(crate) fn apply(&self, inputs: &[&Array], config: &KernelConfig) -> Result<Vec<Array>> {
        Ok(match self {
            GpuKernel::Cuda(k) => k.apply(inputs, config)?,
            GpuKernel::Metal(k) => k.apply(inputs, config)?,
        })
    }
}

thread_local! {
    static KERNELS: RefCell<HashMap<(&'static str, GpuBackend), GpuKernel>> =
        RefCell::new(HashMap::new());
}

/// The kernel `name` for `backend`, built on first use on this thread from the body
/// `source(backend)` and the backend's header ([`cuda_header`], [`metal_header`]).
pub(crate) fn kernel(
    backend: GpuBackend,
    name: &'static str,
    inputs: &[&str],
    outputs: &[&str],
    source: impl FnOnce(GpuBackend) -> String,
) -> Result<GpuKernel> {
    cached(name, backend, || {
        let header = match backend {
            GpuBackend::Cuda => cuda_header(),
            GpuBackend::Metal => metal_header(),
        };
        let body = source(backend);
        let builder = KernelBuilder::new(name, &body)
            .header(&header)
            .input_names(inputs)
            .output_names(outputs);
        Ok(match backend {
            GpuBackend::Cuda => GpuKernel::Cuda(Rc::new(builder.build_cuda()?)),
            GpuBackend::Metal => GpuKernel::Metal(Rc::new(builder.build_metal()?)),
        })
    })
}

/// The CUDA kernel `name` with its own `header` (not [`cuda_header`]) that reads its
/// inputs in any layout (`*_strides`; MLX makes no row-contiguous copies), built on first
/// use on this thread. MLX assembles and hashes a kernel's whole source at every launch,
/// so a short header is host time saved on each.
pub(crate) fn cuda_kernel_any_layout(
    name: &'static str,
    inputs: &[&str],
    outputs: &[&str],
    header: &str,
    body: &str,
) -> Result<GpuKernel> {
    cached(name, GpuBackend::Cuda, || {
        let k = KernelBuilder::new(name, body)
            .header(header)
            .input_names(inputs)
            .output_names(outputs)
            .ensure_row_contiguous(false)
            .build_cuda()?;
        Ok(GpuKernel::Cuda(Rc::new(k)))
    })
}

/// The kernel cached under (`name`, `backend`) on this thread, or the one `build` makes.
fn cached(
    name: &'static str,
    backend: GpuBackend,
    build: impl FnOnce() -> Result<GpuKernel>,
) -> Result<GpuKernel> {
    KERNELS.with(|c| {
        if let Some(k) = c.borrow().get(&(name, backend)) {
            return Ok(k.clone());
        }
        let k = build()?;
        c.borrow_mut().insert((name, backend), k.clone());
        Ok(k)
    })
}

/// The outputs of a launch as an array of `N`, or an error naming `what`.
pub(crate) fn outputs<const N: usize>(out: Vec<Array>, what: &str) -> Result<[Array; N]> {
    out.try_into().map_err(|v: Vec<Array>| {
        Error::InvalidArgument(format!("{what}: expected {N} outputs, got {}", v.len()))
    })
}
