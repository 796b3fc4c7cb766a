//! The quantized one-row product kernel (`mlx_lm::kernels::quantized_gemv`): which shapes
//! it takes and the errors for the rest (here), and on a CUDA GPU its products against the
//! exact product of the quantized weight and against MLX's `quantized_matmul` (ignored by
//! default; on the GPU machine: `lm-<hash> --ignored quantized_gemv`). The kernel's text
//! also runs emulated on the CPU: `emulate_quantized_gemv.py`.

use crate::common::{gpu, normal, run_kernel_emulator};
use mlx_lm::kernels::quantized_gemv::{compile, fits, launch, matmul, MAX_WARPS};
use mlx_rs::ops::{self, QuantizeOptions};
use mlx_rs::{Array, Device, Dtype};

/// The weight `[n, k]` quantized to `bits` bits in groups of `group`, scales and biases in
/// `dtype`: `(w, scales, biases)`.
fn quantized(n: i32, k: i32, bits: i32, group: i32, dtype: Dtype, seed: u64) -> [Array; 3] {
    let w = normal(&[n, k], seed, dtype)
        .multiply(&Array::scalar((k as f32).powf(-0.5)))
        .unwrap()
        .astype(dtype)
        .unwrap();
    let q = ops::quantize(&w, None, options(bits, group)).unwrap();
    [q.w, q.scales, q.biases.unwrap()]
}

fn options(bits: i32, group: i32) -> QuantizeOptions {
    QuantizeOptions {
        group_size: Some(group),
        bits: Some(bits),
        ..Default::default()
    }
}

#[test]
fn launches_cover_the_row() {
    // (K, bits) -> (warps, words a lane): 16-byte words of 32 (4-bit) or 16 (8-bit) values.
    assert_eq!(launch(2048, 4), Some((2, 1)));
    assert_eq!(launch(6144, 4), Some((6, 1)));
    assert_eq!(
        launch(256, 4),
        Some((1, 1)),
        "8 words: one warp, idle lanes"
    );
    assert_eq!(launch(2048, 8), Some((4, 1)));
    assert_eq!(launch(16384, 4), Some((MAX_WARPS, 2)));
    assert_eq!(launch(32768, 4), None, "past two words a lane");
    assert_eq!(launch(2048, 3), None, "3 bits");
    assert_eq!(launch(0, 4), None, "no values");
    for (k, bits) in [(1024, 4), (4096, 4), (3072, 8), (12288, 4)] {
        let (warps, words) = launch(k, bits).unwrap();
        assert!(32 * warps * words >= k / (128 / bits), "{k} {bits}");
    }
}

#[test]
fn shapes_the_kernel_takes() {
    let bf = Dtype::Bfloat16;
    let [w, s, b] = quantized(24, 256, 4, 64, bf, 1);
    let x = |shape: &[i32], dtype| normal(shape, 2, dtype);
    assert!(fits(&x(&[1, 256], bf), &w, &s, &b, 4, 64));
    assert!(fits(&x(&[1, 1, 256], bf), &w, &s, &b, 4, 64), "[1, 1, K]");
    assert!(fits(&x(&[256], bf), &w, &s, &b, 4, 64), "a vector");
    assert!(!fits(&x(&[2, 256], bf), &w, &s, &b, 4, 64), "two rows");
    assert!(
        !fits(&x(&[1, 128], bf), &w, &s, &b, 4, 64),
        "inner sizes differ"
    );
    assert!(
        !fits(&x(&[1, 256], bf), &w, &s, &b, 8, 64),
        "bits do not match w"
    );
    assert!(
        !fits(&x(&[1, 256], bf), &w, &s, &b, 4, 32),
        "group does not match scales"
    );
    assert!(!fits(&x(&[1, 256], bf), &w, &s, &b, 3, 64), "3 bits");
    assert!(!fits(&x(&[1, 256], bf), &w, &s, &b, 4, 16), "group 16");
    let f16 = Dtype::Float16;
    assert!(
        !fits(&x(&[1, 256], f16), &w, &s, &b, 4, 64),
        "x's dtype is not the scales'"
    );
    let [w16, s16, b16] = quantized(24, 256, 4, 64, f16, 1);
    assert!(fits(&x(&[1, 256], f16), &w16, &s16, &b16, 4, 64));
    let [w8, s8, b8] = quantized(8, 512, 8, 128, Dtype::Float32, 3);
    assert!(fits(&x(&[1, 512], Dtype::Float32), &w8, &s8, &b8, 8, 128));
    let ints = Array::from_slice(&[1i32; 256], &[1, 256]).unwrap();
    assert!(!fits(&ints, &w, &s, &b, 4, 64), "integer x");
    let wf = w.astype(Dtype::Int32).unwrap();
    assert!(!fits(&x(&[1, 256], bf), &wf, &s, &b, 4, 64), "w not uint32");
    assert!(
        !fits(
            &x(&[1, 256], bf),
            &w,
            &b,
            &s.reshape(&[4, 24]).unwrap(),
            4,
            64
        ),
        "biases' shape"
    );
    let [wl, sl, bl] = quantized(2, 32768, 4, 64, bf, 4);
    assert!(
        !fits(&x(&[1, 32768], bf), &wl, &sl, &bl, 4, 64),
        "K past the kernel's registers"
    );
}

