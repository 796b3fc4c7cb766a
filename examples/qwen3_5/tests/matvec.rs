//! The CUDA matvec kernel (`src/model/matvec.rs`) against MLX's own ops on the same GPU:
//! every prologue (none, RMSNorm, DeltaNet's gated norm) and epilogue (none, residual
//! add, SwiGLU), float32 and bfloat16, one and two rows, an output width that does not
//! fill the last block and a weight whose data is not 16-byte aligned. The GPU tests are
//! ignored by default; on the GPU machine: `matvec-<hash> --ignored`. The argument checks
//! run everywhere.

mod common;

use common::{gpu, kernel_rtol, max_rel_diff};
use mlx_rs::{fast, ops, random, Array, Device, Dtype};
use qwen3_5::model::matvec::{fits, matvec, Epilogue, Prologue, MAX_K};

/// Asserts `got` within [`kernel_rtol`] of `want` (relative to the largest |want|).
fn close(what: &str, got: &Array, want: &Array) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let err = max_rel_diff(got, want);
    assert!(
        err <= kernel_rtol(want.dtype()),
        "{what}: max error {err:.2e} of the row scale"
    );
}

fn normal(shape: &[i32], seed: u64, dtype: Dtype, scale: f32) -> Array {
    let key = random::key(seed).unwrap();
    random::normal(shape, Dtype::Float32, 0.0, scale, Some(&key))
        .unwrap()
        .astype(dtype)
        .unwrap()
}

fn silu(x: &Array) -> Array {
    x.multiply(&ops::sigmoid(x).unwrap()).unwrap()
}

const EPS: f32 = 1e-6;

#[test]
fn fits_and_argument_checks() {
    let w = ops::zeros(&[8, 64], Dtype::Float32).unwrap();
    assert!(fits(&w, Dtype::Float32));
    assert!(
        !fits(&w, Dtype::Bfloat16),
        "weight and activation dtypes differ"
    );
    let odd = ops::zeros(&[8, 6], Dtype::Float32).unwrap();
    assert!(
        !fits(&odd, Dtype::Float32),
        "6 floats are not whole 16-byte vectors"
    );
    let wide = ops::zeros(&[1, MAX_K + 4], Dtype::Float32).unwrap();
    assert!(!fits(&wide, Dtype::Float32), "past MAX_K");
    let ints = ops::zeros(&[8, 64], Dtype::Int32).unwrap();
    assert!(!fits(&ints, Dtype::Int32));

    // Every misfit is an error before any launch (these run on any device).
    let x = ops::zeros(&[2, 64], Dtype::Float32).unwrap();
    let bad_x = ops::zeros(&[2, 1, 64], Dtype::Float32).unwrap();
    let g = ops::ones(&[64], Dtype::Float32).unwrap();
    let short_g = ops::ones(&[32], Dtype::Float32).unwrap();
    let r_wrong = ops::zeros(&[2, 9], Dtype::Float32).unwrap();
    let odd_rows = ops::zeros(&[7, 64], Dtype::Float32).unwrap();
    let z_wrong = ops::zeros(&[1, 64], Dtype::Float32).unwrap();
    let cases: Vec<(&str, Result<(), String>, &str)> = vec![
        (
            "3-D x",
            run(&bad_x, &w, Prologue::None, Epilogue::None),
            "[B, K]",
        ),
        (
            "inner sizes",
            run(
                &x,
                &ops::zeros(&[8, 32], Dtype::Float32).unwrap(),
                Prologue::None,
                Epilogue::None,
            ),
            "do not fit",
        ),
        (
            "norm weight",
            run(&x, &w, Prologue::Norm(&short_g), Epilogue::None),
            "norm weight",
        ),
        (
            "residual",
            run(&x, &w, Prologue::None, Epilogue::Residual(&r_wrong)),
            "residual",
        ),
        (
            "SwiGLU rows",
            run(&x, &odd_rows, Prologue::None, Epilogue::SwiGlu),
            "even row count",
        ),
        (
            "gated z",
            run(
                &x,
                &w,
                Prologue::GatedNorm {
                    g: &short_g,
                    z: &z_wrong,
                    head: 32,
                },
                Epilogue::None,
            ),
            "gated norm",
        ),
        (
            "gated head",
            run(
                &x,
                &w,
                Prologue::GatedNorm {
                    g: &g,
                    z: &x,
                    head: 48,
                },
                Epilogue::None,
            ),
            "gated norm",
        ),
    ];
    for (what, got, needle) in cases {
        let err = got.expect_err(what);
        assert!(err.contains(needle), "{what}: {err}");
    }
}

