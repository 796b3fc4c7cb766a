//! Fused single-token (decode) forms of the model's pieces.
//!
//! * **Whole-layer DeltaNet decode kernel** ([`delta_decode_kernel`], GPU): from the
//!   layer's projections to the delta-rule output in one launch — causal conv over the
//!   carried inputs, SiLU, L2 norms of q and k, the gates, the recurrence step, the new
//!   conv state. One warp / SIMD group per 4 value rows of a head.
//! * **Gated delta step kernel** ([`gated_delta_step`], [`gated_delta_kernel`], GPU): the
//!   recurrence alone, `q, k, v, g, beta, state → y, state`, one warp per value row, over
//!   `T ≥ 1` tokens in one launch (the state stays in registers across tokens).
//! * **Compiled graphs** (CPU, and the GPU pieces the kernels do not cover): the step's ops,
//!   the conv + SiLU + norms + gates of a decode step ([`delta_decode_inputs`]), the gated
//!   output norm, SwiGLU, the attention output gate, the residual add + RMSNorm.
//!
//! The kernels' CUDA and Metal sources share one body each (`kernels/*.inc`); a short
//! prologue per backend maps the launch indices. `tests/kernel_emulation/` runs both
//! sources on the CPU (emulated warps) and compiles the CUDA one with NVRTC, without a GPU.
//!
//! Everything here computes the same values as the plain ops of [`super::deltanet`],
//! [`super::attention`] and [`super::mlp`] (which stay the reference and the prefill path):
//! on the CPU the fused decode is bit-identical to them today; the kernels round to the
//! activation dtype at the same points as the ops and differ only in the order of fp32
//! sums and in the last bit of `exp`/`rsqrt`.
//!
//! # Choosing a path
//! A model picks its [`StepPath`] once, at load ([`crate::options::Plan`]): the kernels of
//! the GPU backend for a model on the GPU, compiled ops on the CPU, plain ops for
//! [`crate::options::Decode::Reference`]. The functions here take the path as an argument.
//!
//! # Compiled functions
//! Compiled closures are cached per thread (MLX keeps its compile cache per thread) and
//! per value of the constants they capture (head counts, `eps`); they are never freed
//! (a few per thread), which avoids racing MLX's own per-thread cache at thread exit.

use crate::error::{Error, Result};
use mlx_rs::fast::{CudaKernel, KernelBuilder, KernelConfig, MetalKernel, TemplateArg};
use mlx_rs::transforms::{compile, Closure};
use mlx_rs::{fast, ops, Array, Device, DeviceType, Dtype};
use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::rc::Rc;

// ---------------------------------------------------------------------------------------
// Kernel sources
// ---------------------------------------------------------------------------------------

/// The body shared by the CUDA and Metal step kernels (see the file for the contract).
pub const STEP_BODY: &str = include_str!("kernels/gated_delta_step.inc");
/// The body shared by the CUDA and Metal whole-layer decode kernels.
pub const DECODE_BODY: &str = include_str!("kernels/gated_delta_decode.inc");
/// Value helpers shared by both backends (rounding to a dtype, sigmoid, softplus, SiLU).
pub const COMMON_HEADER: &str = include_str!("kernels/gdn_common.h");
/// CUDA helpers (math functions, the warp sum), placed before [`COMMON_HEADER`].
pub const CUDA_HEADER: &str = include_str!("kernels/cuda_header.cuh");
/// Start of the CUDA step kernel: lane, value row and head from the launch indices.
pub const CUDA_PROLOGUE: &str = include_str!("kernels/cuda_prologue.inc");
/// Start of the CUDA decode kernel: lane, row group and head from the launch indices.
pub const CUDA_DECODE_PROLOGUE: &str = include_str!("kernels/cuda_decode_prologue.inc");
/// Metal helpers (math functions, the SIMD-group sum), placed before [`COMMON_HEADER`].
pub const METAL_HEADER: &str = include_str!("kernels/metal_header.h");
/// Start of the Metal step kernel: lane, value row and head from the thread position.
pub const METAL_PROLOGUE: &str = include_str!("kernels/metal_prologue.inc");
/// Start of the Metal decode kernel: lane, row group and head from the thread position.
pub const METAL_DECODE_PROLOGUE: &str = include_str!("kernels/metal_decode_prologue.inc");

/// Names of the step kernel's inputs, in the order [`gated_delta_kernel`] passes them.
pub const STEP_INPUTS: [&str; 6] = ["q", "k", "v", "g", "beta", "state_in"];
/// Names of the step kernel's outputs.
pub const STEP_OUTPUTS: [&str; 2] = ["y", "state_out"];
/// Names of the decode kernel's inputs, in the order [`delta_decode_kernel`] passes them.
pub const DECODE_INPUTS: [&str; 8] = [
    "qkv", "conv_in", "conv_w", "a", "b", "a_log", "dt_bias", "state_in",
];
/// Names of the decode kernel's outputs.
pub const DECODE_OUTPUTS: [&str; 3] = ["y", "state_out", "conv_out"];
/// Warps (SIMD groups) of 32 lanes per thread group (block), both kernels.
pub const WARPS_PER_GROUP: i32 = 4;
/// Value rows each warp of the decode kernel handles (it computes q and k once for them).
pub const DECODE_ROWS_PER_WARP: i32 = 4;

