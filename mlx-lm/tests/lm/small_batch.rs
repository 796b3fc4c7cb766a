//! The small-batch product kernel (`mlx_lm::kernels::small_batch`): which shapes it takes
//! (here), and on a CUDA GPU its products against MLX's matmul and a row's result alone
//! against the row in a batch (ignored by default; on the GPU machine:
//! `lm-<hash> --ignored small_batch`). The kernel's text also runs emulated on the CPU:
//! `examples/qwen3_5/tests/kernel_emulation/emulate_small_batch.py`.

use crate::common::{gpu, normal};
use mlx_lm::kernels::small_batch::{fits, matmul_nt, MAX_ROWS};
use mlx_rs::{ops, Array, Dtype};

#[test]
fn shapes_the_kernel_takes() {
    let x = |shape: &[i32], dtype| normal(shape, 1, dtype);
    let w = normal(&[24, 64], 2, Dtype::Bfloat16);
    assert!(fits(&x(&[4, 64], Dtype::Bfloat16), &w, MAX_ROWS));
    assert!(
        fits(&x(&[2, 1, 64], Dtype::Bfloat16), &w, MAX_ROWS),
        "[B, 1, K]"
    );
    assert!(fits(&x(&[16, 64], Dtype::Bfloat16), &w, 16));
    assert!(
        !fits(&x(&[17, 64], Dtype::Bfloat16), &w, 16),
        "more rows than asked"
    );
    assert!(
        !fits(&x(&[1, 64], Dtype::Bfloat16), &w, MAX_ROWS),
        "one row: MLX's GEMV"
    );
    assert!(!fits(&x(&[4, 64], Dtype::Bfloat16), &w, 0), "0: never");
    assert!(
        !fits(&x(&[4, 64], Dtype::Float32), &w, MAX_ROWS),
        "dtypes differ"
    );
    assert!(
        !fits(&x(&[4, 32], Dtype::Bfloat16), &w, MAX_ROWS),
        "inner sizes differ"
    );
    let odd = normal(&[24, 60], 3, Dtype::Bfloat16);
    assert!(
        !fits(&x(&[4, 60], Dtype::Bfloat16), &odd, MAX_ROWS),
        "K not a multiple of 8"
    );
    let ints = Array::from_slice(&[1i32; 128], &[2, 64]).unwrap();
    let int_w = Array::from_slice(&[1i32; 1536], &[24, 64]).unwrap();
    assert!(!fits(&ints, &int_w, MAX_ROWS), "integers");
    assert!(!fits(
        &x(&[4, 64], Dtype::Bfloat16),
        &x(&[24, 64, 1], Dtype::Bfloat16),
        MAX_ROWS
    ));
}

#[test]
fn shapes_it_refuses_are_errors_before_any_launch() {
    let w = normal(&[24, 64], 2, Dtype::Float32);
    let err = matmul_nt(&normal(&[3, 60], 1, Dtype::Float32), &w).unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");
    assert!(matmul_nt(&normal(&[1, 64], 1, Dtype::Float32), &w).is_err());
}

/// The kernel against MLX's matmul, relative to each row's scale: float32 within TF32's
/// error (MLX's float32 products take TF32 on CUDA; with `MLX_ENABLE_TF32=0` within float32
/// rounding), 16-bit types within two ulps; and each row's result equal bit for bit to the
/// same row in another batch (its partners and its place changed).
#[test]
#[ignore = "needs a CUDA GPU"]
fn small_batch_matches_mlx_matmul() {
    gpu(|| {
        let tf32_off = std::env::var("MLX_ENABLE_TF32").is_ok_and(|v| v == "0");
        for dtype in [Dtype::Float32, Dtype::Bfloat16, Dtype::Float16] {
            let rtol = match dtype {
                Dtype::Float32 if tf32_off => 1e-5,
                Dtype::Float32 => 2e-3,
                _ => 2.0 / 128.0,
            };
            // (rows, N, K): the 2B's products (hidden 2048, MLP 6144) and odd sizes.
            for (m, n, k) in [
                (2, 2048, 6144),
                (3, 12288, 2048),
                (8, 1000, 520),
                (9, 13, 264),
                (16, 4096, 2048),
                (17, 72, 136),
            ] {
                let x = normal(&[m, k], 10 + m as u64, dtype);
                let w = normal(&[n, k], 20 + n as u64, dtype)
                    .multiply(&Array::scalar((k as f32).powf(-0.5)))
                    .unwrap()
                    .astype(dtype)
                    .unwrap();
                let got = matmul_nt(&x, &w).unwrap();
                let want = ops::matmul(&x, &w.transpose().unwrap()).unwrap();
                let g = got.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
                let e = want
                    .astype(Dtype::Float32)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap();
                for r in 0..m as usize {
                    let row = |v: &[f32]| v[r * n as usize..(r + 1) * n as usize].to_vec();
                    let (gr, er) = (row(&g), row(&e));
                    let scale = er.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
                    for (i, (a, b)) in gr.iter().zip(&er).enumerate() {
                        assert!(
                            (a - b).abs() <= rtol * scale,
                            "{dtype:?} {m}x{n}x{k} row {r} col {i}: {a} vs {b}"
                        );
                    }
                }
                // The rows in reverse order: each row meets other partners elsewhere.
                let rev = ops::arange(m as f64 - 1.0, -1.0, -1.0, Dtype::Int32).unwrap();
                let flipped = matmul_nt(&x.take_axis(&rev, 0).unwrap(), &w).unwrap();
                let back = flipped.take_axis(&rev, 0).unwrap();
                let same = back
                    .astype(Dtype::Float32)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .zip(&g)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{dtype:?} {m}x{n}x{k}: a row depends on its batch");
            }
        }
    })
}
