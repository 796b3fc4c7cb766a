//! Fused single-token (decode) forms: the gated delta step as one custom kernel on the GPU
//! (CUDA or Metal, picked at run time) or as compiled ops on the CPU, and compiled graphs
//! for the element-wise chains of a decode step (norms, gates, activations).
//!
//! Everything here computes the same values as the plain ops of [`super::deltanet`],
//! [`super::attention`] and [`super::mlp`] (which stay the reference and the prefill path),
//! up to the order of fp32 sums inside the kernel.
//!
//! # Choosing a path
//! [`DecodeMode`] says what a single-token forward uses: [`DecodeMode::Fused`] (the
//! default), or [`DecodeMode::Ops`] (the plain reference ops). The environment variable
//! `QWEN3_5_DECODE` sets the process default (`fused`, `compiled` = fused but the
//! delta step as compiled ops even on a GPU, or `ops`); [`with_decode_mode`] overrides it
//! on the current thread. Within the fused mode, [`StepPath::current`] picks the kernel
//! of the GPU backend when the current stream is on the GPU, else the compiled ops.
//!
//! # Compiled functions
//! Compiled closures are cached per thread (MLX keeps its compile cache per thread) and
//! per value of the constants they capture (head counts, `eps`); they are never freed
//! (a few per thread), which avoids racing MLX's own per-thread cache at thread exit.

use crate::error::{Error, Result};
use mlx_rs::fast::{CudaKernel, KernelBuilder, KernelConfig, MetalKernel, TemplateArg};
use mlx_rs::transforms::{compile, Closure};
use mlx_rs::{fast, ops, Array, DeviceType, Dtype};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------
// Kernel sources
// ---------------------------------------------------------------------------------------

/// The body shared by the CUDA and Metal step kernels (see the file for the contract).
pub const STEP_BODY: &str = include_str!("kernels/gated_delta_step.inc");
/// Helpers placed before the CUDA kernel (the warp sum).
pub const CUDA_HEADER: &str = include_str!("kernels/cuda_header.cuh");
/// Start of the CUDA kernel body: lane, value row and head from the launch indices.
pub const CUDA_PROLOGUE: &str = include_str!("kernels/cuda_prologue.inc");
/// Helpers placed before the Metal kernel (the SIMD-group sum).
pub const METAL_HEADER: &str = include_str!("kernels/metal_header.h");
/// Start of the Metal kernel body: lane, value row and head from the thread position.
pub const METAL_PROLOGUE: &str = include_str!("kernels/metal_prologue.inc");

/// Names of the kernels' inputs, in the order [`gated_delta_kernel`] passes them.
pub const STEP_INPUTS: [&str; 6] = ["q", "k", "v", "g", "beta", "state_in"];
/// Names of the kernels' outputs.
pub const STEP_OUTPUTS: [&str; 2] = ["y", "state_out"];
/// Value rows per thread group (block): 4 warps / SIMD groups of 32 lanes.
pub const ROWS_PER_GROUP: i32 = 4;

/// The CUDA kernel body (prologue + shared body).
pub fn cuda_step_source() -> String {
    format!("{CUDA_PROLOGUE}\n{STEP_BODY}")
}

/// The Metal kernel body (prologue + shared body).
pub fn metal_step_source() -> String {
    format!("{METAL_PROLOGUE}\n{STEP_BODY}")
}

// ---------------------------------------------------------------------------------------
// Path selection
// ---------------------------------------------------------------------------------------

/// What a single-token forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeMode {
    /// Fused kernel / compiled graphs, the delta step through [`StepPath::current`].
    Fused,
    /// Like `Fused`, but the delta step always as compiled ops (to compare with the
    /// kernel on a GPU).
    Compiled,
    /// The plain ops of the reference forward pass.
    Ops,
}

impl DecodeMode {
    /// The process default: `QWEN3_5_DECODE` (`fused`, `compiled`, `ops`), else `Fused`.
    /// An unknown value is reported once on stderr and ignored.
    pub fn from_env() -> DecodeMode {
        static MODE: OnceLock<DecodeMode> = OnceLock::new();
        *MODE.get_or_init(|| match std::env::var("QWEN3_5_DECODE") {
            Err(_) => DecodeMode::Fused,
            Ok(v) => match v.as_str() {
                "" | "fused" | "kernel" => DecodeMode::Fused,
                "compiled" => DecodeMode::Compiled,
                "ops" => DecodeMode::Ops,
                other => {
                    eprintln!("QWEN3_5_DECODE={other:?} is not one of fused, compiled, ops: using fused");
                    DecodeMode::Fused
                }
            },
        })
    }

    /// The mode in force on this thread ([`with_decode_mode`], else [`DecodeMode::from_env`]).
    pub fn current() -> DecodeMode {
        MODE_OVERRIDE
            .with(|m| m.get())
            .unwrap_or_else(DecodeMode::from_env)
    }

    /// Whether single-token steps take the fused forms.
    pub fn is_fused(self) -> bool {
        self != DecodeMode::Ops
    }
}

thread_local! {
    static MODE_OVERRIDE: Cell<Option<DecodeMode>> = const { Cell::new(None) };
}

/// Runs `f` with `mode` as this thread's [`DecodeMode`] (restored afterwards, also on panic).
pub fn with_decode_mode<R>(mode: DecodeMode, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<DecodeMode>);
    impl Drop for Restore {
        fn drop(&mut self) {
            MODE_OVERRIDE.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MODE_OVERRIDE.with(|m| m.replace(Some(mode))));
    f()
}

