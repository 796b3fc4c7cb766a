//! The fused decode forms (src/model/fused/) against the reference ops:
//!
//! * the gated delta step — compiled ops on the CPU (always), the CUDA kernel when a CUDA
//!   GPU is present, the Metal kernel on macOS with a GPU (else a visible "skipped" line)
//!   — equals the sequential reference step (f32 and bf16, Hv = Hk and Hv > Hk, B = 1
//!   and 2, several steps in a row);
//! * the compiled element-wise chains equal their plain ops;
//! * a whole model loaded with the fused decode ([`Decode::Fused`]) gives the logits and
//!   greedy tokens of the same model loaded with the plain ops ([`Decode::Reference`]),
//!   for every fixture variant, with and without compiled layer steps;
//! * bad shapes are errors, not kernel reads out of bounds.
//!
//! `decode_speed` (ignored) times greedy decoding with each decode option:
//! `QWEN3_5_BENCH_DIR=<model folder> cargo test --release -p qwen3_5 --test fused -- --ignored --nocapture`.

mod common;

use common::{
    assert_logits_close, assert_logits_close_rtol, cpu, gpu, model_dir, CROSS_DEVICE_ROW_RTOL,
    VARIANTS,
};
use mlx_rs::{random, Array, Device, Dtype};
use qwen3_5::model::deltanet::recurrence::gated_delta_sequential;
use qwen3_5::model::fused::{self, DeltaHeads, StepPath};
use qwen3_5::{Decode, GenerateOptions, Model, ModelOptions};

/// Step outputs vs the reference, f32 inputs: relative to the largest |reference| value
/// (the kernel and compiled forms may sum the Dk products in another order; fp32
/// rounding of 128-term sums stays far below this).
const STEP_F32_RTOL: f32 = 1e-5;
/// Step outputs vs the reference, bf16 inputs: `y` is rounded to bf16, so one bf16 ulp of
/// the output scale (2^-8) is allowed; the fp32 state keeps [`STEP_F32_RTOL`].
const STEP_BF16_RTOL: f32 = 1.0 / 256.0;
/// Whole-layer decode kernel vs the compiled CPU path, bf16: the kernel rounds q, k, v and
/// the gates to bf16 at the same points as the ops, but its exp / rsqrt may differ in the
/// last float bit and so land one bf16 ulp (2^-8 relative) apart on a few elements, which
/// the state and y then carry: two ulps of the scale.
const DECODE_BF16_RTOL: f32 = 1.0 / 64.0;
/// The same in f32 (no intermediate rounding to a narrow type).
const DECODE_F32_RTOL: f32 = 1e-4;

fn to_f32(a: &Array) -> Vec<f32> {
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
        let norm = x
            .square()
            .unwrap()
            .sum_axis(-1, true)
            .unwrap()
            .sqrt()
            .unwrap();
        x.divide(&norm)
            .unwrap()
            .multiply(&Array::scalar(scale))
            .unwrap()
            .astype(dtype)
            .unwrap()
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
                let (y, s) =
                    fused::gated_delta_step(path, &x.q, &x.k, &x.v, &x.g, &x.beta, &x.state)
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
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            let t = 5;
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
            let (y, s) = fused::gated_delta_kernel(path, &q, &k, &v, &g, &beta, &state)
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
    qkv: Array,
    conv_state: Array,
    conv_weight: Array,
    a: Array,
    b: Array,
    a_log: Array,
    dt_bias: Array,
    state: Array,
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
    DecodeInputs {
        qkv: r(0, &[bsz, 1, c], 1.0, dtype),
        conv_state: r(1, &[bsz, taps - 1, c], 1.0, dtype),
        conv_weight: r(2, &[c, taps, 1], 0.5, dtype),
        a: r(3, &[bsz, 1, hv], 1.0, dtype),
        b: r(4, &[bsz, 1, hv], 1.0, dtype),
        a_log: random::uniform_range(0.0..2.7, &[hv], Some(&random::key(seed * 16 + 5).unwrap()))
            .unwrap(),
        dt_bias: random::uniform_range(0.5..1.5, &[hv], Some(&random::key(seed * 16 + 6).unwrap()))
            .unwrap()
            .astype(gate)
            .unwrap(),
        state: r(7, &[bsz, hv, dv, dk], 0.5, Dtype::Float32),
    }
}

