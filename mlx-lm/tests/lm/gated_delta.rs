//! The gated delta rule's decode forms (`mlx_lm::kernels::gated_delta`) against the
//! reference ops:
//!
//! * the gated delta step — compiled ops on the CPU (always), the CUDA kernel when a CUDA
//!   GPU is present, the Metal kernel on macOS with a GPU (else a visible "skipped" line)
//!   — equals the sequential reference step (f32 and bf16, Hv = Hk and Hv > Hk, B = 1
//!   and 2, several steps in a row); so does the step kernel over T > 1 tokens;
//! * the whole-layer decode kernel equals the CPU path of a decode step (the compiled
//!   inputs, the step and the gated norm; on a GPU), and that path equals its pieces;
//! * the compiled element-wise chains (`mlx_lm::kernels::compiled`) equal their plain ops;
//! * bad shapes are errors, not kernel reads out of bounds.
//!
//! Whole models with the fused decode are compared with the plain ops in qwen3_5's
//! `tests/fused.rs`.

use crate::common::{assert_kernel_emulator_cases, cpu, gpu, normal, unit_rows};
use mlx_lm::kernels::compiled;
use mlx_lm::kernels::gated_delta::compiled::delta_decode_inputs;
use mlx_lm::kernels::gated_delta::kernel::{
    delta_decode_kernel, gated_delta_kernel, MAX_DECODE_DV, MAX_DK,
};
use mlx_lm::kernels::gated_delta::ops::{gated_delta_sequential, gated_rms_norm};
use mlx_lm::kernels::gated_delta::{
    gated_delta_decode, gated_delta_step, DecodeLayer, DeltaHeads, StepPath,
};
use mlx_lm::kernels::gpu::GpuBackend;
use mlx_rs::{random, Array, Device, Dtype};

/// Step outputs vs the reference, f32 inputs: relative to the largest |reference| value
/// (the kernel and compiled forms may sum the Dk products in another order; fp32
/// rounding of 128-term sums stays far below this).
const STEP_F32_RTOL: f32 = 1e-5;
/// Step outputs vs the reference, bf16 inputs: `y` is rounded to bf16, so one bf16 ulp of
/// the output scale (2^-8) is allowed; the fp32 state keeps [`STEP_F32_RTOL`].
const STEP_BF16_RTOL: f32 = 1.0 / 256.0;
/// Whole-layer decode kernel vs the compiled CPU path, bf16: the kernel rounds q, k, v,
/// the gates and the norm's steps to bf16 at the same points as the ops, but its exp /
/// rsqrt and the order of its fp32 sums may differ in the last float bit and so land one
/// bf16 ulp (2^-8 relative) apart on a few elements, which the state and the output then
/// carry: two ulps of the scale.
const DECODE_BF16_RTOL: f32 = 1.0 / 64.0;
/// The same in f32 (no intermediate rounding to a narrow type).
const DECODE_F32_RTOL: f32 = 1e-4;

pub(crate) fn to_f32(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

/// Asserts `got` is within `rtol · max |want|` of `want`, element-wise.
fn assert_scaled_close(what: &str, got: &Array, want: &Array, rtol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (to_f32(got), to_f32(want));
    let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "{what}: reference is all zeros");
    let tol = rtol * scale;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(a.is_finite(), "{what}: non-finite at {i}");
        assert!(
            (a - b).abs() <= tol,
            "{what}: element {i} is {a}, reference {b} (tolerance {tol})"
        );
    }
}

/// Random inputs of one step: q, k `[B, Hk, Dk]` (L2-normalised like the model's, q
/// scaled), v `[B, Hv, Dv]`, g in (0, 1), beta in (0, 1), a random fp32 state.
struct StepInputs {
    q: Array,
    k: Array,
    v: Array,
    g: Array,
    beta: Array,
    state: Array,
}

