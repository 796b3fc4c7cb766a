//! What a call of the gated delta rule is given besides its arrays: the path of a decode
//! step ([`StepPath`]), the form of a prefill ([`Prefill`]), both together
//! ([`GatedDeltaOptions`]), and the head layout of a layer ([`DeltaHeads`]).

use crate::error::{Error, Result};
use crate::kernels::cpu_gemm::CpuProducts;
use crate::kernels::gpu::GpuBackend;
use mlx_rs::{Device, DeviceType};

/// The chunk size of the chunked prefill by default ([`Prefill::default`]).
pub const DEFAULT_CHUNK: i32 = 64;

/// How a single-token step of the gated delta rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepPath {
    /// The custom CUDA kernel (MLX with the CUDA backend, current stream on the GPU).
    CudaKernel,
    /// The custom Metal kernel (MLX with the Metal backend, current stream on the GPU).
    MetalKernel,
    /// The step's ops, compiled into fused kernels (the CPU path).
    Compiled,
    /// The step's ops, uncompiled (the reference).
    Ops,
}

impl StepPath {
    /// The GPU kernel path of this platform if the MLX loaded at run time has a GPU
    /// ([`GpuBackend::available`]); `None` otherwise.
    pub fn gpu_kernel() -> Option<StepPath> {
        GpuBackend::available().map(|b| match b {
            GpuBackend::Cuda => StepPath::CudaKernel,
            GpuBackend::Metal => StepPath::MetalKernel,
        })
    }

    /// The path of the fused decode on `device`: the GPU kernel on a GPU, compiled ops on
    /// the CPU.
    pub fn fused_on(device: &Device) -> StepPath {
        let on_gpu = device.kind().is_ok_and(|k| k == DeviceType::Gpu);
        match (on_gpu, StepPath::gpu_kernel()) {
            (true, Some(kernel)) => kernel,
            _ => StepPath::Compiled,
        }
    }

    /// Whether this is a GPU kernel path.
    pub fn is_kernel(self) -> bool {
        self.backend().is_some()
    }

    /// The GPU backend of a kernel path; `None` for the ops paths.
    pub fn backend(self) -> Option<GpuBackend> {
        match self {
            StepPath::CudaKernel => Some(GpuBackend::Cuda),
            StepPath::MetalKernel => Some(GpuBackend::Metal),
            StepPath::Compiled | StepPath::Ops => None,
        }
    }
}

/// How a multi-token call (a prefill) runs the gated delta rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefill {
    /// The chunkwise-parallel form ([`super::chunked`]) with chunks of this many tokens
    /// (at least 1).
    Chunked(i32),
    /// The sequential reference form ([`super::ops::gated_delta_sequential`]).
    Sequential,
}

impl Default for Prefill {
    /// Chunks of [`DEFAULT_CHUNK`] tokens.
    fn default() -> Self {
        Prefill::Chunked(DEFAULT_CHUNK)
    }
}

impl Prefill {
    /// `self`, or an error for a chunk size below 1.
    pub fn checked(self) -> Result<Prefill> {
        match self {
            Prefill::Chunked(c) if c < 1 => Err(Error::InvalidArgument(format!(
                "the prefill chunk size must be at least 1, got {c}"
            ))),
            p => Ok(p),
        }
    }
}

/// Multi-token calls short enough to run the GPU step kernel over their tokens (one launch
/// per call, the recurrence walked token by token) instead of the [`Prefill`] form: for a
/// short prompt (a chat turn, a served request) the chunked form's ~80 small ops per layer
/// cost more host and launch time than the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortPrefill {
    /// The backend of the kernel.
    pub backend: GpuBackend,
    /// Calls of at most this many tokens take the kernel.
    pub max_tokens: i32,
}

/// The choices of a call of [`super::gated_delta_update`], made once (at a model's load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GatedDeltaOptions {
    /// The path of a single-token call.
    pub step: StepPath,
    /// The form of a multi-token call.
    pub prefill: Prefill,
    /// How the chunked form's float32 products run for a model on the CPU (`None`: in
    /// MLX, as on a GPU).
    pub cpu: Option<CpuProducts>,
    /// Short multi-token calls on the GPU step kernel (`None`: every multi-token call
    /// takes the [`Prefill`] form).
    pub short_prefill: Option<ShortPrefill>,
}

impl Default for GatedDeltaOptions {
    /// The reference: uncompiled ops for a step, the default chunked prefill, products
    /// in MLX.
    fn default() -> Self {
        GatedDeltaOptions {
            step: StepPath::Ops,
            prefill: Prefill::default(),
            cpu: None,
            short_prefill: None,
        }
    }
}

/// Head layout of a Gated DeltaNet layer (the constants its compiled decode inputs
/// capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeltaHeads {
    /// Key heads.
    pub hk: i32,
    /// Value heads (a multiple of `hk`; value head `j` reads key head `j / (hv / hk)`).
    pub hv: i32,
    /// Key head dim.
    pub dk: i32,
    /// Value head dim.
    pub dv: i32,
}

impl DeltaHeads {
    /// The layout as one cache key.
    pub(crate) fn key(self) -> u64 {
        let f = |x: i32| (x as u16) as u64;
        f(self.hk) | f(self.hv) << 16 | f(self.dk) << 32 | f(self.dv) << 48
    }
}