/// The decode cases: (B, Hk, Hv, Dk, Dv, K).
const DECODE_CASES: &[(i32, i32, i32, i32, i32, i32)] = &[
    (1, 4, 4, 128, 128, 4),
    (2, 2, 4, 64, 36, 4),
    (1, 1, 3, 32, 9, 3),
];

/// The whole-layer decode kernel on `path` (GPU stream) against the compiled CPU path
/// (decode inputs + step ops), several steps in a row.
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
                let (y_ref, s_ref, c_ref) = cpu(|| {
                    let [q, k, v, g, beta, conv] = fused::delta_decode_inputs(
                        heads,
                        &x.qkv,
                        &x.conv_state,
                        &x.conv_weight,
                        &x.a,
                        &x.b,
                        &x.a_log,
                        &x.dt_bias,
                    )
                    .unwrap();
                    let (y, s) =
                        fused::gated_delta_step(StepPath::Ops, &q, &k, &v, &g, &beta, &x.state)
                            .unwrap();
                    (y.reshape(&[bsz, 1, hv, dv]).unwrap(), s, conv)
                });
                let (y, s, conv) = fused::delta_decode_kernel(
                    path,
                    heads,
                    &x.qkv,
                    &x.conv_state,
                    &x.conv_weight,
                    &x.a,
                    &x.b,
                    &x.a_log,
                    &x.dt_bias,
                    &x.state,
                )
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(
                    (y.dtype(), s.dtype(), conv.dtype()),
                    (dtype, Dtype::Float32, dtype),
                    "{what}: dtypes"
                );
                assert_scaled_close(&format!("{what} step {step} y"), &y, &y_ref, rtol);
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

#[test]
fn bad_decode_inputs_are_errors() {
    cpu(|| {
        let heads = DeltaHeads {
            hk: 2,
            hv: 4,
            dk: 32,
            dv: 16,
        };
        let x = decode_inputs(9, 1, heads, 4, Dtype::Bfloat16, Dtype::Bfloat16);
        let call = |x: &DecodeInputs, heads: DeltaHeads| {
            for path in [StepPath::CudaKernel, StepPath::MetalKernel] {
                let r = fused::delta_decode_kernel(
                    path,
                    heads,
                    &x.qkv,
                    &x.conv_state,
                    &x.conv_weight,
                    &x.a,
                    &x.b,
                    &x.a_log,
                    &x.dt_bias,
                    &x.state,
                );
                assert!(r.is_err(), "{path:?} accepted bad decode inputs");
            }
        };
        let with = |f: &dyn Fn(&mut DecodeInputs)| {
            let mut y = decode_inputs(9, 1, heads, 4, Dtype::Bfloat16, Dtype::Bfloat16);
            f(&mut y);
            y
        };
        call(
            &x,
            DeltaHeads {
                hk: 2,
                hv: 4,
                dk: 16,
                dv: 24,
            },
        ); // same C, other split: Dk 16
        call(
            &x,
            DeltaHeads {
                hk: 3,
                hv: 4,
                dk: 32,
                dv: 16,
            },
        ); // Hv not a multiple of Hk
        call(
            &with(&|y| y.qkv = y.qkv.astype(Dtype::Float32).unwrap()),
            heads,
        ); // mixed dtypes
        call(
            &with(&|y| y.state = y.state.astype(Dtype::Bfloat16).unwrap()),
            heads,
        );
        call(
            &with(&|y| y.conv_state = y.conv_state.reshape(&[1, 1, -1]).unwrap()),
            heads,
        );
        call(&with(&|y| y.a = y.a.reshape(&[1, 4]).unwrap()), heads);
        call(
            &with(&|y| y.conv_weight = y.conv_weight.reshape(&[-1, 2, 2]).unwrap()),
            heads,
        );
    })
}