#[allow(clippy::too_many_arguments)]
fn step_inputs(seed: u64, b: i32, hk: i32, hv: i32, dk: i32, dv: i32, dtype: Dtype) -> StepInputs {
    let keys: Vec<Array> = (0..6)
        .map(|i| random::key(seed * 16 + i).unwrap())
        .collect();
    let unit = |k: &Array, shape: &[i32], scale: f32| -> Array {
        let x = random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(k)).unwrap();
        unit_rows(&x, scale, dtype)
    };
    let q = unit(&keys[0], &[b, hk, dk], (dk as f32).powf(-0.5));
    let k = unit(&keys[1], &[b, hk, dk], 1.0);
    let v = random::normal(&[b, hv, dv], Dtype::Float32, 0.0, 1.0, Some(&keys[2]))
        .unwrap()
        .astype(dtype)
        .unwrap();
    let g = random::uniform_range(0.5..0.99, &[b, hv], Some(&keys[3])).unwrap();
    let beta = random::uniform_range(0.05..0.95, &[b, hv], Some(&keys[4]))
        .unwrap()
        .astype(dtype)
        .unwrap();
    let state = random::normal(&[b, hv, dv, dk], Dtype::Float32, 0.0, 0.5, Some(&keys[5])).unwrap();
    StepInputs {
        q,
        k,
        v,
        g,
        beta,
        state,
    }
}

/// The reference: one token of the sequential recurrence (uncompiled ops).
fn reference_step(x: &StepInputs) -> (Array, Array) {
    let t1 = |a: &Array| {
        let mut s = a.shape().to_vec();
        s.insert(1, 1);
        a.reshape(&s).unwrap()
    };
    let (y, state) = gated_delta_sequential(
        &t1(&x.q),
        &t1(&x.k),
        &t1(&x.v),
        &t1(&x.g),
        &t1(&x.beta),
        &x.state,
    )
    .unwrap();
    let s = y.shape().to_vec();
    (y.reshape(&[s[0], s[2], s[3]]).unwrap(), state)
}

/// The (B, Hk, Hv, Dk, Dv) cases: Hv = Hk and Hv > Hk, B = 1 and 2, the real head dim 128
/// and a smaller one, a Dv that is not a multiple of the rows per thread group.
const CASES: &[(i32, i32, i32, i32, i32)] = &[
    (1, 2, 2, 128, 128),
    (2, 2, 2, 64, 32),
    (1, 2, 4, 128, 64),
    (2, 1, 3, 32, 20),
    (2, 4, 8, 64, 36),
];

/// Runs `path` on every case and dtype for three steps in a row (the state carried) and
/// compares with the reference.
fn check_path(path: StepPath) {
    for &(b, hk, hv, dk, dv) in CASES {
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            let rtol_y = if dtype == Dtype::Float32 {
                STEP_F32_RTOL
            } else {
                STEP_BF16_RTOL
            };
            let what = format!("{path:?} B={b} Hk={hk} Hv={hv} Dk={dk} Dv={dv} {dtype:?}");
            let mut x = step_inputs(7 + b as u64 * 31 + hv as u64, b, hk, hv, dk, dv, dtype);
            let mut state_ref = x.state.clone();
            let mut state_got = x.state.clone();
            for step in 0..3 {
                x.state = state_ref.clone();
                let (y_ref, s_ref) = cpu(|| reference_step(&x));
                x.state = state_got.clone();
                let (y, s) = gated_delta_step(path, &x.q, &x.k, &x.v, &x.g, &x.beta, &x.state)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                mlx_rs::eval(&[&y, &s]).unwrap();
                assert_eq!(y.dtype(), dtype, "{what}: y dtype");
                assert_eq!(s.dtype(), Dtype::Float32, "{what}: state dtype");
                assert_scaled_close(&format!("{what} step {step} y"), &y, &y_ref, rtol_y);
                assert_scaled_close(
                    &format!("{what} step {step} state"),
                    &s,
                    &s_ref,
                    STEP_F32_RTOL,
                );
                state_ref = s_ref;
                state_got = s;
                // Next token: new q, k, v, gates.
                let next = step_inputs(1000 + step as u64, b, hk, hv, dk, dv, dtype);
                x = StepInputs {
                    state: x.state,
                    ..next
                };
            }
        }
    }
}

#[test]
fn compiled_step_matches_reference_on_cpu() {
    cpu(|| {
        check_path(StepPath::Compiled);
        check_path(StepPath::Ops);
    })
}

