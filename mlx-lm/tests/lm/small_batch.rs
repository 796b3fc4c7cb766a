//! The small-batch product kernel (`mlx_lm::kernels::small_batch`): which shapes it takes
//! (here), and on a CUDA GPU its products against MLX's matmul, in the layouts a model hands
//! it, and a row's result in one batch against the same row in another (ignored by default;
//! on the GPU machine: `lm-<hash> --ignored small_batch`). The kernel's text also runs
//! emulated on the CPU: `examples/qwen3_5/tests/kernel_emulation/emulate_small_batch.py`.

use crate::common::{gpu, normal, run_kernel_emulator};
use mlx_lm::kernels::small_batch::{fits, matmul, products, MAX_ROWS};
use mlx_rs::{ops, Array, Dtype};

#[test]
fn shapes_the_kernel_takes() {
    let bf = Dtype::Bfloat16;
    let x = |shape: &[i32], dtype| normal(shape, 1, dtype);
    // The transposed view of a stored [N, K] weight, as a model holds it.
    let wt = normal(&[48, 64], 2, bf).transpose().unwrap();
    assert!(fits(&x(&[4, 64], bf), &wt, MAX_ROWS));
    assert!(fits(&x(&[2, 1, 64], bf), &wt, MAX_ROWS), "[B, 1, K]");
    assert!(fits(&x(&[32, 64], bf), &wt, MAX_ROWS));
    assert!(
        !fits(&x(&[33, 64], bf), &wt, 64),
        "more rows than the kernel takes"
    );
    assert!(fits(&x(&[16, 64], bf), &wt, 16));
    assert!(!fits(&x(&[17, 64], bf), &wt, 16), "more rows than asked");
    assert!(
        !fits(&x(&[1, 64], bf), &wt, MAX_ROWS),
        "one row: MLX's GEMV"
    );
    assert!(!fits(&x(&[64], bf), &wt, MAX_ROWS), "a vector");
    assert!(!fits(&x(&[4, 64], bf), &wt, 0), "0: never");
    assert!(!fits(&x(&[4, 64], bf), &wt, -3), "below 0: never");
    let f16 = Dtype::Float16;
    assert!(fits(&x(&[4, 64], f16), &wt.astype(f16).unwrap(), MAX_ROWS));
    assert!(!fits(&x(&[4, 64], f16), &wt, MAX_ROWS), "dtypes differ");
    let f32 = Dtype::Float32;
    let wt32 = wt.astype(f32).unwrap();
    assert!(!fits(&x(&[4, 64], f32), &wt32, MAX_ROWS), "float32");
    assert!(!fits(&x(&[4, 32], bf), &wt, MAX_ROWS), "inner sizes differ");
    let odd_k = normal(&[48, 48], 3, bf).transpose().unwrap();
    assert!(
        !fits(&x(&[4, 48], bf), &odd_k, MAX_ROWS),
        "K not a multiple of 32"
    );
    let odd_n = normal(&[40, 64], 3, bf).transpose().unwrap();
    assert!(
        !fits(&x(&[4, 64], bf), &odd_n, MAX_ROWS),
        "N not a multiple of 16"
    );
    let ints = Array::from_slice(&[1i32; 256], &[4, 64]).unwrap();
    let int_w = Array::from_slice(&[1i32; 64 * 16], &[64, 16]).unwrap();
    assert!(!fits(&ints, &int_w, MAX_ROWS), "integers");
    assert!(
        !fits(&x(&[4, 64], bf), &x(&[64, 16, 1], bf), MAX_ROWS),
        "3-D weight"
    );
}

#[test]
fn shapes_it_refuses_are_errors_before_any_launch() {
    let wt = normal(&[48, 64], 2, Dtype::Bfloat16).transpose().unwrap();
    let before = products();
    let err = matmul(&normal(&[3, 60], 1, Dtype::Bfloat16), &wt).unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");
    assert!(matmul(&normal(&[1, 64], 1, Dtype::Bfloat16), &wt).is_err());
    let f32 = normal(&[4, 64], 1, Dtype::Float32);
    assert!(matmul(&f32, &wt.astype(Dtype::Float32).unwrap()).is_err());
    assert_eq!(products(), before, "no product was built");
}

