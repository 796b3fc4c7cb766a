//! The GPU kernels of the gated delta rule: their CUDA and Metal sources (one shared body
//! each in `mlx-lm/kernels/*.inc`, a short prologue per backend), the shape checks they
//! rely on, and the launches: the gated delta step over `T ≥ 1` tokens
//! ([`gated_delta_kernel`]) and the whole-layer Gated DeltaNet decode
//! ([`delta_decode_kernel`]).

use super::options::DeltaHeads;
use crate::error::{Error, Result};
use crate::kernels::gpu::{self, GpuBackend};
use mlx_rs::fast::{KernelConfig, TemplateArg};
use mlx_rs::{Array, Dtype};

/// The body shared by the CUDA and Metal step kernels (see the file for the contract).
pub const STEP_BODY: &str = include_str!("../../../kernels/gated_delta_step.inc");
/// The body shared by the CUDA and Metal whole-layer decode kernels.
pub const DECODE_BODY: &str = include_str!("../../../kernels/gated_delta_decode.inc");
/// Start of the CUDA step kernel: lane, warp, first value row of the block and head from the
/// launch indices.
pub const CUDA_PROLOGUE: &str = include_str!("../../../kernels/cuda_prologue.inc");
/// Start of the CUDA decode kernel: lane, row group and head from the launch indices.
pub const CUDA_DECODE_PROLOGUE: &str = include_str!("../../../kernels/cuda_decode_prologue.inc");
/// Start of the Metal step kernel: lane, SIMD group, first value row of the group and head
/// from the thread position.
pub const METAL_PROLOGUE: &str = include_str!("../../../kernels/metal_prologue.inc");
/// Start of the Metal decode kernel: lane, row group and head from the thread position.
pub const METAL_DECODE_PROLOGUE: &str = include_str!("../../../kernels/metal_decode_prologue.inc");

/// Names of the step kernel's inputs, in the order [`gated_delta_kernel`] passes them.
pub const STEP_INPUTS: [&str; 6] = ["q", "k", "v", "g", "beta", "state_in"];
/// Names of the step kernel's outputs.
pub const STEP_OUTPUTS: [&str; 2] = ["y", "state_out"];
/// Names of the decode kernel's inputs, in the order [`delta_decode_kernel`] passes them.
pub const DECODE_INPUTS: [&str; 7] = [
    "proj", "conv_in", "conv_w", "a_log", "dt_bias", "norm_w", "state_in",
];
/// Names of the decode kernel's outputs.
pub const DECODE_OUTPUTS: [&str; 3] = ["out", "state_out", "conv_out"];
/// Warps (SIMD groups) per block of the step kernel: the value rows that share each
/// round's keys and queries in shared memory (at 2,048 tokens, one 2B layer's launch on
/// an H100 took 825 µs with 8 warps and 32 tokens per round against 916 with 4; 904 with
/// 16 warps and 16 tokens; session 22).
pub const STEP_WARPS: i32 = 8;

/// The step kernel body for `backend` (prologue + shared body).
pub fn step_source(backend: GpuBackend) -> String {
    match backend {
        GpuBackend::Cuda => cuda_step_source(),
        GpuBackend::Metal => metal_step_source(),
    }
}

/// The decode kernel body for `backend` (prologue + shared body).
pub fn decode_source(backend: GpuBackend) -> String {
    match backend {
        GpuBackend::Cuda => cuda_decode_source(),
        GpuBackend::Metal => metal_decode_source(),
    }
}

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

/// Dimensions of a delta-rule call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StepDims {
    pub(super) b: i32,
    pub(super) t: i32,
    pub(super) hk: i32,
    pub(super) dk: i32,
    pub(super) hv: i32,
    pub(super) dv: i32,
}

pub(super) fn shape_error(msg: String) -> Error {
    Error::InvalidArgument(format!("gated delta step: {msg}"))
}