/// The sequence form of a GPU kernel (`T` tokens in one launch) against the reference.
fn check_sequence_kernel(path: StepPath) {
    for &(b, hk, hv, dk, dv) in CASES {
        // One short and one longer run of tokens.
        for (dtype, t) in [
            (Dtype::Float32, 5),
            (Dtype::Bfloat16, 5),
            (Dtype::Bfloat16, 19),
        ] {
            let what =
                format!("{path:?} sequence T={t} B={b} Hk={hk} Hv={hv} Dk={dk} Dv={dv} {dtype:?}");
            let steps: Vec<StepInputs> = (0..t)
                .map(|i| step_inputs(50 + i as u64, b, hk, hv, dk, dv, dtype))
                .collect();
            let stack = |f: &dyn Fn(&StepInputs) -> &Array| {
                mlx_rs::ops::stack_axis(&steps.iter().map(f).collect::<Vec<_>>(), 1).unwrap()
            };
            let (q, k, v) = (stack(&|s| &s.q), stack(&|s| &s.k), stack(&|s| &s.v));
            let (g, beta) = (stack(&|s| &s.g), stack(&|s| &s.beta));
            let state = steps[0].state.clone();
            let (y_ref, s_ref) =
                cpu(|| gated_delta_sequential(&q, &k, &v, &g, &beta, &state).unwrap());
            let (y, s) = gated_delta_kernel(path.backend().unwrap(), &q, &k, &v, &g, &beta, &state)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let rtol_y = if dtype == Dtype::Float32 {
                STEP_F32_RTOL
            } else {
                STEP_BF16_RTOL
            };
            assert_scaled_close(&format!("{what} y"), &y, &y_ref, rtol_y);
            assert_scaled_close(&format!("{what} state"), &s, &s_ref, STEP_F32_RTOL);
        }
    }
}

#[test]
fn cuda_kernel_matches_reference() {
    if StepPath::gpu_kernel() != Some(StepPath::CudaKernel) {
        println!(
            "skipped: no CUDA GPU (MLX backend {}, GPU available: {})",
            mlx_rs::backend(),
            Device::gpu().is_available()
        );
        return;
    }
    assert_eq!(
        StepPath::fused_on(&Device::gpu()),
        StepPath::CudaKernel,
        "a model on the GPU takes the kernel"
    );
    gpu(|| {
        check_path(StepPath::CudaKernel);
        check_sequence_kernel(StepPath::CudaKernel);
    });
    println!("CUDA kernel: all cases match the reference");
}

#[test]
fn metal_kernel_matches_reference() {
    if StepPath::gpu_kernel() != Some(StepPath::MetalKernel) {
        println!("skipped: no Metal GPU (not macOS, or no GPU in the MLX loaded)");
        return;
    }
    assert_eq!(
        StepPath::fused_on(&Device::gpu()),
        StepPath::MetalKernel,
        "a model on the GPU takes the kernel"
    );
    gpu(|| {
        check_path(StepPath::MetalKernel);
        check_sequence_kernel(StepPath::MetalKernel);
    });
    println!("Metal kernel: all cases match the reference");
}

/// Random inputs of one whole-layer decode step.
struct DecodeInputs {
    proj: Array,
    conv_state: Array,
    conv_weight: Array,
    a_log: Array,
    dt_bias: Array,
    norm_weight: Array,
    state: Array,
}

/// The norm's eps in the decode cases (the model's).
const NORM_EPS: f32 = 1e-6;