#[test]
fn shapes_it_refuses_are_errors() {
    let bf = Dtype::Bfloat16;
    let [w, s, b] = quantized(24, 256, 4, 64, bf, 1);
    let err = matmul(&normal(&[2, 256], 2, bf), &w, &s, &b, 4, 64).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("do not fit") && text.contains("[2, 256]"),
        "{text}"
    );
    let err = matmul(&normal(&[1, 256], 2, bf), &w, &s, &b, 5, 64).unwrap_err();
    assert!(err.to_string().contains("5 bits"), "{err}");
    let err = compile(bf, 4, 64, 100).unwrap_err();
    assert!(
        err.to_string().contains("do not fit"),
        "K not a multiple of the group: {err}"
    );
    assert!(compile(bf, 2, 64, 256).is_err(), "2 bits");
}

/// `compile` builds the kernel where MLX has a CUDA GPU and is an error elsewhere (the CPU
/// build here, Metal on macOS), so a model keeps MLX's quantized matmul instead of failing
/// at its first decode step.
#[test]
fn compile_needs_cuda() {
    let cuda = Device::gpu().is_available() && !cfg!(target_os = "macos");
    let built = mlx_rs::with_device(&Device::gpu(), || compile(Dtype::Bfloat16, 4, 64, 2048));
    assert_eq!(built.is_ok_and(|r| r.is_ok()), cuda);
}

/// The values of an array as float32.
fn values(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

/// The kernel against the exact product of the quantized weight (dequantized and multiplied
/// in float32 on the CPU): every value within 1.5 ulps of the output dtype at the row's
/// largest value, and its largest error no more than MLX's `quantized_matmul`'s on the same
/// GPU (which sums in the activations' dtype). The 2B's one-row products (gate/up 12288 ×
/// 2048, down 2048 × 6144, the head 248,320 × 2048) in 4 bits, 8 bits, other groups and
/// dtypes, as `[1, K]` and `[1, 1, K]`.
#[test]
#[ignore = "needs a CUDA GPU"]
fn quantized_gemv_matches_the_exact_product() {
    for (n, k, bits, group, dtype) in [
        (12288, 2048, 4, 64, Dtype::Bfloat16),
        (2048, 6144, 4, 64, Dtype::Bfloat16),
        (248_320, 2048, 4, 64, Dtype::Bfloat16),
        (8192, 2048, 8, 64, Dtype::Bfloat16),
        (4096, 4096, 4, 32, Dtype::Bfloat16),
        (1000, 1024, 4, 128, Dtype::Float16),
        (333, 512, 8, 32, Dtype::Float32),
        (7, 16384, 4, 64, Dtype::Bfloat16),
    ] {
        let what = format!("{n}x{k} {bits}-bit group {group} {dtype:?}");
        let [w, s, b] = quantized(n, k, bits, group, dtype, n as u64 + 7);
        let x = normal(&[1, k], k as u64, dtype);
        let exact = mlx_rs::with_device(&Device::cpu(), || {
            let wd = ops::dequantize(
                &w,
                &s,
                Some(&b),
                None,
                Some(Dtype::Float32),
                options(bits, group),
            )
            .unwrap();
            values(
                &ops::matmul(&x.astype(Dtype::Float32).unwrap(), &wd.transpose().unwrap()).unwrap(),
            )
        })
        .unwrap();
        let (got, theirs) = gpu(|| {
            let ours = matmul(&x, &w, &s, &b, bits, group).unwrap();
            let x3 = x.reshape(&[1, 1, k]).unwrap();
            let ours3 = matmul(&x3, &w, &s, &b, bits, group).unwrap();
            assert_eq!(ours3.shape(), &[1, 1, n], "{what}");
            assert_eq!(values(&ours3), values(&ours), "{what}: [1, 1, K]");
            let mlx =
                ops::quantized_matmul(&x, &w, &s, Some(&b), true, options(bits, group)).unwrap();
            (values(&ours), values(&mlx))
        });
        let scale = exact.iter().fold(0f32, |a, v| a.max(v.abs()));
        let ulp = match dtype {
            Dtype::Bfloat16 => 2f32.powi(-8),
            Dtype::Float16 => 2f32.powi(-11),
            _ => 2f32.powi(-20),
        };
        let err = |v: &[f32]| {
            v.iter()
                .zip(&exact)
                .fold(0f32, |a, (g, e)| a.max((g - e).abs()))
        };
        let (ours, mlx) = (err(&got), err(&theirs));
        println!("{what}: largest error ours {ours:.3e}, MLX's {mlx:.3e} (row max {scale:.3})");
        assert!(
            ours <= 1.5 * ulp * scale,
            "{what}: error {ours} past {}",
            1.5 * ulp * scale
        );
        assert!(
            ours <= mlx.max(ulp * scale),
            "{what}: ours {ours} vs MLX's {mlx}"
        );
    }
}

/// The kernel's text run on the CPU with emulated warps, under AddressSanitizer and UBSan's
/// alignment check (`examples/qwen3_5/tests/kernel_emulation/emulate_quantized_gemv.py`:
/// against NumPy for 4 and 8 bits, three group sizes, one to eight warps, unaligned w and
/// x), so that CI checks the kernel that only a GPU runs for real
/// ([`quantized_gemv_matches_the_exact_product`]).
#[test]
fn quantized_gemv_kernel_runs_emulated() {
    let text = run_kernel_emulator("emulate_quantized_gemv.py");
    assert!(text.contains("12 cases: all cases match"), "{text}");
}
