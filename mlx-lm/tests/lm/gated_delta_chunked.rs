//! The chunked gated delta rule (prefill) against the sequential reference form: lengths
//! that are not multiples of the chunk, with and without a starting state, Hv = Hk and
//! Hv > Hk, float32 and bfloat16 inputs, several chunk sizes, a repeated-key stress case;
//! a plain host-side loop as an independent check of both forms; the dispatch of
//! `gated_delta_update` on its options; and bad inputs.

use crate::common::normal;
use mlx_lm::kernels::cpu_gemm::CpuProducts;
use mlx_lm::kernels::gated_delta::chunked::gated_delta_chunked;
use mlx_lm::kernels::gated_delta::ops::{decay, gated_delta_sequential};
use mlx_lm::kernels::gated_delta::{
    gated_delta_update, GatedDeltaOptions, Prefill, StepPath, DEFAULT_CHUNK,
};
use mlx_rs::{ops, Array, Dtype};

/// float32 inputs: |chunked − sequential| ≤ F32_TOL · max |sequential| (per output or
/// state). Both forms compute in float32; they differ only in the order of the sums
/// (a 64-term matmul versus 64 chained updates) and in the UT transform, which adds a
/// few roundings of values of the output's own size, so a few 1e-6 of the scale is what
/// float32 gives; 1e-4 keeps a wide margin while a wrong decay, a missing β or an
/// off-by-one chunk boundary moves values by 1e-2 or more of the scale.
const F32_TOL: f32 = 1e-4;
/// bfloat16 inputs: outputs are rounded to bfloat16 (8 significant bits) by both forms,
/// so two float32 values a hair apart may round one bf16 ulp apart: 2⁻⁷ of the value
/// plus F32_TOL of the scale. States stay float32 (F32_TOL).
const BF16_RTOL: f32 = 1.0 / 128.0;

/// Runs on the CPU, or on the GPU with `MLX_LM_TEST_DEVICE=gpu` (a CUDA or Metal
/// build; set `MLX_ENABLE_TF32=0` there, since CUDA's default TF32 matmuls round to 10
/// mantissa bits, far coarser than the float32 tolerance here).
fn cpu<T>(f: impl FnOnce() -> T) -> T {
    mlx_rs::with_device(&test_device(), f).unwrap()
}

fn test_device() -> mlx_rs::Device {
    match std::env::var("MLX_LM_TEST_DEVICE").as_deref() {
        Ok("gpu") => mlx_rs::Device::gpu(),
        _ => mlx_rs::Device::cpu(),
    }
}

/// How the float32 products run: as a Qwen 3.5 model on the test device would by default
/// (the packed GEMM on the CPU except on macOS, on up to 8 threads; MLX on a GPU).
fn products() -> Option<CpuProducts> {
    let on_cpu = test_device()
        .kind()
        .is_ok_and(|k| k == mlx_rs::DeviceType::Cpu);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    on_cpu.then_some(CpuProducts {
        gemm: !cfg!(target_os = "macos"),
        threads: cores.clamp(1, 8),
    })
}

/// Inputs shaped like a DeltaNet layer's: unit-norm keys, queries of norm Dk^-1/2,
/// β = sigmoid(normal), and per-head decay rates from very slow (g ≈ 0.999, so the state
/// carries across many chunks) to fast (g ≈ e^-8).
struct Inputs {
    q: Array,
    k: Array,
    v: Array,
    log_g: Array,
    beta: Array,
    state: Array,
}