/// The values of an array as float32.
fn values(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

/// The kernel against MLX's matmul, relative to each row's largest value (two ulps of the
/// 16-bit type: the kernel and cuBLASLt sum in different orders, each rounds once), for the
/// 2B's products and small sizes, with the weight as a model holds it (the transposed view
/// of a stored `[N, K]` matrix), as a row-major `[K, N]` matrix, and x as `[B, 1, K]` and as
/// a view with gaps between rows; and each row's result equal bit for bit to the same row
/// in another batch (its partners and its place changed).
#[test]
#[ignore = "needs a CUDA GPU"]
fn small_batch_matches_mlx_matmul() {
    gpu(|| {
        for dtype in [Dtype::Bfloat16, Dtype::Float16] {
            let rtol = 2.0 / 128.0;
            // (rows, N, K): the 2B's products (hidden 2048, MLP 6144, head 248,320) and
            // small sizes, 1 to 4 tiles of 8 rows.
            for (m, n, k) in [
                (2, 2048, 6144),
                (3, 12288, 2048),
                (5, 248_320, 2048),
                (8, 1008, 512),
                (9, 16, 32),
                (16, 4096, 2048),
                (23, 48, 96),
                (32, 8192, 2048),
            ] {
                let x = normal(&[m, k], 10 + m as u64, dtype);
                let w = normal(&[n, k], 20 + n as u64, dtype)
                    .multiply(&Array::scalar((k as f32).powf(-0.5)))
                    .unwrap()
                    .astype(dtype)
                    .unwrap();
                let wt = w.transpose().unwrap();
                let want = values(&ops::matmul(&x, &wt).unwrap());
                let got = values(&matmul(&x, &wt).unwrap());
                let close = |got: &[f32], what: &str| {
                    for r in 0..m as usize {
                        let row = |v: &[f32]| v[r * n as usize..(r + 1) * n as usize].to_vec();
                        let (gr, er) = (row(got), row(&want));
                        let scale = er.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
                        for (i, (a, b)) in gr.iter().zip(&er).enumerate() {
                            assert!(
                                (a - b).abs() <= rtol * scale,
                                "{dtype:?} {m}x{n}x{k} {what} row {r} col {i}: {a} vs {b}"
                            );
                        }
                    }
                };
                close(&got, "view");
                if n <= 12288 {
                    let row_major = ops::contiguous(&wt, false).unwrap();
                    close(&values(&matmul(&x, &row_major).unwrap()), "row-major wt");
                    let b1k = x.reshape(&[m, 1, k]).unwrap();
                    let out = matmul(&b1k, &wt).unwrap();
                    assert_eq!(out.shape(), &[m, 1, n]);
                    close(&values(&out), "[B, 1, K]");
                    let wide = ops::concatenate_axis(&[x.clone(), x.clone()], 1).unwrap();
                    let gaps = ops::slice(&wide, &[0, 0], &[m, k], &[1, 1]).unwrap();
                    close(&values(&matmul(&gaps, &wt).unwrap()), "rows with gaps");
                }
                // The rows in reverse order: each row meets other partners elsewhere.
                let rev = ops::arange(m as f64 - 1.0, -1.0, -1.0, Dtype::Int32).unwrap();
                let flipped = matmul(&x.take_axis(&rev, 0).unwrap(), &wt).unwrap();
                let back = values(&flipped.take_axis(&rev, 0).unwrap());
                let same = back
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{dtype:?} {m}x{n}x{k}: a row depends on its batch");
            }
        }
    })
}

/// The kernel's text run on the CPU with emulated warps and tensor-core fragments, under
/// AddressSanitizer and UBSan's alignment check
/// (`examples/qwen3_5/tests/kernel_emulation/emulate_small_batch.py`: against NumPy, in
/// every layout a model hands it, and each row against itself in other batches), so that
/// CI checks the kernel that only a GPU runs for real
/// ([`small_batch_matches_mlx_matmul`]).
#[test]
fn small_batch_kernel_runs_emulated() {
    let text = run_kernel_emulator("emulate_small_batch.py");
    assert!(text.contains("94 cases: all match"), "{text}");
}