/// Checks the shapes of a sequence call (`q`, `k` `[B, T, Hk, Dk]`, `v` `[B, T, Hv, Dv]`,
/// `g`, `beta` `[B, T, Hv]`, `state` `[B, Hv, Dv, Dk]`): the kernel trusts them.
pub(super) fn check_seq(
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

/// The largest key head the kernels take: the step kernel stages at least one token's
/// fp32 keys and queries in shared memory, which must stay within Metal's 32 KB.
pub const MAX_DK: i32 = 2048;

/// Whether the step kernel takes these dimensions (Dk a multiple of 32 up to [`MAX_DK`],
/// grid within the CUDA limits).
pub(super) fn kernel_fits(d: StepDims) -> bool {
    d.dk % 32 == 0 && d.dk <= MAX_DK && d.b * d.hv <= 65_535 && d.dv <= 65_535 * STEP_WARPS
}

/// The gated delta rule over `T` tokens in one launch of the GPU kernel of `backend`: the
/// sequential recurrence, one warp per value row, the state in registers across tokens,
/// blocks of [`STEP_WARPS`] rows staging the tokens' keys and queries in shared memory.
///
/// Shapes as [`super::ops::gated_delta_sequential`]: `q`, `k` `[B, T, Hk, Dk]`;
/// `v` `[B, T, Hv, Dv]`; `g`, `beta` `[B, T, Hv]`; `state` `[B, Hv, Dv, Dk]` fp32.
/// Returns `y` `[B, T, Hv, Dv]` (q's dtype) and the new state. Errors for shapes that do not fit, and (when applied or evaluated) where MLX lacks the backend.
pub fn gated_delta_kernel(
    backend: GpuBackend,
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
            "the kernel needs Dk a multiple of 32 up to {MAX_DK} (found {}) and B·Hv ≤ 65535 (found {})",
            d.dk,
            d.b * d.hv
        )));
    }
    launch(backend, d, q, k, v, g, beta, state)
}