impl DecodeInputs {
    fn layer(&self) -> DecodeLayer<'_> {
        DecodeLayer {
            proj: &self.proj,
            conv_state: &self.conv_state,
            conv_weight: &self.conv_weight,
            a_log: &self.a_log,
            dt_bias: &self.dt_bias,
            norm_weight: &self.norm_weight,
            norm_eps: NORM_EPS,
            state: &self.state,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_inputs(
    seed: u64,
    bsz: i32,
    heads: DeltaHeads,
    taps: i32,
    dtype: Dtype,
    gate: Dtype,
) -> DecodeInputs {
    let DeltaHeads { hk, hv, dk, dv } = heads;
    let c = 2 * hk * dk + hv * dv;
    let p = c + hv * dv + 2 * hv;
    let r = |i: u64, shape: &[i32], scale: f32, dt: Dtype| {
        random::normal(
            shape,
            Dtype::Float32,
            0.0,
            scale,
            Some(&random::key(seed * 16 + i).unwrap()),
        )
        .unwrap()
        .astype(dt)
        .unwrap()
    };
    let uniform = |i: u64, lo: f32, hi: f32, n: i32| {
        random::uniform_range(lo..hi, &[n], Some(&random::key(seed * 16 + i).unwrap())).unwrap()
    };
    DecodeInputs {
        proj: r(0, &[bsz, 1, p], 1.0, dtype),
        conv_state: r(1, &[bsz, taps - 1, c], 1.0, dtype),
        conv_weight: r(2, &[c, taps, 1], 0.5, dtype),
        a_log: uniform(5, 0.0, 2.7, hv),
        dt_bias: uniform(6, 0.5, 1.5, hv).astype(gate).unwrap(),
        norm_weight: uniform(8, 0.5, 1.5, dv).astype(dtype).unwrap(),
        state: r(7, &[bsz, hv, dv, dk], 0.5, Dtype::Float32),
    }
}

/// A head layout: Hk key heads of Dk, Hv value heads of Dv.
fn head_layout(hk: i32, hv: i32, dk: i32, dv: i32) -> DeltaHeads {
    DeltaHeads { hk, hv, dk, dv }
}

/// The decode cases: (B, Hk, Hv, Dk, Dv, K).
const DECODE_CASES: &[(i32, i32, i32, i32, i32, i32)] = &[
    (1, 4, 4, 128, 128, 4),
    (2, 2, 4, 64, 36, 4),
    (1, 1, 3, 32, 9, 3),
    (1, 1, 2, 32, MAX_DECODE_DV, 4),
];

/// The whole-layer decode kernel on `path` (GPU stream) against the CPU path (the
/// projections split, the decode inputs, the step ops and the gated norm), several steps
/// in a row.
fn check_decode_kernel(path: StepPath) {
    for &(bsz, hk, hv, dk, dv, taps) in DECODE_CASES {
        for (dtype, gate) in [
            (Dtype::Float32, Dtype::Float32),
            (Dtype::Bfloat16, Dtype::Bfloat16),
            (Dtype::Bfloat16, Dtype::Float32),
        ] {
            let heads = DeltaHeads { hk, hv, dk, dv };
            let what = format!("{path:?} decode B={bsz} {heads:?} K={taps} {dtype:?}/{gate:?}");
            let rtol = if dtype == Dtype::Float32 {
                DECODE_F32_RTOL
            } else {
                DECODE_BF16_RTOL
            };
            let mut x = decode_inputs(bsz as u64 * 7 + hv as u64, bsz, heads, taps, dtype, gate);
            for step in 0..3 {
                let (out_ref, s_ref, c_ref) =
                    cpu(|| gated_delta_decode(StepPath::Ops, heads, &x.layer()).unwrap());
                let (out, s, conv) =
                    delta_decode_kernel(path.backend().unwrap(), heads, &x.layer())
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(
                    (out.dtype(), s.dtype(), conv.dtype()),
                    (dtype, Dtype::Float32, dtype),
                    "{what}: dtypes"
                );
                assert_eq!(out.shape(), [bsz, 1, hv * dv], "{what}: output shape");
                assert_scaled_close(&format!("{what} step {step} out"), &out, &out_ref, rtol);
                assert_scaled_close(&format!("{what} step {step} state"), &s, &s_ref, rtol);
                assert_eq!(
                    to_f32(&conv),
                    to_f32(&c_ref),
                    "{what} step {step}: conv state"
                );
                let next = decode_inputs(500 + step, bsz, heads, taps, dtype, gate);
                x = DecodeInputs {
                    state: s_ref,
                    conv_state: c_ref,
                    conv_weight: x.conv_weight,
                    norm_weight: x.norm_weight,
                    ..next
                };
            }
        }
    }
}

#[test]
fn cuda_decode_kernel_matches_compiled() {
    if StepPath::gpu_kernel() != Some(StepPath::CudaKernel) {
        println!(
            "skipped: no CUDA GPU (MLX backend {}, GPU available: {})",
            mlx_rs::backend(),
            Device::gpu().is_available()
        );
        return;
    }
    gpu(|| check_decode_kernel(StepPath::CudaKernel));
    println!("CUDA decode kernel: all cases match the compiled path");
}

#[test]
fn metal_decode_kernel_matches_compiled() {
    if StepPath::gpu_kernel() != Some(StepPath::MetalKernel) {
        println!("skipped: no Metal GPU (not macOS, or no GPU in the MLX loaded)");
        return;
    }
    gpu(|| check_decode_kernel(StepPath::MetalKernel));
    println!("Metal decode kernel: all cases match the compiled path");
}

/// The CPU path of a whole-layer decode step (what a kernel path falls back to) equals
/// the pieces it is made of: the projections split, the compiled decode inputs, the
/// reference step and the plain gated norm, for `[B, 1, P]` and `[B, P]` projections.
#[test]
fn decode_fallback_is_its_pieces() {
    cpu(|| {
        let heads = head_layout(1, 2, 32, 8);
        let x = decode_inputs(11, 2, heads, 4, Dtype::Bfloat16, Dtype::Bfloat16);
        let (out, s, conv) = gated_delta_decode(StepPath::Compiled, heads, &x.layer()).unwrap();
        let c = 2 * 32 + 2 * 8;
        let p = mlx_rs::ops::split_sections(&x.proj, &[c, c + 16, c + 18], -1).unwrap();
        let (qkv, z, b, a) = (&p[0], &p[1], &p[2], &p[3]);
        let [q, k, v, g, beta, conv_ref] = delta_decode_inputs(
            heads,
            qkv,
            &x.conv_state,
            &x.conv_weight,
            a,
            b,
            &x.a_log,
            &x.dt_bias,
        )
        .unwrap();
        let (y, s_ref) = gated_delta_step(StepPath::Ops, &q, &k, &v, &g, &beta, &x.state).unwrap();
        let out_ref = gated_rms_norm(
            &y.reshape(&[2, 1, 2, 8]).unwrap(),
            &z.reshape(&[2, 1, 2, 8]).unwrap(),
            &x.norm_weight,
            NORM_EPS,
        )
        .unwrap()
        .reshape(&[2, 1, 16])
        .unwrap();
        assert_eq!(to_f32(&out), to_f32(&out_ref), "output");
        assert_eq!(to_f32(&s), to_f32(&s_ref), "state");
        assert_eq!(to_f32(&conv), to_f32(&conv_ref), "conv state");
        // Without the length axis: the same values, [B, Hv·Dv].
        let flat = DecodeInputs {
            proj: x.proj.reshape(&[2, -1]).unwrap(),
            ..decode_inputs(11, 2, heads, 4, Dtype::Bfloat16, Dtype::Bfloat16)
        };
        let (out2, _, _) = gated_delta_decode(StepPath::Compiled, heads, &flat.layer()).unwrap();
        assert_eq!(out2.shape(), [2, 16]);
        assert_eq!(
            to_f32(&out2),
            to_f32(&out_ref),
            "output without the length axis"
        );
    })
}

#[test]
fn bad_decode_inputs_are_errors() {
    cpu(|| {
        let heads = head_layout(2, 4, 32, 16);
        let x = decode_inputs(9, 1, heads, 4, Dtype::Bfloat16, Dtype::Bfloat16);
        let call = |x: &DecodeInputs, heads: DeltaHeads, why: &str| {
            for backend in [GpuBackend::Cuda, GpuBackend::Metal] {
                let r = delta_decode_kernel(backend, heads, &x.layer());
                let err = r
                    .err()
                    .unwrap_or_else(|| panic!("{backend:?} accepted {why}"));
                assert!(
                    err.to_string().contains("gated delta decode: "),
                    "{why}: {err}"
                );
            }
        };
        let with = |f: &dyn Fn(&mut DecodeInputs)| {
            let mut y = decode_inputs(9, 1, heads, 4, Dtype::Bfloat16, Dtype::Bfloat16);
            f(&mut y);
            y
        };
        call(
            &x,
            head_layout(2, 4, 16, 24),
            "the same C, another split: Dk 16",
        );
        call(&x, head_layout(3, 4, 32, 16), "Hv not a multiple of Hk");
        call(
            &with(&|y| y.proj = y.proj.astype(Dtype::Float32).unwrap()),
            heads,
            "mixed dtypes",
        );
        call(
            &with(&|y| y.norm_weight = y.norm_weight.astype(Dtype::Float32).unwrap()),
            heads,
            "an fp32 norm weight with bf16 activations",
        );
        call(
            &with(&|y| y.state = y.state.astype(Dtype::Bfloat16).unwrap()),
            heads,
            "a bf16 state",
        );
        call(
            &with(&|y| y.conv_state = y.conv_state.reshape(&[1, 1, -1]).unwrap()),
            heads,
            "a conv state of the wrong shape",
        );
        call(
            &with(&|y| y.proj = y.proj.reshape(&[1, 2, -1]).unwrap()),
            heads,
            "two tokens",
        );
        call(
            &with(&|y| y.norm_weight = y.norm_weight.reshape(&[2, 8]).unwrap()),
            heads,
            "a norm weight of the wrong shape",
        );
        call(
            &with(&|y| y.conv_weight = y.conv_weight.reshape(&[-1, 2, 2]).unwrap()),
            heads,
            "conv taps of the wrong shape",
        );
        // A value head above MAX_DECODE_DV is refused with the reason (a kernel path's
        // decode then takes the split projections and the step kernel).
        let big = head_layout(1, 1, 32, MAX_DECODE_DV + 1);
        let xb = decode_inputs(3, 1, big, 4, Dtype::Float32, Dtype::Float32);
        let err = delta_decode_kernel(GpuBackend::Cuda, big, &xb.layer()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("Dv up to {MAX_DECODE_DV}")),
            "{err}"
        );
        let mut bad_eps = xb.layer();
        bad_eps.norm_eps = f32::NAN;
        assert!(delta_decode_kernel(GpuBackend::Cuda, big, &bad_eps).is_err());
    })
}

/// `dir`'s model loaded on the current device with its defaults and `decode`.
#[test]
fn bad_step_shapes_are_errors() {
    cpu(|| {
        let x = step_inputs(3, 1, 2, 4, 32, 16, Dtype::Float32);
        let bad = |q: &Array, k: &Array, v: &Array, g: &Array, beta: &Array, s: &Array| {
            for path in [
                StepPath::Compiled,
                StepPath::CudaKernel,
                StepPath::MetalKernel,
            ] {
                let r = gated_delta_step(path, q, k, v, g, beta, s);
                assert!(r.is_err(), "{path:?} accepted bad shapes");
            }
        };
        let f16_state = x.state.astype(Dtype::Float16).unwrap();
        bad(&x.q, &x.k, &x.v, &x.g, &x.beta, &f16_state);
        let wrong_state = Array::from_slice(&[0f32; 4 * 16 * 32], &[1, 4, 32, 16]).unwrap();
        bad(&x.q, &x.k, &x.v, &x.g, &x.beta, &wrong_state);
        bad(
            &x.q,
            &x.q.reshape(&[1, 1, 64]).unwrap(),
            &x.v,
            &x.g,
            &x.beta,
            &x.state,
        );
        let g2 = Array::from_slice(&[0.5f32; 3], &[1, 3]).unwrap();
        bad(&x.q, &x.k, &x.v, &g2, &x.beta, &x.state);
        let v3 = Array::from_slice(&[0f32; 3 * 16], &[1, 3, 16]).unwrap();
        let g3 = Array::from_slice(&[0.5f32; 3], &[1, 3]).unwrap();
        let s3 = Array::from_slice(&[0f32; 3 * 16 * 32], &[1, 3, 16, 32]).unwrap();
        bad(&x.q, &x.k, &v3, &g3, &g3, &s3); // Hv = 3 not a multiple of Hk = 2

        // A key head above MAX_DK: the kernel refuses it with its reason, and a kernel
        // path's step takes the compiled ops instead.
        let dk = MAX_DK + 32;
        let big = step_inputs(5, 1, 1, 1, dk, 2, Dtype::Float32);
        let seq = |a: &Array| {
            let s = a.shape();
            a.reshape(&[&s[..1], &[1], &s[1..]].concat()).unwrap()
        };
        for backend in [GpuBackend::Cuda, GpuBackend::Metal] {
            let err = gated_delta_kernel(
                backend,
                &seq(&big.q),
                &seq(&big.k),
                &seq(&big.v),
                &seq(&big.g),
                &seq(&big.beta),
                &big.state,
            )
            .err()
            .unwrap_or_else(|| panic!("{backend:?} took Dk {dk}"));
            assert!(
                err.to_string()
                    .contains(&format!("up to {MAX_DK} (found {dk})")),
                "{err}"
            );
        }
        let step = |path| {
            gated_delta_step(path, &big.q, &big.k, &big.v, &big.g, &big.beta, &big.state).unwrap()
        };
        let (want, got) = (step(StepPath::Compiled), step(StepPath::CudaKernel));
        assert_eq!(to_f32(&got.0), to_f32(&want.0));
        assert_eq!(to_f32(&got.1), to_f32(&want.1));
    })
}

#[test]
fn compiled_chains_match_plain_ops() {
    cpu(|| {
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            let r = |seed: u64, shape: &[i32]| normal(shape, seed, dtype);
            let (x, y, w) = (r(1, &[2, 1, 64]), r(2, &[2, 1, 64]), r(3, &[64]));
            let exact = |what: &str, a: &Array, b: &Array| {
                assert_eq!(a.dtype(), b.dtype(), "{what}: dtype");
                assert_eq!(
                    to_f32(a),
                    to_f32(b),
                    "{what} ({dtype:?}): compiled differs from ops"
                );
            };
            let silu = |a: &Array| a.multiply(&mlx_rs::ops::sigmoid(a).unwrap()).unwrap();
            exact(
                "swiglu",
                &compiled::swiglu(&x, &y).unwrap(),
                &silu(&x).multiply(&y).unwrap(),
            );
            exact(
                "sigmoid gate",
                &compiled::sigmoid_gate(&x, &y).unwrap(),
                &x.multiply(&mlx_rs::ops::sigmoid(&y).unwrap()).unwrap(),
            );
            let norm = |a: &Array| mlx_rs::fast::rms_norm(a, Some(&w), 1e-6).unwrap();
            exact(
                "rms_norm",
                &compiled::rms_norm(&x, &w, 1e-6).unwrap(),
                &norm(&x),
            );
            let (h, n) = compiled::add_rms_norm(&x, &y, &w, 1e-6).unwrap();
            let h_ref = x.add(&y).unwrap();
            exact("add_rms_norm h", &h, &h_ref);
            exact("add_rms_norm norm", &n, &norm(&h_ref));
        }
    })
}