/// `dir`'s model loaded on the current device with its defaults and `decode`.
fn load(dir: impl AsRef<std::path::Path>, decode: Decode) -> Model {
    qwen3_5::load_with(dir, ModelOptions::default().with_decode(decode)).unwrap()
}

#[test]
fn options_resolve_to_the_cpu_paths() {
    assert_eq!(StepPath::fused_on(&Device::cpu()), StepPath::Compiled);
    let defaults = ModelOptions::for_device(&Device::cpu());
    assert_eq!(defaults.decode, Decode::Fused);
    assert!(
        !defaults.compile_layers,
        "compiled layers are a GPU default"
    );
    assert_eq!(defaults.cpu_gemm, !cfg!(target_os = "macos"));
    assert!((1..=8).contains(&defaults.cpu_threads));
    cpu(|| {
        assert_eq!(ModelOptions::default(), defaults);
        let dir = model_dir("mlx-bf16-tied");
        let fused = load(&dir, Decode::Fused);
        assert_eq!(fused.plan().step, StepPath::Compiled);
        assert!(fused.plan().cpu.is_some());
        assert_eq!(load(&dir, Decode::Reference).plan().step, StepPath::Ops);
        let compiled = ModelOptions {
            compile_layers: true,
            ..defaults
        };
        let model = qwen3_5::load_with(&dir, compiled).unwrap();
        assert!(model.plan().compile_layers);
        let reference = compiled.with_decode(Decode::Reference);
        let model = qwen3_5::load_with(&dir, reference).unwrap();
        assert!(
            !model.plan().compile_layers,
            "compiled layers are a fused form"
        );
        let none = ModelOptions {
            cpu_threads: 0,
            ..defaults
        };
        assert!(qwen3_5::load_with(&dir, none).is_err(), "0 threads");
    })
}

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
                let r = fused::gated_delta_step(path, q, k, v, g, beta, s);
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
        let r = fused::gated_delta_kernel(
            StepPath::Compiled,
            &x.q.reshape(&[1, 1, 2, 32]).unwrap(),
            &x.k.reshape(&[1, 1, 2, 32]).unwrap(),
            &x.v.reshape(&[1, 1, 4, 16]).unwrap(),
            &x.g.reshape(&[1, 1, 4]).unwrap(),
            &x.beta.reshape(&[1, 1, 4]).unwrap(),
            &x.state,
        );
        assert!(
            r.is_err(),
            "a non-kernel path is refused by gated_delta_kernel"
        );
    })
}

#[test]
fn compiled_chains_match_plain_ops() {
    cpu(|| {
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            let r = |seed: u64, shape: &[i32]| {
                random::normal(
                    shape,
                    Dtype::Float32,
                    0.0,
                    1.0,
                    Some(&random::key(seed).unwrap()),
                )
                .unwrap()
                .astype(dtype)
                .unwrap()
            };
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
                &fused::swiglu(&x, &y).unwrap(),
                &silu(&x).multiply(&y).unwrap(),
            );
            exact(
                "sigmoid gate",
                &fused::sigmoid_gate(&x, &y).unwrap(),
                &x.multiply(&mlx_rs::ops::sigmoid(&y).unwrap()).unwrap(),
            );
            let norm = |a: &Array| mlx_rs::fast::rms_norm(a, Some(&w), 1e-6).unwrap();
            exact(
                "rms_norm",
                &fused::rms_norm(&x, &w, 1e-6).unwrap(),
                &norm(&x),
            );
            let (h, n) = fused::add_rms_norm(&x, &y, &w, 1e-6).unwrap();
            let h_ref = x.add(&y).unwrap();
            exact("add_rms_norm h", &h, &h_ref);
            exact("add_rms_norm norm", &n, &norm(&h_ref));
        }
    })
}