fn run(x: &Array, w: &Array, pro: Prologue, epi: Epilogue) -> Result<(), String> {
    matvec(x, w, pro, epi, EPS)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// MLX's ops for the same product: `epilogue(prologue(x) · Wᵀ)`.
fn reference(x: &Array, w: &Array, pro: Prologue, epi: Epilogue) -> Array {
    let input = match pro {
        Prologue::None => x.clone(),
        Prologue::Norm(g) => fast::rms_norm(x, Some(g), EPS).unwrap(),
        Prologue::GatedNorm { g, z, head } => {
            let (b, k) = (x.dim(0), x.dim(1));
            let heads = [b, k / head, head];
            let normed = fast::rms_norm(&x.reshape(&heads).unwrap(), Some(g), EPS).unwrap();
            let gate = silu(&z.reshape(&heads).unwrap().astype(Dtype::Float32).unwrap());
            gate.multiply(&normed.astype(Dtype::Float32).unwrap())
                .unwrap()
                .astype(x.dtype())
                .unwrap()
                .reshape(&[b, k])
                .unwrap()
        }
    };
    let y = ops::matmul(&input, &ops::transpose(w).unwrap()).unwrap();
    match epi {
        Epilogue::None => y,
        Epilogue::Residual(r) => r.add(&y).unwrap(),
        Epilogue::SwiGlu => {
            let halves = ops::split(&y, 2, -1).unwrap();
            silu(&halves[0]).multiply(&halves[1]).unwrap()
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_form_matches_mlx_ops() {
    let mut failures = Vec::new();
    gpu(|| {
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            for b in [1, 2] {
                // K = 512 (8 heads of 64 for the gated norm); N = 300 leaves the last
                // block of 8 warps part-empty.
                let (k, n, head) = (512, 300, 64);
                let x = normal(&[b, k], 1, dtype, 1.0);
                let w = normal(&[n, k], 2, dtype, 0.05);
                let w2 = normal(&[2 * n, k], 3, dtype, 0.05);
                let g = normal(&[k], 4, dtype, 0.3)
                    .add(&Array::scalar(1.0f32).astype(dtype).unwrap())
                    .unwrap();
                let gh = normal(&[head], 5, dtype, 0.3)
                    .add(&Array::scalar(1.0f32).astype(dtype).unwrap())
                    .unwrap();
                let z = normal(&[b, k], 6, dtype, 1.0);
                let r = normal(&[b, n], 7, dtype, 1.0);
                let forms: [(&str, Prologue, Epilogue, &Array); 5] = [
                    ("plain", Prologue::None, Epilogue::None, &w),
                    ("norm", Prologue::Norm(&g), Epilogue::None, &w),
                    ("residual", Prologue::None, Epilogue::Residual(&r), &w),
                    ("norm + SwiGLU", Prologue::Norm(&g), Epilogue::SwiGlu, &w2),
                    (
                        "gated norm + residual",
                        Prologue::GatedNorm {
                            g: &gh,
                            z: &z,
                            head,
                        },
                        Epilogue::Residual(&r),
                        &w,
                    ),
                ];
                for (what, pro, epi, weight) in forms {
                    let got = matvec(&x, weight, pro, epi, EPS).unwrap();
                    // float32: the CPU's exact products (MLX's CUDA matmul may take TF32
                    // for several rows, 2^-10 relative); bfloat16: the GPU's own ops.
                    let want = if dtype == Dtype::Float32 {
                        mlx_rs::with_device(&Device::cpu(), || reference(&x, weight, pro, epi))
                            .unwrap()
                    } else {
                        reference(&x, weight, pro, epi)
                    };
                    let err = max_rel_diff(&got, &want);
                    println!("{what} {dtype:?} B={b}: max error {err:.2e} of the row scale");
                    failures.extend(
                        (err > kernel_rtol(dtype))
                            .then(|| format!("{what} {dtype:?} B={b}: {err:.2e}")),
                    );
                }
            }
        }
    });
    assert!(failures.is_empty(), "past the tolerance: {failures:?}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn unaligned_weight_takes_the_element_loop() {
    gpu(|| {
        let (k, n) = (256, 40);
        let x = normal(&[1, k], 11, Dtype::Bfloat16, 1.0);
        // A view one element into a flat buffer: row-contiguous, 2 bytes off alignment.
        let flat = normal(&[n * k + 1], 12, Dtype::Bfloat16, 0.05);
        let w = ops::slice(&flat, &[1], &[n * k + 1], &[1])
            .unwrap()
            .reshape(&[n, k])
            .unwrap();
        let got = matvec(&x, &w, Prologue::None, Epilogue::None, EPS).unwrap();
        close(
            "unaligned",
            &got,
            &reference(&x, &w, Prologue::None, Epilogue::None),
        );
    });
}