/// The launch configuration of the step kernel (grid in threads).
///
/// Every input dtype is a template argument, even where the body does not name it: MLX
/// caches a custom kernel's compiled module by its name, which holds the template
/// arguments but not the input dtypes that shape its signature.
fn launch_config(d: StepDims, x: [&Array; 5]) -> KernelConfig {
    let [q, k, v, g, beta] = x;
    // Whole blocks: the block meets at barriers (rows past Dv store nothing).
    let rows = (d.dv + STEP_WARPS - 1) / STEP_WARPS * STEP_WARPS;
    KernelConfig::new([32, rows, d.b * d.hv], [32, STEP_WARPS, 1])
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
        .template("W", TemplateArg::Int(STEP_WARPS))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn launch(
    backend: GpuBackend,
    d: StepDims,
    q: &Array,
    k: &Array,
    v: &Array,
    g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<(Array, Array)> {
    let kernel = gpu::kernel(
        backend,
        "gated_delta_step",
        &STEP_INPUTS,
        &STEP_OUTPUTS,
        step_source,
    )?;
    let out = kernel.apply(
        &[q, k, v, g, beta, state],
        &launch_config(d, [q, k, v, g, beta]),
    )?;
    let [y, state] = gpu::outputs(out, "gated delta kernel")?;
    Ok((y, state))
}

/// The dtype of `a + dt_bias` under MLX's promotion (the same dtype, else fp32 for any
/// mix of float types).
fn gate_dtype(a: Dtype, dt_bias: Dtype) -> Dtype {
    if a == dt_bias {
        a
    } else {
        Dtype::Float32
    }
}

/// The arrays of one whole-layer decode step of a Gated DeltaNet layer: what
/// [`delta_decode_kernel`] and [`super::gated_delta_decode`] take.
#[derive(Clone, Copy)]
pub struct DecodeLayer<'a> {
    /// The token's joined input projections `[B, 1, P]` or `[B, P]`: `[qkv | z | b | a]`
    /// with `qkv` the `C = 2·Hk·Dk + Hv·Dv` conv inputs, `z` the `Hv·Dv` gate of the output
    /// norm, `b` and `a` the `Hv` write-strength and decay inputs (`P = C + Hv·Dv + 2·Hv`).
    pub proj: &'a Array,
    /// The carried conv inputs `[B, K − 1, C]`.
    pub conv_state: &'a Array,
    /// The depthwise conv taps `[C, K, 1]`.
    pub conv_weight: &'a Array,
    /// `A_log` `[Hv]`.
    pub a_log: &'a Array,
    /// `dt_bias` `[Hv]`.
    pub dt_bias: &'a Array,
    /// The gated output norm's weight `[Dv]`.
    pub norm_weight: &'a Array,
    /// The gated output norm's epsilon.
    pub norm_eps: f32,
    /// The recurrent state `[B, Hv, Dv, Dk]`, fp32.
    pub state: &'a Array,
}

/// The fewest value rows a warp of the decode kernel takes (it computes q and k once for
/// them).
pub const DECODE_MIN_ROWS: i32 = 4;
/// The most warps (SIMD groups) in a block (thread group) of the decode kernel; a block is
/// one value head, so a head of Dv rows gives each warp `max(DECODE_MIN_ROWS, ⌈Dv / 16⌉)`.
pub const DECODE_MAX_WARPS: i32 = 16;
/// The largest value head the decode kernel takes: each warp's rows are held one per lane
/// for the gated norm, so at most 32 rows for each of [`DECODE_MAX_WARPS`] warps.
pub const MAX_DECODE_DV: i32 = 32 * DECODE_MAX_WARPS;

/// Rows per warp and warps per block of the decode kernel for a value head of `dv` rows.
fn decode_rows(dv: i32) -> (i32, i32) {
    let rows = DECODE_MIN_ROWS.max((dv + DECODE_MAX_WARPS - 1) / DECODE_MAX_WARPS);
    (rows, (dv + rows - 1) / rows)
}

/// What [`check_decode`] found: batch, conv taps, whether the length axis is there.
#[derive(Debug, Clone, Copy)]
pub(super) struct DecodeDims {
    bsz: i32,
    taps: i32,
    with_len: bool,
}

/// Checks the inputs of [`delta_decode_kernel`], or returns an error naming the mismatch
/// (the kernel trusts every shape and dtype it is given).
pub(super) fn check_decode(h: DeltaHeads, x: &DecodeLayer) -> Result<DecodeDims> {
    let bad = |m: String| Error::InvalidArgument(format!("gated delta decode: {m}"));
    if [h.hk, h.hv, h.dk, h.dv].iter().any(|&x| x <= 0) || h.hv % h.hk != 0 {
        return Err(bad(format!("bad head layout {h:?}")));
    }
    let c = 2 * h.hk * h.dk + h.hv * h.dv;
    let p = c + h.hv * h.dv + 2 * h.hv;
    // [B, 1, P] or, with the length axis dropped, [B, P].
    let (bsz, pc, with_len) = match *x.proj.shape() {
        [bsz, 1, pc] => (bsz, pc, true),
        [bsz, pc] => (bsz, pc, false),
        _ => {
            return Err(bad(format!(
                "the projections {:?} must be [B, 1, P] or [B, P]",
                x.proj.shape()
            )))
        }
    };
    let &[wc, taps, w1] = x.conv_weight.shape() else {
        return Err(bad(format!(
            "conv weight {:?} must be [C, K, 1]",
            x.conv_weight.shape()
        )));
    };
    if pc != p || wc != c || w1 != 1 || taps < 2 || bsz <= 0 {
        return Err(bad(format!(
            "the projections {:?} and conv weight {:?} must be [B, 1, {p}] and [{c}, K ≥ 2, 1]",
            x.proj.shape(),
            x.conv_weight.shape()
        )));
    }
    let checks: [(&str, &Array, Vec<i32>); 5] = [
        ("conv state", x.conv_state, vec![bsz, taps - 1, c]),
        ("A_log", x.a_log, vec![h.hv]),
        ("dt_bias", x.dt_bias, vec![h.hv]),
        ("norm weight", x.norm_weight, vec![h.dv]),
        ("state", x.state, vec![bsz, h.hv, h.dv, h.dk]),
    ];
    for (what, a, want) in &checks {
        if a.shape() != want.as_slice() {
            return Err(bad(format!("{what} {:?} must be {want:?}", a.shape())));
        }
    }
    let act = x.proj.dtype();
    if !matches!(act, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) {
        return Err(bad(format!(
            "activations must be a float type, found {act:?}"
        )));
    }
    for (what, a) in [
        ("conv state", x.conv_state),
        ("conv weight", x.conv_weight),
        ("norm weight", x.norm_weight),
    ] {
        if a.dtype() != act {
            return Err(bad(format!(
                "{what} is {:?}, the projections {act:?}",
                a.dtype()
            )));
        }
    }
    if x.state.dtype() != Dtype::Float32
        || !matches!(
            x.dt_bias.dtype(),
            Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16
        )
    {
        return Err(bad("state must be float32 and dt_bias a float type".into()));
    }
    if !(x.norm_eps.is_finite() && x.norm_eps >= 0.0) {
        return Err(bad(format!(
            "the norm's eps must be finite and ≥ 0, found {}",
            x.norm_eps
        )));
    }
    if h.dk % 32 != 0 || h.dk > MAX_DK || h.dv > MAX_DECODE_DV || bsz * h.hv > 65_535 {
        return Err(bad(format!(
            "the kernel needs Dk a multiple of 32 up to {MAX_DK}, Dv up to {MAX_DECODE_DV} and \
             B·Hv ≤ 65535 (found Dk {}, Dv {}, B·Hv {})",
            h.dk,
            h.dv,
            bsz * h.hv
        )));
    }
    Ok(DecodeDims {
        bsz,
        taps,
        with_len,
    })
}

/// One token of a Gated DeltaNet layer in one launch of the GPU kernel of `backend`: from
/// the joined projections, the carried conv inputs and the fp32 state to the gated output
/// norm `rmsnorm(y) · w · silu(z)` per value head (`[B, 1, Hv·Dv]`, or `[B, Hv·Dv]` for
/// `[B, P]` projections: the out projection's input), the new state and the new conv state.
/// Computes what [`super::compiled::delta_decode_inputs`], [`super::gated_delta_step`] and
/// [`super::ops::gated_rms_norm`] compute, rounding to the activation dtype at the same
/// points; the norm's fp32 sum of squares is taken in another order than MLX's.
///
/// Needs the projections, conv state, taps and norm weight in one float dtype, Dk a
/// multiple of 32 up to [`MAX_DK`], Dv up to [`MAX_DECODE_DV`], K ≥ 2; errors otherwise
/// (see [`super::gated_delta_decode`], which falls back).
pub fn delta_decode_kernel(
    backend: GpuBackend,
    heads: DeltaHeads,
    x: &DecodeLayer,
) -> Result<(Array, Array, Array)> {
    let dims = check_decode(heads, x)?;
    launch_decode(backend, heads, dims, x)
}

/// [`delta_decode_kernel`] after [`check_decode`] accepted the inputs (`dims` is what it
/// returned).
pub(super) fn launch_decode(
    backend: GpuBackend,
    heads: DeltaHeads,
    dims: DecodeDims,
    x: &DecodeLayer,
) -> Result<(Array, Array, Array)> {
    let DecodeDims {
        bsz,
        taps,
        with_len,
    } = dims;
    let DeltaHeads { hk, hv, dk, dv } = heads;
    let c = 2 * hk * dk + hv * dv;
    let act = x.proj.dtype();
    let (rows, warps) = decode_rows(dv);
    let gate = gate_dtype(act, x.dt_bias.dtype());
    let out_shape: &[i32] = if with_len {
        &[bsz, 1, hv * dv]
    } else {
        &[bsz, hv * dv]
    };
    let config = KernelConfig::new([32, warps, bsz * hv], [32, warps, 1])
        .output(out_shape, act)
        .output(&[bsz, hv, dv, dk], Dtype::Float32)
        .output(&[bsz, taps - 1, c], act)
        .template("InT", TemplateArg::Dtype(act))
        .template("GateT", TemplateArg::Dtype(gate))
        .template("Dk", TemplateArg::Int(dk))
        .template("Dv", TemplateArg::Int(dv))
        .template("Hk", TemplateArg::Int(hk))
        .template("Hv", TemplateArg::Int(hv))
        .template("K", TemplateArg::Int(taps))
        .template("ROWS", TemplateArg::Int(rows))
        .template("W", TemplateArg::Int(warps))
        // The bits of a finite float ≥ 0 fit an i32 unchanged.
        .template("EPS_BITS", TemplateArg::Int(x.norm_eps.to_bits() as i32));
    let kernel = gpu::kernel(
        backend,
        "gated_delta_decode",
        &DECODE_INPUTS,
        &DECODE_OUTPUTS,
        decode_source,
    )?;
    // Fixed dtypes for these two (exact casts: GateT is dt_bias's own dtype or fp32), so
    // that the kernel's name (which holds InT and GateT) fixes its whole signature.
    let a_log = x.a_log.astype(Dtype::Float32)?;
    let dt_bias = x.dt_bias.astype(gate)?;
    let out = kernel.apply(
        &[
            x.proj,
            x.conv_state,
            x.conv_weight,
            &a_log,
            &dt_bias,
            x.norm_weight,
            x.state,
        ],
        &config,
    )?;
    let [y, state, conv] = gpu::outputs(out, "gated delta decode")?;
    Ok((y, state, conv))
}