/// Logits of a 3-token prefill, then of each further prompt token fed alone (the
/// single-token logits keep their `[B, 1, vocab]` shape).
fn three_then_steps(model: &Model, prompt: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    let ids = Array::from_slice(&prompt[..3], &[1, 3]).unwrap();
    let mut out = to_f32(&model.forward(&ids, &mut cache).unwrap());
    for &t in &prompt[3..] {
        let ids = Array::from_slice(&[t], &[1, 1]).unwrap();
        let logits = model.forward(&ids, &mut cache).unwrap();
        assert_eq!(logits.ndim(), 3, "logits stay [B, 1, vocab]");
        out.extend(to_f32(&logits));
    }
    out
}

/// Prefill, then single-token steps: the fused decode vs the reference ops, every
/// fixture variant.
#[test]
fn fused_decode_matches_ops_decode_on_fixtures() {
    cpu(|| {
        let prompt: Vec<u32> = vec![5, 17, 200, 3, 99, 42, 7, 128];
        for v in VARIANTS {
            let run = |d: Decode| three_then_steps(&load(model_dir(v), d), &prompt);
            let vocab = load(model_dir(v), Decode::Reference)
                .config()
                .text
                .vocab_size as usize;
            assert_logits_close(v, &run(Decode::Fused), &run(Decode::Reference), vocab);
        }
    })
}

/// The fused decode with compiled layer steps on and off gives the plain ops' logits on
/// every fixture variant (dense, 4-bit, ...).
#[test]
fn compiled_layer_steps_match_ops_decode_on_fixtures() {
    cpu(|| {
        let prompt: Vec<u32> = vec![5, 17, 200, 3, 99, 42, 7];
        for v in VARIANTS {
            let model = load(model_dir(v), Decode::Reference);
            let vocab = model.config().text.vocab_size as usize;
            let reference = three_then_steps(&model, &prompt);
            for compile_layers in [true, false] {
                let options = ModelOptions {
                    compile_layers,
                    ..ModelOptions::default()
                };
                let model = qwen3_5::load_with(model_dir(v), options).unwrap();
                assert_eq!(model.plan().compile_layers, compile_layers);
                assert_logits_close(
                    &format!("{v}, compiled layers {compile_layers}"),
                    &three_then_steps(&model, &prompt),
                    &reference,
                    vocab,
                );
            }
        }
    })
}

/// A first token straight from an empty cache (no prefill: the conv state starts as zeros).
#[test]
fn fused_decode_from_empty_cache() {
    cpu(|| {
        let dir = model_dir("hf-bf16-untied");
        let run = |d: Decode| {
            let model = load(&dir, d);
            let mut cache = model.new_cache();
            let mut out = Vec::new();
            for t in [11u32, 12, 13] {
                let ids = Array::from_slice(&[t], &[1, 1]).unwrap();
                out.extend(to_f32(&model.forward(&ids, &mut cache).unwrap()));
            }
            assert_eq!(cache.offset(), 3);
            out
        };
        let vocab = load(&dir, Decode::Reference).config().text.vocab_size as usize;
        assert_logits_close(
            "from empty cache",
            &run(Decode::Fused),
            &run(Decode::Reference),
            vocab,
        );
    })
}