/// The CUDA step kernel body (prologue + shared body).
pub fn cuda_step_source() -> String {
    format!("{CUDA_PROLOGUE}\n{STEP_BODY}")
}

/// The Metal step kernel body (prologue + shared body).
pub fn metal_step_source() -> String {
    format!("{METAL_PROLOGUE}\n{STEP_BODY}")
}

/// The CUDA decode kernel body.
pub fn cuda_decode_source() -> String {
    format!("{CUDA_DECODE_PROLOGUE}\n{DECODE_BODY}")
}

/// The Metal decode kernel body.
pub fn metal_decode_source() -> String {
    format!("{METAL_DECODE_PROLOGUE}\n{DECODE_BODY}")
}

/// The header of a kernel for CUDA.
pub fn cuda_header() -> String {
    format!("{CUDA_HEADER}\n{COMMON_HEADER}")
}

/// A one-element fp32 array holding `value`, made once per thread and value: the small
/// constant inputs of the kernels (epsilons, scales), so that a decode step does not make
/// (allocate and copy) one per launch.
pub fn f32_constant(value: f32) -> Result<Array> {
    thread_local! {
        static CONSTANTS: std::cell::RefCell<std::collections::HashMap<u32, Array>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
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

/// The header of a kernel for Metal.
pub fn metal_header() -> String {
    format!("{METAL_HEADER}\n{COMMON_HEADER}")
}

// ---------------------------------------------------------------------------------------
// Path selection
// ---------------------------------------------------------------------------------------

/// How the gated delta step runs.
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
    /// The GPU kernel path of this platform (Metal on macOS, CUDA elsewhere) if the MLX
    /// loaded at run time has a GPU; `None` otherwise. Decided at run time, not from the
    /// backend MLX was built against: a binary built against the CPU library runs on the
    /// CUDA one unchanged.
    pub fn gpu_kernel() -> Option<StepPath> {
        if !Device::gpu().is_available() {
            None
        } else if cfg!(target_os = "macos") {
            Some(StepPath::MetalKernel)
        } else {
            Some(StepPath::CudaKernel)
        }
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
        matches!(self, StepPath::CudaKernel | StepPath::MetalKernel)
    }
}

// ---------------------------------------------------------------------------------------
// The gated delta step
// ---------------------------------------------------------------------------------------

/// Dimensions of a delta-rule call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StepDims {
    b: i32,
    t: i32,
    hk: i32,
    dk: i32,
    hv: i32,
    dv: i32,
}

fn shape_error(msg: String) -> Error {
    Error::InvalidArgument(format!("gated delta step: {msg}"))
}

