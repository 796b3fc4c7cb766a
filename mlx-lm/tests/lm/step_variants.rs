//! Variants of the CUDA gated delta step kernel timed side by side (a GPU diagnostic,
//! ignored by default): the prefill's step kernel is half a 2,048-token prompt's time on an
//! H100 before its shared-memory staging (session 22), and the variants of
//! `benches/gpu/step_variants.py` (warps per block, tokens per round, diagnostics that
//! drop a part of the work) say where the time goes. Each source in the folder
//! `$STEP_VARIANTS` runs at one 2B DeltaNet layer's shapes (B 1, 16 heads of 128, bf16) at
//! T 2,048 and 512; the first in sort order (the shipped kernel) is the reference the
//! others' largest error is printed against, and every variant but the diagnostics
//! (`z_diag_*`, wrong on purpose) must match it within [`Y_RTOL`] and [`STATE_RTOL`]. On
//! the GPU machine:
//! `STEP_VARIANTS=DIR lm-<hash> --ignored --nocapture step_kernel_variants`.
use crate::common::{gpu, normal, unit_rows};
use crate::gated_delta::to_f32;
use mlx_lm::kernels::gated_delta::kernel::STEP_WARPS;
use mlx_rs::fast::{KernelBuilder, KernelConfig, TemplateArg};
use mlx_rs::{random, Array, Dtype};

/// `y` (bf16) against the shipped kernel: a variant sums in another order, so a value may
/// round to the neighbouring bf16 (2^-8 relative), which the state then carries: two ulps.
const Y_RTOL: f32 = 1.0 / 64.0;
/// The fp32 state against the shipped kernel: float rounding of reordered 128-term sums
/// over 2,048 tokens.
const STATE_RTOL: f32 = 1e-4;

/// Largest |difference| over the largest |value| of the reference.
fn scaled_error(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    got.iter()
        .zip(want)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
#[ignore = "needs a CUDA GPU and STEP_VARIANTS (a folder of kernel sources)"]
fn step_kernel_variants() {
    let dir = std::env::var("STEP_VARIANTS")
        .expect("set STEP_VARIANTS to a folder written by benches/gpu/step_variants.py");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (b, h, d) = (1, 16, 128);
    let dtype = Dtype::Bfloat16;
    gpu(|| {
        for t in [2048, 512] {
            let unit = |seed: u64, scale: f32| {
                unit_rows(&normal(&[b, t, h, d], seed, Dtype::Float32), scale, dtype)
            };
            let q = unit(1, 0.0884);
            let k = unit(2, 1.0);
            let v = normal(&[b, t, h, d], 3, dtype);
            let g = random::uniform_range(0.9..0.999, &[b, t, h], None).unwrap();
            let beta = random::uniform_range(0.05..0.95, &[b, t, h], None)
                .unwrap()
                .astype(dtype)
                .unwrap();
            let state = normal(&[b, h, d, d], 4, Dtype::Float32)
                .multiply(&Array::scalar(0.5f32))
                .unwrap();
            mlx_rs::eval(&[&q, &k, &v, &g, &beta, &state]).unwrap();
            let mut base: Option<(Vec<f32>, Vec<f32>)> = None;
            let mut wrong = Vec::new();
            for f in &files {
                let src = std::fs::read_to_string(f).unwrap();
                // The first line names the warps of a block (else the model's).
                let warps: i32 = src
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("// WARPS_PER_BLOCK="))
                    .and_then(|w| w.trim().parse().ok())
                    .unwrap_or(STEP_WARPS);
                let name = format!("step_variant_{}", f.file_stem().unwrap().to_string_lossy());
                let kernel = KernelBuilder::new(&name, &src)
                    .header(&mlx_lm::kernels::gpu::cuda_header())
                    .input_names(&["q", "k", "v", "g", "beta", "state_in"])
                    .output_names(&["y", "state_out"])
                    .build_cuda()
                    .unwrap();
                let config = KernelConfig::new([32, d, b * h], [32, warps, 1])
                    .output(&[b, t, h, d], dtype)
                    .output(&[b, h, d, d], Dtype::Float32)
                    .template("InT", TemplateArg::Dtype(dtype))
                    .template("KT", TemplateArg::Dtype(dtype))
                    .template("VT", TemplateArg::Dtype(dtype))
                    .template("GT", TemplateArg::Dtype(g.dtype()))
                    .template("BetaT", TemplateArg::Dtype(dtype))
                    .template("Dk", TemplateArg::Int(d))
                    .template("Dv", TemplateArg::Int(d))
                    .template("Hk", TemplateArg::Int(h))
                    .template("Hv", TemplateArg::Int(h))
                    .template("W", TemplateArg::Int(warps));
                let run = || {
                    let out = kernel
                        .apply(&[&q, &k, &v, &g, &beta, &state], &config)
                        .unwrap();
                    mlx_rs::eval(&out.iter().collect::<Vec<_>>()).unwrap();
                    out
                };
                let out = run();
                let got = (to_f32(&out[0]), to_f32(&out[1]));
                let err = match &base {
                    None => {
                        base = Some(got);
                        (0.0, 0.0)
                    }
                    Some(w) => (scaled_error(&got.0, &w.0), scaled_error(&got.1, &w.1)),
                };
                if !name.contains("z_diag") && (err.0 > Y_RTOL || err.1 > STATE_RTOL) {
                    wrong.push(format!(
                        "{name} at T={t}: error y {:.1e} state {:.1e}",
                        err.0, err.1
                    ));
                }
                let reps = 20;
                let start = std::time::Instant::now();
                for _ in 0..reps {
                    run();
                }
                let us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
                println!(
                    "T={t:5} {name:34} {us:8.1} µs per launch (waited), error y {:.1e} state {:.1e}",
                    err.0, err.1
                );
            }
            assert!(
                wrong.is_empty(),
                "variants differ from the shipped kernel: {wrong:?}"
            );
        }
    });
}