/// Batch of two sequences decoding together, fused vs ops.
#[test]
fn fused_decode_batch_of_two() {
    cpu(|| {
        let dir = model_dir("mlx-bf16-untied");
        let run = |d: Decode| {
            let model = load(&dir, d);
            let mut cache = model.new_cache();
            let ids = Array::from_slice(&[1u32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
            let mut out = to_f32(&model.forward(&ids, &mut cache).unwrap());
            for t in [9u32, 10] {
                let ids = Array::from_slice(&[t, t + 100], &[2, 1]).unwrap();
                out.extend(to_f32(&model.forward(&ids, &mut cache).unwrap()));
            }
            out
        };
        let vocab = load(&dir, Decode::Reference).config().text.vocab_size as usize;
        assert_logits_close(
            "batch of two",
            &run(Decode::Fused),
            &run(Decode::Reference),
            vocab,
        );
    })
}

/// CPU time this process has used, in ms (Linux; `None` elsewhere). Under a loaded machine
/// the CPU time per token is steadier than tokens per second.
fn cpu_time_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 10.0) // USER_HZ = 100 on Linux
}

fn greedy(model: &Model, prompt: &[u32], n: usize) -> (Vec<u32>, f64) {
    let opts = GenerateOptions {
        max_tokens: n,
        ..Default::default()
    };
    let mut stream = model.generate(prompt, opts).unwrap();
    let ids: Vec<u32> = (&mut stream).collect::<Result<_, _>>().unwrap();
    (ids, stream.stats().generation_tps())
}

#[test]
fn fused_greedy_generation_matches_ops() {
    cpu(|| {
        for v in VARIANTS {
            let prompt = [3u32, 1, 4, 1, 5, 9, 2, 6];
            let fused_ids = greedy(&load(model_dir(v), Decode::Fused), &prompt, 12).0;
            let ops_ids = greedy(&load(model_dir(v), Decode::Reference), &prompt, 12).0;
            assert_eq!(fused_ids, ops_ids, "{v}: greedy ids");
        }
    })
}

/// Times greedy decoding: the reference ops (the code before the fused forms) against
/// the fused decode, and on a GPU the fused decode without compiled layer steps too.
/// `QWEN3_5_BENCH_DIR` picks the model (default: a fixture), `QWEN3_5_BENCH_TOKENS` the
/// number of tokens (default 64), `QWEN3_5_BENCH_ROUNDS` the rounds (default 5),
/// `QWEN3_5_BENCH_GPU=1` the GPU (with MLX's memory limit set to 24 GB).
#[test]
#[ignore]
fn decode_speed() {
    let env_num = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let dir = std::env::var("QWEN3_5_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| model_dir("mlx-bf16-tied"));
    let n = env_num("QWEN3_5_BENCH_TOKENS", 64);
    let rounds = env_num("QWEN3_5_BENCH_ROUNDS", 5);
    let on_gpu = std::env::var("QWEN3_5_BENCH_GPU").as_deref() == Ok("1");
    let device = if on_gpu {
        mlx_rs::memory::set_memory_limit(24 << 30).unwrap();
        Device::gpu()
    } else {
        Device::cpu()
    };
    let defaults = ModelOptions::for_device(&device);
    let mut variants = vec![
        ("reference", defaults.with_decode(Decode::Reference)),
        ("fused", defaults),
    ];
    if on_gpu {
        let plain = ModelOptions {
            compile_layers: !defaults.compile_layers,
            ..defaults
        };
        variants.push(("fused, compiled layers toggled", plain));
    }
    mlx_rs::with_device(&device, || {
        let models: Vec<Model> = variants
            .iter()
            .map(|(_, o)| qwen3_5::load_with(&dir, *o).unwrap())
            .collect();
        let prompt: Vec<u32> = (0..16).map(|i| (i * 7 + 3) % 200).collect();
        // Warm up every variant (compile traces, JIT kernels).
        for model in &models {
            greedy(model, &prompt, 8);
        }
        let mut ids = Vec::new();
        let mut rates = vec![Vec::new(); models.len()];
        let mut cpu_ms = vec![Vec::new(); models.len()];
        // Alternate the variants so that load changes on the machine hit all alike.
        for round in 0..rounds {
            for (m, model) in models.iter().enumerate() {
                let c0 = cpu_time_ms();
                let (got, tps) = greedy(model, &prompt, n);
                if let (Some(c0), Some(c1)) = (c0, cpu_time_ms()) {
                    cpu_ms[m].push((c1 - c0) / n as f64);
                }
                println!("round {round} {}: {tps:.1} tokens/s", variants[m].0);
                rates[m].push(tps);
                ids.push(got);
            }
        }
        let sorted = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        };
        for (m, model) in models.iter().enumerate() {
            let r = sorted(&rates[m]);
            let c = sorted(&cpu_ms[m]);
            println!(
                "{} on {}: {} ({:?}): median {:.1}, best {:.1} tokens/s; least CPU time per token {} ({rounds} rounds of {n} tokens, prefill included in the CPU time)",
                dir.display(),
                if on_gpu { "GPU" } else { "CPU" },
                variants[m].0,
                model.plan(),
                r[r.len() / 2],
                r[r.len() - 1],
                c.first().map_or("n/a".to_string(), |x| format!("{x:.2} ms")),
            );
        }
        if !ids.windows(2).all(|w| w[0] == w[1]) {
            println!("note: the variants decoded different tokens (near-ties in a random model?)");
        }
    })
    .unwrap();
}