/// The prefill's causal conv (shifted products summed in f32) against MLX's grouped conv:
/// f32 within [`STEP_F32_RTOL`] of the output scale, bf16 within one bf16 ulp (both round
/// an f32 sum once), the compiled form equal to the ops; bad shapes are errors.
#[test]
fn causal_conv_matches_mlx_grouped_conv() {
    use mlx_lm::kernels::gated_delta::{compiled as gd_compiled, ops as gd_ops};
    cpu(|| {
        for (dtype, rtol) in [
            (Dtype::Float32, STEP_F32_RTOL),
            (Dtype::Bfloat16, 1.0 / 128.0),
        ] {
            for (b, s, c, taps) in [(1, 1, 48, 4), (2, 17, 48, 4), (1, 70, 96, 3)] {
                let x = normal(&[b, taps - 1 + s, c], 11 + s as u64, dtype);
                let w = normal(&[c, taps, 1], 12, dtype);
                let opts = mlx_rs::ops::ConvOptions {
                    groups: c,
                    ..Default::default()
                };
                let want = mlx_rs::ops::conv1d(&x, &w, opts).unwrap();
                let got = gd_ops::causal_conv(&x, &w).unwrap();
                assert_eq!(got.dtype(), dtype);
                let what = format!("causal conv {dtype:?} b {b} s {s} c {c} k {taps}");
                assert_scaled_close(&what, &got, &want, rtol);
                let fused = gd_compiled::causal_conv(&x, &w).unwrap();
                assert_scaled_close(&format!("compiled {what}"), &fused, &got, 1e-6);
            }
        }
        let x = mlx_rs::ops::zeros(&[1, 5, 8], Dtype::Float32).unwrap();
        assert!(
            gd_ops::causal_conv(&x, &mlx_rs::ops::zeros(&[8, 7, 1], Dtype::Float32).unwrap())
                .is_err()
        );
        assert!(
            gd_ops::causal_conv(&x, &mlx_rs::ops::zeros(&[6, 4, 1], Dtype::Float32).unwrap())
                .is_err()
        );
        assert!(gd_compiled::causal_conv(
            &x,
            &mlx_rs::ops::zeros(&[8, 4, 2], Dtype::Float32).unwrap()
        )
        .is_err());
    });
}

/// The step and whole-layer decode kernels' text, CUDA and Metal, run on the CPU with
/// emulated warps and blocks under AddressSanitizer against NumPy
/// (`examples/qwen3_5/tests/kernel_emulation/emulate.py`: f32 and bf16, Hv = Hk and
/// Hv > Hk, B 1 and 2, partial row groups, runs of up to 70 tokens: three rounds of the
/// step kernel's shared-memory staging), so that CI checks the
/// kernels a GPU runs for real in [`cuda_kernel_matches_reference`] and
/// [`cuda_decode_kernel_matches_compiled`].
#[test]
fn gated_delta_kernels_run_emulated() {
    assert_kernel_emulator_cases("emulate.py", 54);
}