fn l2_normalize(x: &Array) -> Array {
    let norm = ops::sqrt(&ops::sum_axis(&x.square().unwrap(), -1, true).unwrap()).unwrap();
    x.divide(&norm).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn inputs(
    b: i32,
    t: i32,
    hk: i32,
    hv: i32,
    dk: i32,
    dv: i32,
    dtype: Dtype,
    with_state: bool,
    seed: u64,
) -> Inputs {
    let q = l2_normalize(&normal(&[b, t, hk, dk], seed, Dtype::Float32))
        .multiply(&Array::scalar((dk as f32).powf(-0.5)))
        .unwrap();
    let k = l2_normalize(&normal(&[b, t, hk, dk], seed + 1, Dtype::Float32));
    let v = normal(&[b, t, hv, dv], seed + 2, Dtype::Float32);
    // Rates spread over heads: exp(-7) … exp(2).
    let rates: Vec<f32> = (0..hv)
        .map(|h| (-7.0 + 9.0 * h as f32 / (hv.max(2) - 1) as f32).exp())
        .collect();
    let rate = Array::from_slice(&rates, &[hv]).unwrap();
    let x = normal(&[b, t, hv], seed + 3, Dtype::Float32);
    let softplus = ops::logaddexp(&x, &Array::scalar(0f32)).unwrap();
    let log_g = rate.multiply(&softplus).unwrap().negative().unwrap();
    let beta = ops::sigmoid(&normal(&[b, t, hv], seed + 4, Dtype::Float32)).unwrap();
    let state = if with_state {
        normal(&[b, hv, dv, dk], seed + 5, Dtype::Float32)
            .multiply(&Array::scalar(0.5f32))
            .unwrap()
    } else {
        ops::zeros(&[b, hv, dv, dk], Dtype::Float32).unwrap()
    };
    let cast = |a: Array| a.astype(dtype).unwrap();
    Inputs {
        q: cast(q),
        k: cast(k),
        v: cast(v),
        log_g,
        beta: cast(beta),
        state,
    }
}

fn f32s(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

/// Asserts |a − e| ≤ tol · max|e| + rtol · |e| element-wise.
fn assert_near(what: &str, actual: &Array, expected: &Array, tol: f32, rtol: f32) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    let (a, e) = (f32s(actual), f32s(expected));
    let scale = e.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "{what}: the reference is all zeros");
    let mut worst = (0usize, 0f32);
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        assert!(x.is_finite(), "{what}: non-finite value at {i}");
        let excess = (x - y).abs() - (tol * scale + rtol * y.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    assert!(
        worst.1 == 0.0,
        "{what}: element {} is {} but the sequential form gives {} (scale {scale})",
        worst.0,
        a[worst.0],
        e[worst.0]
    );
}

fn check(what: &str, x: &Inputs, chunk: i32, out_rtol: f32) -> (Array, Array) {
    let (y, s) = gated_delta_chunked(
        &x.q,
        &x.k,
        &x.v,
        &x.log_g,
        &x.beta,
        &x.state,
        chunk,
        products(),
    )
    .unwrap();
    let g = ops::exp(&x.log_g).unwrap();
    let (y_ref, s_ref) = gated_delta_sequential(&x.q, &x.k, &x.v, &g, &x.beta, &x.state).unwrap();
    assert_eq!(y.dtype(), x.q.dtype(), "{what}: output dtype");
    assert_eq!(s.dtype(), Dtype::Float32, "{what}: state dtype");
    assert_near(&format!("{what}: y"), &y, &y_ref, F32_TOL, out_rtol);
    assert_near(&format!("{what}: state"), &s, &s_ref, F32_TOL, 0.0);
    (y, s)
}

#[test]
fn matches_sequential_on_odd_lengths_f32() {
    cpu(|| {
        for (i, &t) in [1, 2, 63, 64, 65, 130, 200].iter().enumerate() {
            for with_state in [false, true] {
                let x = inputs(
                    1,
                    t,
                    4,
                    4,
                    32,
                    16,
                    Dtype::Float32,
                    with_state,
                    10 * i as u64,
                );
                check(
                    &format!("T={t}, state={with_state}, Hv=Hk"),
                    &x,
                    DEFAULT_CHUNK,
                    0.0,
                );
            }
        }
    })
}

#[test]
fn matches_sequential_with_more_value_heads() {
    cpu(|| {
        for (i, &t) in [1, 65, 130].iter().enumerate() {
            for with_state in [false, true] {
                // Hv = 3·Hk, batch 2, Dk ≠ Dv.
                let x = inputs(
                    2,
                    t,
                    2,
                    6,
                    32,
                    24,
                    Dtype::Float32,
                    with_state,
                    100 + i as u64,
                );
                check(
                    &format!("T={t}, state={with_state}, Hv=3Hk"),
                    &x,
                    DEFAULT_CHUNK,
                    0.0,
                );
            }
        }
    })
}

#[test]
fn matches_sequential_with_bf16_inputs() {
    cpu(|| {
        for (i, &t) in [1, 63, 65, 200].iter().enumerate() {
            for (hk, hv) in [(4, 4), (2, 4)] {
                let x = inputs(
                    1,
                    t,
                    hk,
                    hv,
                    64,
                    32,
                    Dtype::Bfloat16,
                    i % 2 == 1,
                    200 + i as u64,
                );
                check(
                    &format!("bf16, T={t}, Hk={hk}, Hv={hv}"),
                    &x,
                    DEFAULT_CHUNK,
                    BF16_RTOL,
                );
            }
        }
    })
}

#[test]
fn any_chunk_size_gives_the_same_result() {
    cpu(|| {
        let x = inputs(1, 100, 2, 4, 32, 16, Dtype::Float32, true, 300);
        for chunk in [1, 7, 16, 48, 64, 128, 256] {
            check(&format!("chunk {chunk}"), &x, chunk, 0.0);
        }
    })
}

#[test]
fn real_head_sizes() {
    // Qwen 3.5 2B's DeltaNet heads: 16 × (128, 128); a prompt of 3 chunks and a bit.
    cpu(|| {
        let x = inputs(1, 200, 16, 16, 128, 128, Dtype::Float32, true, 400);
        check("16 heads of 128", &x, DEFAULT_CHUNK, 0.0);
    })
}

#[test]
fn repeated_keys_stay_stable() {
    // One key repeated, β ≈ 1, almost no decay: I + A is then nearly the all-ones lower
    // triangle, whose inverse is small (bidiagonal) while the Neumann series' terms are
    // binomial coefficients up to C(63, 31) ≈ 1e18. The block-doubling inverse must
    // stay accurate.
    cpu(|| {
        let (t, h, d) = (130, 2, 32);
        let key = l2_normalize(&normal(&[1, 1, h, d], 500, Dtype::Float32));
        let k = ops::broadcast_to(&key, &[1, t, h, d]).unwrap();
        let k = ops::contiguous(&k, false).unwrap();
        let q = l2_normalize(&normal(&[1, t, h, d], 501, Dtype::Float32))
            .multiply(&Array::scalar((d as f32).powf(-0.5)))
            .unwrap();
        let x = Inputs {
            q,
            k,
            v: normal(&[1, t, h, d], 502, Dtype::Float32),
            log_g: ops::full(&[1, t, h], &Array::scalar(-1e-3f32), Dtype::Float32).unwrap(),
            beta: ops::full(&[1, t, h], &Array::scalar(0.999f32), Dtype::Float32).unwrap(),
            state: normal(&[1, h, d, d], 503, Dtype::Float32),
        };
        check("repeated key", &x, DEFAULT_CHUNK, 0.0);
    })
}

#[test]
fn strong_decay_does_not_overflow() {
    // g = e^-60 per token: e^γ underflows to 0 inside a chunk; nothing may become NaN.
    cpu(|| {
        let mut x = inputs(1, 70, 2, 2, 16, 16, Dtype::Float32, true, 600);
        x.log_g = ops::full(&[1, 70, 2], &Array::scalar(-60f32), Dtype::Float32).unwrap();
        check("strong decay", &x, DEFAULT_CHUNK, 0.0);
    })
}

/// The rule written out on the host, one token at a time (an independent check of the
/// head mapping and of the update order).
fn host_reference(x: &Inputs) -> (Vec<f32>, Vec<f32>) {
    let (b, t, hk, dk) = (
        x.q.dim(0) as usize,
        x.q.dim(1) as usize,
        x.q.dim(2) as usize,
        x.q.dim(3) as usize,
    );
    let (hv, dv) = (x.v.dim(2) as usize, x.v.dim(3) as usize);
    let (q, k, v) = (f32s(&x.q), f32s(&x.k), f32s(&x.v));
    let (lg, beta) = (f32s(&x.log_g), f32s(&x.beta));
    let mut s = f32s(&x.state);
    let mut y = vec![0f32; b * t * hv * dv];
    for bi in 0..b {
        for h in 0..hv {
            let kh = h / (hv / hk);
            let st = &mut s[(bi * hv + h) * dv * dk..(bi * hv + h + 1) * dv * dk];
            for ti in 0..t {
                let qk = |a: &[f32], j: usize| a[((bi * t + ti) * hk + kh) * dk + j];
                let g = lg[(bi * t + ti) * hv + h].exp();
                let bt = beta[(bi * t + ti) * hv + h];
                for r in 0..dv {
                    let row = &mut st[r * dk..(r + 1) * dk];
                    row.iter_mut().for_each(|e| *e *= g);
                    let mem: f32 = (0..dk).map(|j| row[j] * qk(&k, j)).sum();
                    let delta = bt * (v[((bi * t + ti) * hv + h) * dv + r] - mem);
                    for (j, e) in row.iter_mut().enumerate() {
                        *e += delta * qk(&k, j);
                    }
                    y[((bi * t + ti) * hv + h) * dv + r] =
                        (0..dk).map(|j| row[j] * qk(&q, j)).sum();
                }
            }
        }
    }
    (y, s)
}

#[test]
fn both_forms_match_a_host_loop() {
    cpu(|| {
        let x = inputs(2, 70, 2, 4, 16, 8, Dtype::Float32, true, 700);
        let (y, s) = check("host", &x, 16, 0.0);
        let (y_host, s_host) = host_reference(&x);
        let (y_arr, s_arr) = (
            Array::from_slice(&y_host, y.shape()).unwrap(),
            Array::from_slice(&s_host, s.shape()).unwrap(),
        );
        assert_near("host loop: y", &y, &y_arr, F32_TOL, 0.0);
        assert_near("host loop: state", &s, &s_arr, F32_TOL, 0.0);
    })
}

#[test]
fn update_dispatches_on_its_options() {
    cpu(|| {
        let x = inputs(1, 80, 2, 2, 16, 16, Dtype::Float32, true, 800);
        // Raw gate inputs: a (before softplus), b (before sigmoid), A_log, dt_bias.
        let a = normal(&[1, 80, 2], 801, Dtype::Float32);
        let b = normal(&[1, 80, 2], 802, Dtype::Float32);
        let a_log = Array::from_slice(&[-1.0f32, 0.5], &[2]).unwrap();
        let dt_bias = Array::from_slice(&[0.25f32, -0.5], &[2]).unwrap();
        let g = decay(&a_log, &a, &dt_bias).unwrap();
        let beta = ops::sigmoid(&b).unwrap();
        let run = |q: &Array, k: &Array, v: &Array, a: &Array, b: &Array, o: GatedDeltaOptions| {
            gated_delta_update(q, k, v, a, b, &a_log, &dt_bias, &x.state, &o)
        };
        let options = |step, prefill| GatedDeltaOptions {
            step,
            prefill,
            cpu: products(),
            short_prefill: None,
        };
        let (y_ref, s_ref) = gated_delta_sequential(&x.q, &x.k, &x.v, &g, &beta, &x.state).unwrap();
        // Sequential prefill runs exactly the reference form.
        let (y_seq, s_seq) = run(
            &x.q,
            &x.k,
            &x.v,
            &a,
            &b,
            options(StepPath::Ops, Prefill::Sequential),
        )
        .unwrap();
        assert_eq!(f32s(&y_seq), f32s(&y_ref));
        assert_eq!(f32s(&s_seq), f32s(&s_ref));
        let chunked = options(StepPath::Ops, Prefill::Chunked(DEFAULT_CHUNK));
        assert_eq!(GatedDeltaOptions::default().prefill, chunked.prefill);
        let (y_ch, s_ch) = run(&x.q, &x.k, &x.v, &a, &b, chunked).unwrap();
        assert_near("chunked update", &y_ch, &y_ref, F32_TOL, 0.0);
        assert_near("chunked update: state", &s_ch, &s_ref, F32_TOL, 0.0);
        assert!(run(
            &x.q,
            &x.k,
            &x.v,
            &a,
            &b,
            options(StepPath::Ops, Prefill::Chunked(0))
        )
        .is_err());
        // One token: the reference ops exactly, and the compiled step within rounding.
        let first = |t: &Array| {
            let mut stop = t.shape().to_vec();
            stop[1] = 1;
            let start = vec![0; stop.len()];
            ops::slice(t, &start, &stop, &vec![1; stop.len()]).unwrap()
        };
        let (q1, k1, v1, a1, b1) = (first(&x.q), first(&x.k), first(&x.v), first(&a), first(&b));
        let (y1_ref, s1_ref) =
            gated_delta_sequential(&q1, &k1, &v1, &first(&g), &first(&beta), &x.state).unwrap();
        let (y1, s1) = run(&q1, &k1, &v1, &a1, &b1, chunked).unwrap();
        assert_eq!(f32s(&y1), f32s(&y1_ref));
        assert_eq!(f32s(&s1), f32s(&s1_ref));
        let (y1c, s1c) = run(
            &q1,
            &k1,
            &v1,
            &a1,
            &b1,
            options(StepPath::Compiled, Prefill::Sequential),
        )
        .unwrap();
        assert_eq!(y1c.shape(), y1_ref.shape());
        assert_near("compiled step", &y1c, &y1_ref, F32_TOL, 0.0);
        assert_near("compiled step: state", &s1c, &s1_ref, F32_TOL, 0.0);
    })
}

#[test]
fn bad_inputs_are_errors() {
    cpu(|| {
        let x = inputs(1, 10, 2, 4, 16, 8, Dtype::Float32, false, 900);
        let run = |q: &Array, k: &Array, v: &Array, lg: &Array, b: &Array, s: &Array, c: i32| {
            gated_delta_chunked(q, k, v, lg, b, s, c, products())
        };
        let msg = |r: mlx_lm::Result<(Array, Array)>| match r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert!(msg(run(&x.q, &x.k, &x.v, &x.log_g, &x.beta, &x.state, 0)).contains("chunk"));
        let k3 = ops::zeros(&[1, 10, 3, 16], Dtype::Float32).unwrap();
        assert!(
            msg(run(&k3, &k3, &x.v, &x.log_g, &x.beta, &x.state, 64)).contains("not a multiple")
        );
        assert!(msg(run(
            &x.q,
            &x.q.reshape(&[1, 10, 32]).unwrap(),
            &x.v,
            &x.log_g,
            &x.beta,
            &x.state,
            64
        ))
        .contains("differs"));
        let short_g = ops::zeros(&[1, 9, 4], Dtype::Float32).unwrap();
        assert!(msg(run(&x.q, &x.k, &x.v, &short_g, &x.beta, &x.state, 64)).contains("log_g"));
        let bad_state = ops::zeros(&[1, 4, 16, 8], Dtype::Float32).unwrap();
        assert!(msg(run(&x.q, &x.k, &x.v, &x.log_g, &x.beta, &bad_state, 64)).contains("state"));
        let v_len = ops::zeros(&[1, 11, 4, 8], Dtype::Float32).unwrap();
        assert!(msg(run(&x.q, &x.k, &v_len, &x.log_g, &x.beta, &x.state, 64)).contains("length"));
    })
}

#[test]
#[ignore = "timing only: cargo test --release -p mlx-lm --test lm -- --ignored --nocapture timing_of_both_forms"]
fn timing_of_both_forms() {
    cpu(|| {
        for &t in &[64, 512] {
            let x = inputs(1, t, 16, 16, 128, 128, Dtype::Float32, true, 1000);
            mlx_rs::eval(&[&x.q, &x.k, &x.v, &x.log_g, &x.beta, &x.state]).unwrap();
            let g = ops::exp(&x.log_g).unwrap();
            g.eval().unwrap();
            for round in 0..3 {
                let start = std::time::Instant::now();
                let (y, s) = gated_delta_chunked(
                    &x.q,
                    &x.k,
                    &x.v,
                    &x.log_g,
                    &x.beta,
                    &x.state,
                    64,
                    products(),
                )
                .unwrap();
                mlx_rs::eval(&[&y, &s]).unwrap();
                let chunked = start.elapsed();
                let start = std::time::Instant::now();
                let (y, s) =
                    gated_delta_sequential(&x.q, &x.k, &x.v, &g, &x.beta, &x.state).unwrap();
                mlx_rs::eval(&[&y, &s]).unwrap();
                let sequential = start.elapsed();
                println!("T={t} round {round}: chunked {chunked:?}, sequential {sequential:?}");
            }
        }
    })
}
