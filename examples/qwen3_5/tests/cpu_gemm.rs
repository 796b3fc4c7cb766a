//! Float32 prefill on the CPU with the products outside MLX (`mlx_lm::kernels::cpu_gemm`:
//! the linear layers, the chunked delta rule's matmuls, the attention products) against
//! the same model with every product in MLX. The fixture models (mlx-lm's layout, checked
//! against mlx-lm in tests/forward.rs; a dense one and a 4-bit one, whose weights are
//! dequantized for the GEMM) are converted to float32, and the prompt is long enough
//! (≥ 32 tokens) for every one of those paths.

mod common;

use common::{assert_logits_close_rtol, cpu, model_dir};
use mlx_lm::kernels::cpu_gemm::products;
use mlx_rs::{Array, Dtype};
use qwen3_5::ModelOptions;

/// The two sides sum the same float32 products in another order (packed GEMM against
/// the reference BLAS): agreement to a few float32 ulps of each row's largest logit.
const RTOL: f32 = 1e-4;

/// `variant`'s fixture with every float tensor cast to float32, in a fresh folder.
fn float32_copy(variant: &str) -> std::path::PathBuf {
    let src = model_dir(variant);
    let dst =
        std::env::temp_dir().join(format!("qwen3_5-cpu-gemm-{}-{variant}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(src.join("config.json"), dst.join("config.json")).unwrap();
    let st = mlx_rs::io::load_safetensors(src.join("model.safetensors")).unwrap();
    let arrays: Vec<(String, Array)> = st
        .arrays
        .iter()
        .map(|(k, a)| {
            let a = match a.dtype() {
                Dtype::Bfloat16 | Dtype::Float16 => a.astype(Dtype::Float32).unwrap(),
                _ => a.clone(),
            };
            (k.clone(), a)
        })
        .collect();
    mlx_rs::io::save_safetensors(dst.join("model.safetensors"), arrays, &st.metadata).unwrap();
    dst
}

#[test]
fn float32_prefill_matches_mlx_products() {
    // One after the other: the product counter is process-wide.
    for variant in ["mlx-bf16-tied", "mlx-q4-tied"] {
        check(variant);
    }
}

fn check(variant: &str) {
    let dir = float32_copy(variant);
    // 70 tokens in two pieces of 33 and 37 (each ≥ 32 rows, each leaving a chunk of the
    // delta rule part-empty); the second attends over the first one's cached positions.
    let prompt: Vec<u32> = (0..70u32).map(|i| (i * 37 + 11) % 250).collect();
    let run = |on: bool| -> Vec<f32> {
        cpu(|| {
            let options = ModelOptions {
                cpu_gemm: on,
                ..ModelOptions::for_device(&mlx_rs::Device::cpu())
            };
            let model = qwen3_5::load_with(&dir, options).unwrap();
            assert_eq!(model.dtype(), Dtype::Float32);
            assert_eq!(model.plan().cpu.map(|c| c.gemm), Some(on));
            let mut cache = model.new_cache();
            let first = Array::from_slice(&prompt[..33], &[1, 33]).unwrap();
            let rest = Array::from_slice(&prompt[33..], &[1, 37]).unwrap();
            let mut out = model.forward(&first, &mut cache).unwrap();
            out =
                mlx_rs::ops::concatenate_axis(&[out, model.forward(&rest, &mut cache).unwrap()], 1)
                    .unwrap();
            out.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
        })
    };
    let before = products();
    let with_gemm = run(true);
    let used = products() - before;
    let before = products();
    let mlx_only = run(false);
    assert!(
        used > 0,
        "{variant}: the float32 prefill did not take the CPU GEMM"
    );
    // The only test of this binary: nothing else counts products meanwhile.
    assert_eq!(
        products(),
        before,
        "{variant}: cpu_gemm off still took the CPU GEMM"
    );
    let vocab = 256;
    assert_eq!(with_gemm.len(), 70 * vocab);
    assert_logits_close_rtol(
        &format!("{variant}: CPU GEMM vs MLX products"),
        &with_gemm,
        &mlx_only,
        vocab,
        RTOL,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