/// How the gated delta step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        static GPU: OnceLock<Option<StepPath>> = OnceLock::new();
        *GPU.get_or_init(|| {
            if !mlx_rs::Device::gpu().is_available() {
                None
            } else if cfg!(target_os = "macos") {
                Some(StepPath::MetalKernel)
            } else {
                Some(StepPath::CudaKernel)
            }
        })
    }

    /// The path for the current stream and [`DecodeMode`]: the GPU kernel when the stream
    /// is on the GPU (and the mode is `Fused`), compiled ops on the CPU, plain ops in
    /// `Ops` mode.
    pub fn current() -> StepPath {
        match DecodeMode::current() {
            DecodeMode::Ops => StepPath::Ops,
            DecodeMode::Compiled => StepPath::Compiled,
            DecodeMode::Fused => {
                let on_gpu = mlx_rs::current_stream()
                    .and_then(|s| s.device())
                    .and_then(|d| d.kind())
                    .map(|k| k == DeviceType::Gpu)
                    .unwrap_or(false);
                match (on_gpu, StepPath::gpu_kernel()) {
                    (true, Some(kernel)) => kernel,
                    _ => StepPath::Compiled,
                }
            }
        }
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
    d.dk % 32 == 0 && d.b * d.hv <= 65_535 && d.dv <= 65_535 * ROWS_PER_GROUP
}

/// One single-token gated delta step on the path for the current device
/// ([`StepPath::current`]).
///
/// Shapes: `q`, `k` `[B, Hk, Dk]`; `v` `[B, Hv, Dv]`; `g` (decay), `beta` `[B, Hv]`;
/// `state` `[B, Hv, Dv, Dk]` fp32. Value head `j` reads key head `j / (Hv / Hk)`.
/// Returns `y` `[B, Hv, Dv]` in q's dtype and the new state.
pub fn gated_delta_step(
    q: &Array,
    k: &Array,
    v: &Array,
    g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<(Array, Array)> {
    gated_delta_step_with(StepPath::current(), q, k, v, g, beta, state)
}

/// [`gated_delta_step`] on a given path. A kernel path falls back to compiled ops for
/// dimensions the kernel does not take (Dk not a multiple of 32).
pub fn gated_delta_step_with(
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

thread_local! {
    static CUDA_KERNEL: RefCell<Option<Rc<CudaKernel>>> = const { RefCell::new(None) };
    static METAL_KERNEL: RefCell<Option<Rc<MetalKernel>>> = const { RefCell::new(None) };
}

fn builder(source: String, header: &str) -> KernelBuilder {
    KernelBuilder::new("qwen3_5_gated_delta_step", &source)
        .header(header)
        .input_names(&STEP_INPUTS)
        .output_names(&STEP_OUTPUTS)
}

/// The launch configuration shared by both backends (grid in threads).
fn launch_config(d: StepDims, in_dtype: Dtype) -> KernelConfig {
    KernelConfig::new([32, d.dv, d.b * d.hv], [32, ROWS_PER_GROUP, 1])
        .output(&[d.b, d.t, d.hv, d.dv], in_dtype)
        .output(&[d.b, d.hv, d.dv, d.dk], Dtype::Float32)
        .template("InT", TemplateArg::Dtype(in_dtype))
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
    let inputs = [q, k, v, g, beta, state];
    let config = launch_config(d, q.dtype());
    let out = match path {
        StepPath::CudaKernel => {
            let kernel = CUDA_KERNEL.with(|c| -> Result<Rc<CudaKernel>> {
                if let Some(k) = c.borrow().as_ref() {
                    return Ok(Rc::clone(k));
                }
                let k = Rc::new(builder(cuda_step_source(), CUDA_HEADER).build_cuda()?);
                *c.borrow_mut() = Some(Rc::clone(&k));
                Ok(k)
            })?;
            kernel.apply(&inputs, &config)?
        }
        StepPath::MetalKernel => {
            let kernel = METAL_KERNEL.with(|c| -> Result<Rc<MetalKernel>> {
                if let Some(k) = c.borrow().as_ref() {
                    return Ok(Rc::clone(k));
                }
                let k = Rc::new(builder(metal_step_source(), METAL_HEADER).build_metal()?);
                *c.borrow_mut() = Some(Rc::clone(&k));
                Ok(k)
            })?;
            kernel.apply(&inputs, &config)?
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "gated delta kernel: {other:?} is not a kernel path"
            )))
        }
    };
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

type CompiledKey = (&'static str, u64);

thread_local! {
    static COMPILED: RefCell<HashMap<CompiledKey, ManuallyDrop<Closure<'static>>>> =
        RefCell::new(HashMap::new());
}

/// Calls the compiled form of the function `make()` builds, cached on this thread under
/// `(name, key)`: `key` must change whenever a constant the function captures does.
fn compiled<F>(
    name: &'static str,
    key: u64,
    shapeless: bool,
    make: impl FnOnce() -> F,
    args: &[&Array],
) -> Result<Vec<Array>>
where
    F: FnMut(&[Array]) -> mlx_rs::Result<Vec<Array>> + 'static,
{
    let f = COMPILED.with(|c| -> Result<Closure<'static>> {
        if let Some(f) = c.borrow().get(&(name, key)) {
            return Ok(Closure::clone(f));
        }
        let f = compile(make(), shapeless)?;
        c.borrow_mut()
            .insert((name, key), ManuallyDrop::new(f.clone()));
        Ok(f)
    })?;
    let out = f.call(args)?;
    // `f` is a clone; dropping it only releases this reference.
    Ok(out)
}

/// Turns this crate's error into one a compiled closure can return.
fn lift<T>(r: std::result::Result<T, impl Into<Error>>) -> mlx_rs::Result<T> {
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