/// Checks the shapes of a sequence call (`q`, `k` `[B, T, Hk, Dk]`, `v` `[B, T, Hv, Dv]`,
/// `g`, `beta` `[B, T, Hv]`, `state` `[B, Hv, Dv, Dk]`): the kernel trusts them.
fn check_seq(
    q: &Array,
    k: &Array,
    v: &Array,
    g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<StepDims> {
    let (&[b, t, hk, dk], &[vb, vt, hv, dv]) = (q.shape(), v.shape()) else {
        return Err(shape_error(format!(
            "q must be [B, T, Hk, Dk] and v [B, T, Hv, Dv], found {:?} and {:?}",
            q.shape(),
            v.shape()
        )));
    };
    let d = StepDims {
        b,
        t,
        hk,
        dk,
        hv,
        dv,
    };
    if (vb, vt) != (b, t) || k.shape() != q.shape() {
        return Err(shape_error(format!(
            "q {:?}, k {:?} and v {:?} disagree",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    if [b, t, hk, dk, hv, dv].iter().any(|&x| x <= 0) || hv % hk != 0 {
        return Err(shape_error(format!(
            "empty dimension or Hv = {hv} not a multiple of Hk = {hk}"
        )));
    }
    if g.shape() != [b, t, hv] || beta.shape() != [b, t, hv] {
        return Err(shape_error(format!(
            "g {:?} and beta {:?} must be [B, T, Hv] = {:?}",
            g.shape(),
            beta.shape(),
            [b, t, hv]
        )));
    }
    if state.shape() != [b, hv, dv, dk] {
        return Err(shape_error(format!(
            "state {:?} must be [B, Hv, Dv, Dk] = {:?}",
            state.shape(),
            [b, hv, dv, dk]
        )));
    }
    if state.dtype() != Dtype::Float32 {
        return Err(shape_error(format!(
            "state must be float32, found {:?}",
            state.dtype()
        )));
    }
    Ok(d)
}

/// Whether the GPU kernels take these dimensions (Dk a multiple of 32, grid within the
/// CUDA limits).
fn kernel_fits(d: StepDims) -> bool {
    d.dk % 32 == 0 && d.b * d.hv <= 65_535 && d.dv <= 65_535 * WARPS_PER_GROUP
}

/// One single-token gated delta step on `path`. A kernel path falls back to compiled ops
/// for dimensions the kernel does not take (Dk not a multiple of 32).
///
/// Shapes: `q`, `k` `[B, Hk, Dk]`; `v` `[B, Hv, Dv]`; `g` (decay), `beta` `[B, Hv]`;
/// `state` `[B, Hv, Dv, Dk]` fp32. Value head `j` reads key head `j / (Hv / Hk)`.
/// Returns `y` `[B, Hv, Dv]` in q's dtype and the new state.
pub fn gated_delta_step(
    path: StepPath,
    q: &Array,
    k: &Array,
    v: &Array,
    g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<(Array, Array)> {
    let expand = |a: &Array, what: &str| -> Result<Array> {
        let s = a.shape();
        match s.len() {
            2 => Ok(a.reshape(&[s[0], 1, s[1]])?),
            3 => Ok(a.reshape(&[s[0], 1, s[1], s[2]])?),
            _ => Err(shape_error(format!("{what} has shape {s:?}"))),
        }
    };
    if q.ndim() != 3 || v.ndim() != 3 || g.ndim() != 2 || beta.ndim() != 2 {
        return Err(shape_error(format!(
            "single step wants q, k [B, Hk, Dk], v [B, Hv, Dv], g, beta [B, Hv]; found q {:?}, v {:?}, g {:?}, beta {:?}",
            q.shape(),
            v.shape(),
            g.shape(),
            beta.shape()
        )));
    }
    let (q4, k4, v4) = (expand(q, "q")?, expand(k, "k")?, expand(v, "v")?);
    let (g3, b3) = (expand(g, "g")?, expand(beta, "beta")?);
    let d = check_seq(&q4, &k4, &v4, &g3, &b3, state)?;
    let path = match path {
        StepPath::CudaKernel | StepPath::MetalKernel if !kernel_fits(d) => StepPath::Compiled,
        p => p,
    };
    match path {
        StepPath::CudaKernel | StepPath::MetalKernel => {
            let (y, state) = launch(path, d, &q4, &k4, &v4, &g3, &b3, state)?;
            Ok((y.reshape(&[d.b, d.hv, d.dv])?, state))
        }
        StepPath::Compiled => {
            let out = compiled(
                "gated_delta_step",
                0,
                false,
                || step_ops,
                &[q, k, v, g, beta, state],
            )?;
            Ok((out[0].clone(), out[1].clone()))
        }
        StepPath::Ops => {
            let out = lift(step_ops(&[
                q.clone(),
                k.clone(),
                v.clone(),
                g.clone(),
                beta.clone(),
                state.clone(),
            ]))?;
            Ok((out[0].clone(), out[1].clone()))
        }
    }
}

/// The gated delta rule over `T` tokens in one launch of the GPU kernel `path`
/// ([`StepPath::CudaKernel`] or [`StepPath::MetalKernel`]): the sequential recurrence, one
/// warp per value row, the state in registers across tokens.
///
/// Shapes as [`super::deltanet::recurrence::gated_delta`]: `q`, `k` `[B, T, Hk, Dk]`;
/// `v` `[B, T, Hv, Dv]`; `g`, `beta` `[B, T, Hv]`; `state` `[B, Hv, Dv, Dk]` fp32.
/// Returns `y` `[B, T, Hv, Dv]` (q's dtype) and the new state. Errors for other paths,
/// for shapes that do not fit, and (when applied or evaluated) where MLX lacks the backend.
pub fn gated_delta_kernel(
    path: StepPath,
    q: &Array,
    k: &Array,
    v: &Array,
    g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<(Array, Array)> {
    let d = check_seq(q, k, v, g, beta, state)?;
    if !kernel_fits(d) {
        return Err(shape_error(format!(
            "the kernel needs Dk a multiple of 32 (found {}) and B·Hv ≤ 65535 (found {})",
            d.dk,
            d.b * d.hv
        )));
    }
    launch(path, d, q, k, v, g, beta, state)
}

/// A built kernel of either backend.
#[derive(Clone)]
enum GpuKernel {
    Cuda(Rc<CudaKernel>),
    Metal(Rc<MetalKernel>),
}

impl GpuKernel {
    fn apply(&self, inputs: &[&Array], config: &KernelConfig) -> Result<Vec<Array>> {
        Ok(match self {
            GpuKernel::Cuda(k) => k.apply(inputs, config)?,
            GpuKernel::Metal(k) => k.apply(inputs, config)?,
        })
    }
}

thread_local! {
    static KERNELS: RefCell<HashMap<(&'static str, bool), GpuKernel>> = RefCell::new(HashMap::new());
}

/// The kernel `name` for `path` (built on first use on this thread).
fn kernel(
    path: StepPath,
    name: &'static str,
    inputs: &[&str],
    outputs: &[&str],
    cuda_source: fn() -> String,
    metal_source: fn() -> String,
) -> Result<GpuKernel> {
    let cuda = match path {
        StepPath::CudaKernel => true,
        StepPath::MetalKernel => false,
        other => {
            return Err(Error::InvalidArgument(format!(
                "{name}: {other:?} is not a kernel path"
            )))
        }
    };
    KERNELS.with(|c| {
        if let Some(k) = c.borrow().get(&(name, cuda)) {
            return Ok(k.clone());
        }
        let (source, header) = if cuda {
            (cuda_source(), cuda_header())
        } else {
            (metal_source(), metal_header())
        };
        let builder = KernelBuilder::new(name, &source)
            .header(&header)
            .input_names(inputs)
            .output_names(outputs);
        let k = if cuda {
            GpuKernel::Cuda(Rc::new(builder.build_cuda()?))
        } else {
            GpuKernel::Metal(Rc::new(builder.build_metal()?))
        };
        c.borrow_mut().insert((name, cuda), k.clone());
        Ok(k)
    })
}

/// The launch configuration of the step kernel (grid in threads).
///
/// Every input dtype is a template argument, even where the body does not name it: MLX
/// caches a custom kernel's compiled module by its name, which holds the template
/// arguments but not the input dtypes that shape its signature.
fn launch_config(d: StepDims, x: [&Array; 5]) -> KernelConfig {
    let [q, k, v, g, beta] = x;
    KernelConfig::new([32, d.dv, d.b * d.hv], [32, WARPS_PER_GROUP, 1])
        .output(&[d.b, d.t, d.hv, d.dv], q.dtype())
        .output(&[d.b, d.hv, d.dv, d.dk], Dtype::Float32)
        .template("InT", TemplateArg::Dtype(q.dtype()))
        .template("KT", TemplateArg::Dtype(k.dtype()))
        .template("VT", TemplateArg::Dtype(v.dtype()))
        .template("GT", TemplateArg::Dtype(g.dtype()))
        .template("BetaT", TemplateArg::Dtype(beta.dtype()))
        .template("Dk", TemplateArg::Int(d.dk))
        .template("Dv", TemplateArg::Int(d.dv))
        .template("Hk", TemplateArg::Int(d.hk))
        .template("Hv", TemplateArg::Int(d.hv))
}

#[allow(clippy::too_many_arguments)]
fn launch(
    path: StepPath,
    d: StepDims,
    q: &Array,
    k: &Array,
    v: &Array,
    g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<(Array, Array)> {
    let kernel = kernel(
        path,
        "qwen3_5_gated_delta_step",
        &STEP_INPUTS,
        &STEP_OUTPUTS,
        cuda_step_source,
        metal_step_source,
    )?;
    let out = kernel.apply(
        &[q, k, v, g, beta, state],
        &launch_config(d, [q, k, v, g, beta]),
    )?;
    let mut out = out.into_iter();
    match (out.next(), out.next()) {
        (Some(y), Some(s)) => Ok((y, s)),
        _ => Err(Error::InvalidArgument(
            "gated delta kernel: expected two outputs".into(),
        )),
    }
}

/// The sequential step as ops, on `[q, k, v, g, beta, state]` (single-token shapes): the
/// same ops, in the same order, as one token of the reference recurrence.
fn step_ops(x: &[Array]) -> mlx_rs::Result<Vec<Array>> {
    let [q, k, v, g, beta, state] = x else {
        return Err(mlx_rs::Error::Closure(format!(
            "step: 6 inputs expected, got {}",
            x.len()
        )));
    };
    let (hk, hv) = (q.dim(1)?, v.dim(1)?);
    let (q, k) = if hv > hk {
        let r = hv / hk;
        (ops::repeat_axis(q, r, 1)?, ops::repeat_axis(k, r, 1)?)
    } else {
        (q.clone(), k.clone())
    };
    let state = state.multiply(&ops::expand_dims_axes(g, &[2, 3])?)?;
    let k_row = ops::expand_dims(&k, 2)?;
    let kv_mem = ops::sum_axis(&state.multiply(&k_row)?, -1, false)?;
    let delta = v.subtract(&kv_mem)?.multiply(&ops::expand_dims(beta, 2)?)?;
    let state = state.add(&k_row.multiply(&ops::expand_dims(&delta, 3)?)?)?;
    let y = ops::sum_axis(&state.multiply(&ops::expand_dims(&q, 2)?)?, -1, false)?;
    Ok(vec![y.astype(q.dtype())?, state])
}

// ---------------------------------------------------------------------------------------
// Compiled functions
// ---------------------------------------------------------------------------------------

/// (function, captured constants, stream the trace's ops run on).
type CompiledKey = (&'static str, u64, (bool, i32));

thread_local! {
    static COMPILED: RefCell<HashMap<CompiledKey, ManuallyDrop<Closure<'static>>>> =
        RefCell::new(HashMap::new());
}

/// The current stream as a cache key: (on the GPU, stream index).
fn stream_key() -> Result<(bool, i32)> {
    let s = mlx_rs::current_stream()?;
    Ok((s.device()?.kind()? == DeviceType::Gpu, s.index()?))
}

/// Calls the compiled form of the function `make()` builds, cached on this thread under
/// `(name, key)` and the current stream: `key` must change whenever a constant the
/// function captures does.
///
/// The stream is part of the key because a trace records the stream of each op, while
/// MLX looks its traces up by input shapes and *its* default device only, not by the
/// stream this crate's [`mlx_rs::with_stream`] / [`mlx_rs::with_device`] choose: one
/// closure per stream keeps a CPU trace from being replayed on a GPU stream.
pub(crate) fn compiled<F>(
    name: &'static str,
    key: u64,
    shapeless: bool,
    make: impl FnOnce() -> F,
    args: &[&Array],
) -> Result<Vec<Array>>
where
    F: FnMut(&[Array]) -> mlx_rs::Result<Vec<Array>> + 'static,
{
    let full_key = (name, key, stream_key()?);
    let f = COMPILED.with(|c| -> Result<Closure<'static>> {
        if let Some(f) = c.borrow().get(&full_key) {
            return Ok(Closure::clone(f));
        }
        let f = compile(make(), shapeless)?;
        c.borrow_mut()
            .insert(full_key, ManuallyDrop::new(f.clone()));
        Ok(f)
    })?;
    // `f` is a clone; dropping it after the call only releases this reference.
    Ok(f.call(args)?)
}

/// Turns this crate's error into one a compiled closure can return.
pub(crate) fn lift<T>(r: std::result::Result<T, impl Into<Error>>) -> mlx_rs::Result<T> {
    r.map_err(|e| match e.into() {
        Error::Mlx(e) => e,
        other => mlx_rs::Error::Closure(other.to_string()),
    })
}

fn f32_key(x: f32) -> u64 {
    x.to_bits() as u64
}

/// `x · sigmoid(x)`.
fn silu(x: &Array) -> mlx_rs::Result<Array> {
    x.multiply(&ops::sigmoid(x)?)
}

/// `silu(gate) · up`, compiled (shapeless: prefill and decode share one trace).
pub fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    let out = compiled(
        "swiglu",
        0,
        true,
        || |x: &[Array]| Ok(vec![silu(&x[0])?.multiply(&x[1])?]),
        &[gate, up],
    )?;
    Ok(out[0].clone())
}

/// `x · sigmoid(gate)` (the output gate of attention), compiled (shapeless).
pub fn sigmoid_gate(x: &Array, gate: &Array) -> Result<Array> {
    let out = compiled(
        "sigmoid_gate",
        0,
        true,
        || |x: &[Array]| Ok(vec![x[0].multiply(&ops::sigmoid(&x[1])?)?]),
        &[x, gate],
    )?;
    Ok(out[0].clone())
}

/// `rms_norm(x) · w` (`w` already `1 + w` for the zero-centred norms), compiled: on the
/// CPU MLX runs the norm as element-wise ops and a mean, which compile fuses; on the GPU
/// it stays MLX's own norm kernel.
pub fn rms_norm(x: &Array, w: &Array, eps: f32) -> Result<Array> {
    let out = compiled(
        "rms_norm",
        f32_key(eps),
        false,
        || move |x: &[Array]| Ok(vec![fast::rms_norm(&x[0], Some(&x[1]), eps)?]),
        &[x, w],
    )?;
    Ok(out[0].clone())
}

/// The residual add and the following norm: `(h + r, rms_norm(h + r) · w)`, compiled.
pub fn add_rms_norm(h: &Array, r: &Array, w: &Array, eps: f32) -> Result<(Array, Array)> {
    let out = compiled(
        "add_rms_norm",
        f32_key(eps),
        false,
        || {
            move |x: &[Array]| {
                let h = x[0].add(&x[1])?;
                let n = fast::rms_norm(&h, Some(&x[2]), eps)?;
                Ok(vec![h, n])
            }
        },
        &[h, r, w],
    )?;
    Ok((out[0].clone(), out[1].clone()))
}

/// The gated output norm of DeltaNet, `rmsnorm(o) · w · silu(z)` per head (the product
/// in fp32, as [`super::deltanet`] does), compiled.
pub fn gated_rms_norm(o: &Array, z: &Array, w: &Array, eps: f32) -> Result<Array> {
    let out = compiled(
        "gated_rms_norm",
        f32_key(eps),
        false,
        || {
            move |x: &[Array]| {
                lift(super::deltanet::gated_rms_norm(&x[0], &x[1], &x[2], eps)).map(|o| vec![o])
            }
        },
        &[o, z, w],
    )?;
    Ok(out[0].clone())
}

/// Head layout of a DeltaNet layer (the constants its compiled decode inputs capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeltaHeads {
    /// Key heads.
    pub hk: i32,
    /// Value heads.
    pub hv: i32,
    /// Key head dim.
    pub dk: i32,
    /// Value head dim.
    pub dv: i32,
}

impl DeltaHeads {
    fn key(self) -> u64 {
        let f = |x: i32| (x as u16) as u64;
        f(self.hk) | f(self.hv) << 16 | f(self.dk) << 32 | f(self.dv) << 48
    }
}

/// The inputs of one decode step of the delta rule, from the layer's projections:
/// the causal depthwise conv over the carried inputs and the new one (as an fp32
/// multiply-sum over the taps, which is what MLX's conv computes), SiLU, the split into
/// q, k, v, their L2 norms, and the gates.
///
/// Shapes: `qkv` `[B, 1, C]`, `conv_state` `[B, K − 1, C]`, `conv_weight` `[C, K, 1]`,
/// `a`, `b` `[B, 1, Hv]`, `a_log`, `dt_bias` `[Hv]`. Returns `q`, `k` `[B, Hk, Dk]`,
/// `v` `[B, Hv, Dv]`, `g`, `beta` `[B, Hv]` and the new conv state `[B, K − 1, C]`.
#[allow(clippy::too_many_arguments)]
pub fn delta_decode_inputs(
    heads: DeltaHeads,
    qkv: &Array,
    conv_state: &Array,
    conv_weight: &Array,
    a: &Array,
    b: &Array,
    a_log: &Array,
    dt_bias: &Array,
) -> Result<[Array; 6]> {
    let out = compiled(
        "delta_decode_inputs",
        heads.key(),
        false,
        || move |x: &[Array]| decode_inputs_ops(heads, x),
        &[qkv, conv_state, conv_weight, a, b, a_log, dt_bias],
    )?;
    out.try_into().map_err(|v: Vec<Array>| {
        Error::InvalidArgument(format!("decode inputs: {} outputs", v.len()))
    })
}

fn decode_inputs_ops(h: DeltaHeads, x: &[Array]) -> mlx_rs::Result<Vec<Array>> {
    let [qkv, conv_state, w, a, b, a_log, dt_bias] = x else {
        return Err(mlx_rs::Error::Closure(format!(
            "decode inputs: 7 inputs expected, got {}",
            x.len()
        )));
    };
    let (bsz, c, taps) = (qkv.dim(0)?, w.dim(0)?, w.dim(1)?);
    let conv_input = ops::concatenate_axis(&[conv_state, qkv], 1)?;
    let new_state = ops::contiguous(
        &ops::slice(&conv_input, &[0, 1, 0], &[bsz, taps, c], &[1, 1, 1])?,
        false,
    )?;
    let w_t = w.reshape(&[c, taps])?.transpose()?.astype(Dtype::Float32)?;
    let conv = ops::sum_axis(
        &conv_input.astype(Dtype::Float32)?.multiply(&w_t)?,
        1,
        false,
    )?;
    let conv = silu(&conv.astype(qkv.dtype())?)?;
    let key_dim = h.hk * h.dk;
    let parts = ops::split_sections(&conv, &[key_dim, 2 * key_dim], -1)?;
    let q = parts[0].reshape(&[bsz, h.hk, h.dk])?;
    let k = parts[1].reshape(&[bsz, h.hk, h.dk])?;
    let v = parts[2].reshape(&[bsz, h.hv, h.dv])?;
    let (q, k) = lift(super::deltanet::normalize_qk(&q, &k, h.dk))?;
    let beta = ops::sigmoid(b)?.reshape(&[bsz, h.hv])?;
    let g = lift(super::deltanet::decay(a_log, a, dt_bias))?.reshape(&[bsz, h.hv])?;
    Ok(vec![q, k, v, g, beta, new_state])
}

// ---------------------------------------------------------------------------------------
// The whole single-token DeltaNet update
// ---------------------------------------------------------------------------------------

/// The dtype of `a + dt_bias` under MLX's promotion (the same dtype, else fp32 for any
/// mix of float types).
fn gate_dtype(a: Dtype, dt_bias: Dtype) -> Dtype {
    if a == dt_bias {
        a
    } else {
        Dtype::Float32
    }
}

/// Checks the inputs of [`delta_decode_kernel`]; returns `(B, K)`, or an error naming the
/// mismatch (the kernel trusts every shape and dtype it is given).
#[allow(clippy::too_many_arguments)]
fn check_decode(
    h: DeltaHeads,
    qkv: &Array,
    conv_state: &Array,
    conv_weight: &Array,
    a: &Array,
    b: &Array,
    a_log: &Array,
    dt_bias: &Array,
    state: &Array,
) -> Result<(i32, i32)> {
    let bad = |m: String| Error::InvalidArgument(format!("gated delta decode: {m}"));
    if [h.hk, h.hv, h.dk, h.dv].iter().any(|&x| x <= 0) || h.hv % h.hk != 0 {
        return Err(bad(format!("bad head layout {h:?}")));
    }
    let c = 2 * h.hk * h.dk + h.hv * h.dv;
    // [B, 1, C] (a [B, 1, Hv]) or, with the length axis dropped, [B, C] (a [B, Hv]).
    let (bsz, qc, lead) = match *qkv.shape() {
        [bsz, 1, qc] => (bsz, qc, vec![bsz, 1]),
        [bsz, qc] => (bsz, qc, vec![bsz]),
        _ => {
            return Err(bad(format!(
                "qkv {:?} must be [B, 1, C] or [B, C]",
                qkv.shape()
            )))
        }
    };
    let &[wc, taps, w1] = conv_weight.shape() else {
        return Err(bad(format!(
            "conv weight {:?} must be [C, K, 1]",
            conv_weight.shape()
        )));
    };
    if qc != c || wc != c || w1 != 1 || taps < 2 || bsz <= 0 {
        return Err(bad(format!(
            "qkv {:?} and conv weight {:?} must be [B, 1, {c}] and [{c}, K ≥ 2, 1]",
            qkv.shape(),
            conv_weight.shape()
        )));
    }
    let gates = [lead.as_slice(), &[h.hv]].concat();
    let checks: [(&str, &Array, Vec<i32>); 6] = [
        ("conv state", conv_state, vec![bsz, taps - 1, c]),
        ("a", a, gates.clone()),
        ("b", b, gates),
        ("A_log", a_log, vec![h.hv]),
        ("dt_bias", dt_bias, vec![h.hv]),
        ("state", state, vec![bsz, h.hv, h.dv, h.dk]),
    ];
    for (what, x, want) in &checks {
        if x.shape() != want.as_slice() {
            return Err(bad(format!("{what} {:?} must be {want:?}", x.shape())));
        }
    }
    let act = qkv.dtype();
    if !matches!(act, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) {
        return Err(bad(format!(
            "activations must be a float type, found {act:?}"
        )));
    }
    for (what, x) in [
        ("conv state", conv_state),
        ("conv weight", conv_weight),
        ("a", a),
        ("b", b),
    ] {
        if x.dtype() != act {
            return Err(bad(format!("{what} is {:?}, qkv {act:?}", x.dtype())));
        }
    }
    if state.dtype() != Dtype::Float32
        || !matches!(
            dt_bias.dtype(),
            Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16
        )
    {
        return Err(bad("state must be float32 and dt_bias a float type".into()));
    }
    let d = StepDims {
        b: bsz,
        t: 1,
        hk: h.hk,
        dk: h.dk,
        hv: h.hv,
        dv: h.dv,
    };
    if !kernel_fits(d) {
        return Err(bad(format!(
            "the kernel needs Dk a multiple of 32 (found {})",
            h.dk
        )));
    }
    Ok((bsz, taps))
}

/// One token of a Gated DeltaNet layer in one launch of the GPU kernel `path`: from the
/// projections (`qkv` `[B, 1, C]`, `a`, `b` `[B, 1, Hv]`), the carried conv inputs
/// (`conv_state` `[B, K − 1, C]`), the conv taps (`[C, K, 1]`), `a_log`, `dt_bias`
/// (`[Hv]`) and the fp32 state, to `y` `[B, 1, Hv, Dv]` (before the gated norm), the new
/// state and the new conv state. Computes what [`delta_decode_inputs`] followed by
/// [`gated_delta_step`] computes (rounding to the activation dtype at the same points).
///
/// Needs `qkv`, `conv_state`, the taps, `a` and `b` in one float dtype, Dk a multiple
/// of 32, K ≥ 2; errors otherwise (see [`delta_decode`], which falls back).
#[allow(clippy::too_many_arguments)]
pub fn delta_decode_kernel(
    path: StepPath,
    heads: DeltaHeads,
    qkv: &Array,
    conv_state: &Array,
    conv_weight: &Array,
    a: &Array,
    b: &Array,
    a_log: &Array,
    dt_bias: &Array,
    state: &Array,
) -> Result<(Array, Array, Array)> {
    let checked = check_decode(
        heads,
        qkv,
        conv_state,
        conv_weight,
        a,
        b,
        a_log,
        dt_bias,
        state,
    )?;
    launch_decode(
        path,
        heads,
        checked,
        [qkv, conv_state, conv_weight, a, b, a_log, dt_bias, state],
    )
}

/// [`delta_decode_kernel`] after [`check_decode`] accepted the inputs (`checked` is what
/// it returned; `x` in the order of [`DECODE_INPUTS`]).
fn launch_decode(
    path: StepPath,
    heads: DeltaHeads,
    checked: (i32, i32),
    x: [&Array; 8],
) -> Result<(Array, Array, Array)> {
    let [qkv, conv_state, conv_weight, a, b, a_log, dt_bias, state] = x;
    let (bsz, taps) = checked;
    let DeltaHeads { hk, hv, dk, dv } = heads;
    let c = 2 * hk * dk + hv * dv;
    let act = qkv.dtype();
    let row_groups = (dv + DECODE_ROWS_PER_WARP - 1) / DECODE_ROWS_PER_WARP;
    let gate = gate_dtype(a.dtype(), dt_bias.dtype());
    let y_shape: &[i32] = if qkv.ndim() == 3 {
        &[bsz, 1, hv, dv]
    } else {
        &[bsz, hv, dv]
    };
    let config = KernelConfig::new([32, row_groups, bsz * hv], [32, WARPS_PER_GROUP, 1])
        .output(y_shape, act)
        .output(&[bsz, hv, dv, dk], Dtype::Float32)
        .output(&[bsz, taps - 1, c], act)
        .template("InT", TemplateArg::Dtype(act))
        .template(
            "GateT",
            TemplateArg::Dtype(gate_dtype(a.dtype(), dt_bias.dtype())),
        )
        .template("Dk", TemplateArg::Int(dk))
        .template("Dv", TemplateArg::Int(dv))
        .template("Hk", TemplateArg::Int(hk))
        .template("Hv", TemplateArg::Int(hv))
        .template("K", TemplateArg::Int(taps))
        .template("ROWS", TemplateArg::Int(DECODE_ROWS_PER_WARP));
    let kernel = kernel(
        path,
        "qwen3_5_gated_delta_decode",
        &DECODE_INPUTS,
        &DECODE_OUTPUTS,
        cuda_decode_source,
        metal_decode_source,
    )?;
    // Fixed dtypes for these two (exact casts: GateT is dt_bias's own dtype or fp32), so
    // that the kernel's name (which holds InT and GateT) fixes its whole signature.
    let a_log = a_log.astype(Dtype::Float32)?;
    let dt_bias = dt_bias.astype(gate)?;
    let out = kernel.apply(
        &[qkv, conv_state, conv_weight, a, b, &a_log, &dt_bias, state],
        &config,
    )?;
    let mut out = out.into_iter();
    match (out.next(), out.next(), out.next()) {
        (Some(y), Some(s), Some(conv)) => Ok((y, s, conv)),
        _ => Err(Error::InvalidArgument(
            "gated delta decode: expected three outputs".into(),
        )),
    }
}

/// One token of a Gated DeltaNet layer (shapes as [`delta_decode_kernel`]) on `path`:
/// on a kernel path the whole-layer kernel when the inputs fit it, else the compiled
/// inputs ([`delta_decode_inputs`]) and the step ([`gated_delta_step`], itself a kernel
/// on a kernel path). Returns `y` `[B, 1, Hv, Dv]` (`[B, Hv, Dv]` for a `[B, C]` `qkv`),
/// the new state and the new conv state.
#[allow(clippy::too_many_arguments)]
pub fn delta_decode(
    path: StepPath,
    heads: DeltaHeads,
    qkv: &Array,
    conv_state: &Array,
    conv_weight: &Array,
    a: &Array,
    b: &Array,
    a_log: &Array,
    dt_bias: &Array,
    state: &Array,
) -> Result<(Array, Array, Array)> {
    if path.is_kernel() {
        if let Ok(checked) = check_decode(
            heads,
            qkv,
            conv_state,
            conv_weight,
            a,
            b,
            a_log,
            dt_bias,
            state,
        ) {
            let x = [qkv, conv_state, conv_weight, a, b, a_log, dt_bias, state];
            return launch_decode(path, heads, checked, x);
        }
    }
    let bsz = qkv.dim(0)?;
    // The compiled inputs take the [B, 1, ..] forms.
    let (qkv3, a3, b3);
    let (qkv, a, b, y_shape): (&Array, &Array, &Array, &[i32]) = if qkv.ndim() == 2 {
        qkv3 = ops::expand_dims(qkv, 1)?;
        a3 = ops::expand_dims(a, 1)?;
        b3 = ops::expand_dims(b, 1)?;
        (&qkv3, &a3, &b3, &[bsz, heads.hv, heads.dv])
    } else {
        (qkv, a, b, &[bsz, 1, heads.hv, heads.dv])
    };
    let [q, k, v, g, beta, conv] =
        delta_decode_inputs(heads, qkv, conv_state, conv_weight, a, b, a_log, dt_bias)?;
    let (y, state) = gated_delta_step(path, &q, &k, &v, &g, &beta, state)?;
    Ok((y.reshape(y_shape)?, state, conv))
}