/// Writes a random-weight model whose DeltaNet heads fit the GPU kernels (Dk = 32, two
/// value heads per key head) into a fresh temporary folder.
fn kernel_shaped_model(tag: &str) -> std::path::PathBuf {
    kernel_shaped_model_as(tag, Dtype::Bfloat16)
}

/// [`kernel_shaped_model`] with its float weights (all but `A_log`) in `bf`.
fn kernel_shaped_model_as(tag: &str, bf: Dtype) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3_5-fused-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (hidden, inter, vocab) = (64, 96, 128);
    let (hk, hv, dk, dv, heads, kv, head_dim) = (1, 2, 32, 32, 2, 1, 32);
    let types = [
        "linear_attention",
        "linear_attention",
        "linear_attention",
        "full_attention",
    ];
    let config = serde_json::json!({
        "model_type": "qwen3_5",
        "text_config": {
            "attention_bias": false, "attn_output_gate": true, "full_attention_interval": 4,
            "head_dim": head_dim, "hidden_size": hidden, "intermediate_size": inter,
            "layer_types": types, "linear_conv_kernel_dim": 4, "linear_key_head_dim": dk,
            "linear_num_key_heads": hk, "linear_num_value_heads": hv, "linear_value_head_dim": dv,
            "max_position_embeddings": 4096, "model_type": "qwen3_5_text",
            "num_attention_heads": heads, "num_hidden_layers": types.len(),
            "num_key_value_heads": kv, "rms_norm_eps": 1e-6,
            "rope_parameters": {"mrope_interleaved": true, "mrope_section": [2, 1, 1],
                "partial_rotary_factor": 0.25, "rope_theta": 10000.0, "rope_type": "default"},
            "tie_word_embeddings": true, "vocab_size": vocab
        }
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut seed = 0u64;
    let mut w: Vec<(String, Array)> = Vec::new();
    let mut put = |name: String, shape: &[i32], loc: f32, scale: f32, dtype: Dtype| {
        seed += 1;
        let a = random::normal(
            shape,
            Dtype::Float32,
            loc,
            scale,
            Some(&random::key(seed).unwrap()),
        )
        .unwrap()
        .astype(dtype)
        .unwrap();
        w.push((name, a));
    };
    let p = "language_model.model.";
    let lin = |o: i32, i: i32| (vec![o, i], (i as f32).powf(-0.5));
    put(
        format!("{p}embed_tokens.weight"),
        &[vocab, hidden],
        0.0,
        0.5,
        bf,
    );
    put(format!("{p}norm.weight"), &[hidden], 1.0, 0.1, bf);
    for (i, t) in types.iter().enumerate() {
        let l = format!("{p}layers.{i}.");
        put(
            format!("{l}input_layernorm.weight"),
            &[hidden],
            1.0,
            0.1,
            bf,
        );
        put(
            format!("{l}post_attention_layernorm.weight"),
            &[hidden],
            1.0,
            0.1,
            bf,
        );
        for (name, (shape, sc)) in [
            ("mlp.gate_proj", lin(inter, hidden)),
            ("mlp.up_proj", lin(inter, hidden)),
            ("mlp.down_proj", lin(hidden, inter)),
        ] {
            put(format!("{l}{name}.weight"), &shape, 0.0, sc, bf);
        }
        if *t == "linear_attention" {
            let a = format!("{l}linear_attn.");
            let conv = 2 * hk * dk + hv * dv;
            for (name, (shape, sc)) in [
                ("in_proj_qkv", lin(conv, hidden)),
                ("in_proj_z", lin(hv * dv, hidden)),
                ("in_proj_b", lin(hv, hidden)),
                ("in_proj_a", lin(hv, hidden)),
                ("out_proj", lin(hidden, hv * dv)),
            ] {
                put(format!("{a}{name}.weight"), &shape, 0.0, sc, bf);
            }
            put(format!("{a}conv1d.weight"), &[conv, 4, 1], 0.0, 0.5, bf);
            put(format!("{a}A_log"), &[hv], 1.0, 0.5, Dtype::Float32);
            put(format!("{a}dt_bias"), &[hv], 1.0, 0.2, bf);
            put(format!("{a}norm.weight"), &[dv], 1.0, 0.1, bf);
        } else {
            let s = format!("{l}self_attn.");
            for (name, (shape, sc)) in [
                ("q_proj", lin(heads * head_dim * 2, hidden)),
                ("k_proj", lin(kv * head_dim, hidden)),
                ("v_proj", lin(kv * head_dim, hidden)),
                ("o_proj", lin(hidden, heads * head_dim)),
            ] {
                put(format!("{s}{name}.weight"), &shape, 0.0, sc, bf);
            }
            put(format!("{s}q_norm.weight"), &[head_dim], 1.0, 0.1, bf);
            put(format!("{s}k_norm.weight"), &[head_dim], 1.0, 0.1, bf);
        }
    }
    mlx_rs::io::save_safetensors(dir.join("model.safetensors"), w, [("format", "mlx")]).unwrap();
    dir
}

/// Largest |a − e| per row of `row` values.
fn row_max_diffs(a: &[f32], e: &[f32], row: usize) -> Vec<f32> {
    a.chunks(row)
        .zip(e.chunks(row))
        .map(|(a, e)| a.iter().zip(e).fold(0f32, |m, (x, y)| m.max((x - y).abs())))
        .collect()
}

/// The compiled layer steps (`src/model/layer_step.rs`, on by default on a GPU) against
/// the same fused decode without them, in float32 on the GPU, where the GPU's own ops are a
/// tight reference (a wrong input, offset or rounding point shows as an error of the
/// logits' own size, not of float rounding).
#[test]
#[ignore = "needs a CUDA GPU"]
fn compiled_layer_steps_match_fused_ops_in_float32() {
    gpu_f32_decode_option("compiled-layers", |compile_layers| ModelOptions {
        compile_layers,
        ..ModelOptions::for_device(&Device::gpu())
    });
}

/// Fused decode of a float32 kernel-shaped model on the GPU loaded with an option on and
/// off (`options(on)`): equal within float32 rounding (and TF32 products where MLX's
/// matmul takes them); a wrong index or rounding step is of the logits' size (~10).
fn gpu_f32_decode_option(name: &str, options: impl Fn(bool) -> ModelOptions) {
    let dir = kernel_shaped_model_as(&format!("{name}-f32"), Dtype::Float32);
    let (prompt, steps) = ([3u32, 9, 27, 81, 115], [7u32, 49, 95, 23, 1, 64, 5, 77]);
    let run = |on: bool| {
        gpu(|| {
            let model = qwen3_5::load_with(&dir, options(on)).unwrap();
            prompt_then_steps(&model, &prompt, &steps)
        })
    };
    let (with_option, without) = (run(true), run(false));
    let vocab = 128;
    println!(
        "{name}: max |diff| per row: {:?}",
        row_max_diffs(&with_option, &without, vocab)
    );
    assert_logits_close_rtol(
        &format!("GPU fused, {name} on vs off (float32)"),
        &with_option,
        &without,
        vocab,
        1e-3,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prompt then single steps; logits of every position.
fn prompt_then_steps(model: &Model, prompt: &[u32], steps: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    let ids = Array::from_slice(prompt, &[1, prompt.len() as i32]).unwrap();
    let mut out = to_f32(&model.forward(&ids, &mut cache).unwrap());
    for &t in steps {
        let ids = Array::from_slice(&[t], &[1, 1]).unwrap();
        out.extend(to_f32(&model.forward(&ids, &mut cache).unwrap()));
    }
    out
}

/// A model with kernel-sized heads (Dk = 32, Hv = 2 Hk): the fused mode on the CPU, and on
/// a GPU when there is one (the whole-layer kernel), against plain ops on the CPU.
#[test]
fn fused_decode_on_kernel_shaped_model() {
    let dir = kernel_shaped_model("kernel-shaped");
    let (prompt, steps) = ([3u32, 9, 27, 81, 115], [7u32, 49, 95, 23, 1, 64]);
    let (reference, vocab) = cpu(|| {
        let model = load(&dir, Decode::Reference);
        let out = prompt_then_steps(&model, &prompt, &steps);
        (out, model.config().text.vocab_size as usize)
    });
    let fused_cpu = cpu(|| prompt_then_steps(&load(&dir, Decode::Fused), &prompt, &steps));
    assert_logits_close("fused CPU vs ops", &fused_cpu, &reference, vocab);
    match StepPath::gpu_kernel() {
        None => println!("skipped the GPU half: no GPU"),
        Some(kernel) => {
            // The GPU's own reference: its matmuls round bf16 differently from the CPU's,
            // so across devices the prompt's logits differ by a few bf16 ulps of the row's
            // scale (measured on an H200: 0.125 at scale ~11, 2 ulps), and on this tiny
            // random model the differences grow over the decode steps (row 3 differed by
            // 0.73 at scale ~13 on an H200). Across devices only the prompt row is held to
            // a tolerance. The fused forms are held against the GPU's plain ops at every
            // step, with the same few-ulp tolerance: their kernels sum in another order
            // and round exp/rsqrt differently, and on the GPU (unlike the CPU, where the
            // fused forms are bit-identical) that grows over the steps too (H200: 3 ulps,
            // 0.375 at scale ~12.7, by the sixth step; the margin is thin).
            let gpu_ops =
                gpu(|| prompt_then_steps(&load(&dir, Decode::Reference), &prompt, &steps));
            assert_logits_close_rtol(
                "GPU ops vs CPU ops, prompt row",
                &gpu_ops[..vocab],
                &reference[..vocab],
                vocab,
                CROSS_DEVICE_ROW_RTOL,
            );
            // The fused decode with and without compiled layer steps.
            for compile_layers in [true, false] {
                let got = gpu(|| {
                    let options = ModelOptions {
                        compile_layers,
                        ..ModelOptions::default()
                    };
                    let model = qwen3_5::load_with(&dir, options).unwrap();
                    assert_eq!(model.plan().step, kernel);
                    prompt_then_steps(&model, &prompt, &steps)
                });
                assert_logits_close_rtol(
                    &format!("GPU fused (compiled layers {compile_layers}) vs GPU ops"),
                    &got,
                    &gpu_ops,
                    vocab,
                    CROSS_DEVICE_ROW_RTOL,
                );
                println!(
                    "GPU fused ({kernel:?}, compiled layers {compile_layers}) matches the GPU ops"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
