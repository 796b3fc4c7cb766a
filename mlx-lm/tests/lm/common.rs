//! Shared helpers of the mlx-lm tests.

use std::path::{Path, PathBuf};

pub use crate::close::assert_close;
pub use crate::tiny_tokenizer::write_tiny_tokenizer;

/// The folder of the committed fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Standard normal values of `shape` drawn with `seed`, in `dtype` (drawn in float32).
pub fn normal(shape: &[i32], seed: u64, dtype: mlx_rs::Dtype) -> mlx_rs::Array {
    let key = mlx_rs::random::key(seed).unwrap();
    mlx_rs::random::normal(shape, mlx_rs::Dtype::Float32, 0.0, 1.0, Some(&key))
        .unwrap()
        .astype(dtype)
        .unwrap()
}

/// `x` with each last-axis row scaled to length `scale` (as the model L2-normalises q and
/// k), cast to `dtype`.
pub fn unit_rows(x: &mlx_rs::Array, scale: f32, dtype: mlx_rs::Dtype) -> mlx_rs::Array {
    let norm = x
        .square()
        .unwrap()
        .sum_axis(-1, true)
        .unwrap()
        .sqrt()
        .unwrap();
    x.divide(&norm)
        .unwrap()
        .multiply(&mlx_rs::Array::scalar(scale))
        .unwrap()
        .astype(dtype)
        .unwrap()
}

/// Runs `f` with this thread's default CPU stream as the current stream.
pub fn cpu<T>(f: impl FnOnce() -> T) -> T {
    mlx_rs::with_device(&mlx_rs::Device::cpu(), f).unwrap()
}

/// Runs `f` with this thread's default GPU stream as the current stream.
pub fn gpu<T>(f: impl FnOnce() -> T) -> T {
    mlx_rs::with_device(&mlx_rs::Device::gpu(), f).unwrap()
}

/// `got` against `want` (MLX's ops) within [`kernel_rtol`] of `want`'s largest |value|,
/// same shape; `what` names the case in failures.
pub fn assert_kernel_close(what: &str, got: &mlx_rs::Array, want: &mlx_rs::Array) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let tol = kernel_rtol(want.dtype());
    let values = |a: &mlx_rs::Array| {
        a.astype(mlx_rs::Dtype::Float32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    };
    let (g, w) = (values(got), values(want));
    let scale = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    for (i, (a, e)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - e).abs() <= tol * scale,
            "{what}: element {i} is {a}, expected {e} (tolerance {})",
            tol * scale
        );
    }
}

/// Largest difference allowed between a custom kernel's output and MLX's ops, relative to
/// the largest |expected| value: float32 within float rounding; bfloat16 within two ulps
/// (2^-7 relative each), as a kernel may sum in another order than MLX.
pub fn kernel_rtol(dtype: mlx_rs::Dtype) -> f32 {
    if dtype == mlx_rs::Dtype::Bfloat16 {
        2.0 / 128.0
    } else {
        1e-4
    }
}

/// A float32 array from a fixture's `{"shape": [...], "data": [...]}` JSON object.
pub fn json_array(v: &serde_json::Value) -> mlx_rs::Array {
    let shape: Vec<i32> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap() as i32)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    mlx_rs::Array::from_slice(&data, &shape).unwrap()
}

/// Runs one of the CPU emulators of the GPU kernels
/// (`examples/qwen3_5/tests/kernel_emulation/SCRIPT`: the kernel's exact text compiled
/// against shims of a warp, under AddressSanitizer, against NumPy) with the tests' oracle
/// Python; asserts that it succeeded and returns what it printed.
pub fn run_kernel_emulator(script: &str) -> String {
    let path = format!(
        "{}/../examples/qwen3_5/tests/kernel_emulation/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = oracle::python()
        .unwrap_or_else(|e| panic!("{e}"))
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// [`run_kernel_emulator`] for the emulators that print one `ok …` line per case and "all
/// cases match": asserts both, and that `cases` cases ran.
pub fn assert_kernel_emulator_cases(script: &str, cases: usize) {
    let text = run_kernel_emulator(script);
    let ran = text.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(text.contains("all cases match"), "{text}");
    assert_eq!(ran, cases, "cases run: {text}");
}
