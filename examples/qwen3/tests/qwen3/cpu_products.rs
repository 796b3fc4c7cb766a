//! The CPU kernels of `mlx_lm::linear` on Qwen3 (float32 products of many rows in the GEMM,
//! 4-bit products with float32 input, bfloat16 weights with float32 activations) against
//! MLX's products, and which dtypes a checkpoint gets on the CPU.

use super::*;

/// The CPU kernels (`mlx_lm::linear`: float32 products of many rows in the GEMM, 4-bit
/// products with float32 input in the quantized kernels) against MLX's products, whose
/// logits are mlx-lm's: float32 rounding in another order, relative to each row's largest
/// logit.
const CPU_PRODUCTS_ROW_RTOL: f32 = 1e-4;

/// A float32 model of `variant`'s shape with random weights (4-bit with float32 scales
/// when `bits` says so), twice: as built (MLX's products) and with `options`.
fn random_pair(
    variant: &str,
    bits: Option<i32>,
    options: qwen3::ModelOptions,
) -> [qwen3::Model; 2] {
    let config = qwen3::Config::from_dir(fixtures().join(variant)).unwrap();
    let build = || {
        let mut m = qwen3::Model::new(config.clone()).unwrap();
        if let Some(bits) = bits {
            let q = mlx_rs::ops::QuantizeOptions {
                group_size: Some(32),
                bits: Some(bits),
                ..Default::default()
            };
            mlx_rs::nn::quantize(&mut m, &q, |_: &str| true).unwrap();
        }
        m
    };
    let reference = build();
    let mut model = build();
    let params = reference.parameters().unwrap();
    model.update(&params, UpdateMode::Strict).unwrap();
    model.set_options(options).unwrap();
    assert_eq!(reference.dtype(), Dtype::Float32);
    [reference, model]
}

#[test]
fn cpu_products_match_mlx_products() {
    on_cpu(|| {
        let cpu = CpuProducts {
            gemm: true,
            threads: 2,
        };
        let prompt: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 200).collect();
        for (variant, bits) in [
            ("bf16-tied", None),
            ("bf16-untied", None),
            ("bf16-untied", Some(4)),
        ] {
            let what = format!("{variant}, bits {bits:?}");
            let options = qwen3::ModelOptions {
                cpu: Some(cpu),
                ..Default::default()
            };
            let [reference, model] = random_pair(variant, bits, options);
            let (gemm, quantized) = (cpu_gemm::products(), cpu_quantized::products());
            let row = reference.vocab_size() as usize;
            let expected = full_logits(&reference, &prompt);
            let tol =
                |e: &[f32]| CPU_PRODUCTS_ROW_RTOL * e.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (r, (a, e)) in full_logits(&model, &prompt)
                .chunks(row)
                .zip(expected.chunks(row))
                .enumerate()
            {
                assert_close(&format!("{what}: whole prompt, row {r}"), a, e, tol(e), 0.0);
            }
            let expected = stepwise_logits(&reference, &prompt, 5);
            let actual = stepwise_logits(&model, &prompt, 5);
            for (r, (a, e)) in actual.chunks(row).zip(expected.chunks(row)).enumerate() {
                assert_close(&format!("{what}: step-wise, row {r}"), a, e, tol(e), 0.0);
            }
            // The kernels took the products: the GEMM the prompts' (float32), the 4-bit
            // kernel every one (a prompt of 12 rows goes group by group too).
            if bits.is_some() {
                assert!(
                    cpu_quantized::products() > quantized,
                    "{what}: 4-bit kernel unused"
                );
            } else {
                assert!(cpu_gemm::products() > gemm, "{what}: GEMM unused");
            }
        }
    })
}

/// With the CPU's defaults a quantized checkpoint runs with float32 activations (its
/// scales, norms and unquantized layers converted at load) in the CPU kernels; a dense
/// bf16 one stays bf16. The float32 form against the same conversion with every product
/// in MLX: float32 rounding in another order only.
/// `prefill` fills the cache without the head's product for the prompt's positions, and
/// `forward_last` computes the head for the last position only: the same cache and last
/// logits as `forward`, with the GEMM taking one product per linear layer of the prompt
/// and none for the head (on the CPU the products run eagerly, so an unused head was
/// computed).
#[test]
fn prefill_and_forward_last_skip_the_head_for_the_prompt() {
    on_cpu(|| {
        let cpu = CpuProducts {
            gemm: true,
            threads: 2,
        };
        let options = qwen3::ModelOptions {
            cpu: Some(cpu),
            ..Default::default()
        };
        let [_, model] = random_pair("bf16-untied", None, options);
        let prompt: Vec<u32> = (0..9).map(|i| (i * 37 + 5) % 200).collect();
        let row = model.vocab_size() as usize;
        let all = full_logits(&model, &prompt);
        let layers = model.config().num_hidden_layers as usize;
        let before = cpu_gemm::products();
        let mut cache = model.new_cache();
        model.prefill(&tokens(&prompt[..8]), &mut cache).unwrap();
        // q, k, v, o, gate, up and down of every layer; no head.
        assert_eq!(
            cpu_gemm::products() - before,
            7 * layers,
            "prefill's products"
        );
        mlx_rs::eval(&cache.arrays()).unwrap();
        let mut whole = model.new_cache();
        let last = floats(&model.forward_last(&tokens(&prompt), &mut whole).unwrap());
        assert_eq!(last.len(), row);
        assert_close("forward_last", &last, &all[8 * row..], 1e-5, 1e-5);
        let next = floats(
            &model
                .forward_last(&tokens(&prompt[8..]), &mut cache)
                .unwrap(),
        );
        assert_close(
            "prefill, then the last token",
            &next,
            &all[8 * row..],
            1e-4,
            1e-4,
        );
    })
}

/// With the CPU kernels off (every product in MLX) or for training, a dense bfloat16
/// checkpoint stays bfloat16 (MLX's float32-by-bfloat16 products convert the weight at
/// every call); a quantized one still gets float32 activations.
#[test]
fn without_the_cpu_kernels_a_dense_checkpoint_stays_bfloat16() {
    on_cpu(|| {
        let defaults = qwen3::ModelOptions::for_device(&mlx_rs::Device::cpu());
        let off = qwen3::ModelOptions {
            cpu: Some(CpuProducts {
                gemm: false,
                threads: 1,
            }),
            ..defaults
        };
        for options in [off, defaults.for_training()] {
            let dense = qwen3::load_with(fixtures().join("bf16-tied"), options).unwrap();
            assert_eq!(dense.dtype(), Dtype::Bfloat16, "{options:?}");
            let quantized = qwen3::load_with(fixtures().join("q4-tied"), options).unwrap();
            assert_eq!(quantized.dtype(), Dtype::Float32, "{options:?}");
        }
    })
}

/// On the CPU a checkpoint loads with float32 activations by default: a quantized one
/// with its scales, norms and unquantized layers in float32 (products in
/// `cpu_quantized`), a dense bfloat16 one with its weight matrices kept in bfloat16
/// (products in `cpu_bf16`) and the rest in float32. The logits are MLX's on the same
/// weights converted to float32.
#[test]
fn checkpoints_run_with_float32_activations_on_the_cpu() {
    on_cpu(|| {
        let defaults = qwen3::ModelOptions::for_device(&mlx_rs::Device::cpu());
        assert_eq!(defaults.float_dtype, FloatDtype::Float32Activations);
        for variant in ["bf16-tied", "bf16-untied", "q4-tied", "q4-untied-mixed"] {
            let dir = fixtures().join(variant);
            let model = qwen3::load_with(&dir, defaults).unwrap();
            assert_eq!(model.dtype(), Dtype::Float32, "{variant}");
            let params = model.parameters().unwrap();
            if variant.starts_with("bf16") {
                let w = &params["model.layers.0.mlp.gate_proj.weight"];
                assert_eq!(w.dtype(), Dtype::Bfloat16, "{variant}: weights kept");
                let e = &params["model.embed_tokens.weight"];
                assert_eq!(e.dtype(), Dtype::Bfloat16, "{variant}: embeddings kept");
            }
            let mlx = qwen3::ModelOptions {
                cpu: None,
                float_dtype: FloatDtype::Cast(Dtype::Float32),
            };
            let reference = qwen3::load_with(&dir, mlx).unwrap();
            let e = expected(variant);
            let before = (cpu_quantized::products(), cpu_bf16::products());
            let actual = stepwise_logits(&model, &e.prompt, e.prefill);
            let after = (cpu_quantized::products(), cpu_bf16::products());
            match variant.starts_with("bf16") {
                true => assert!(after.1 > before.1, "{variant}: bf16 kernel unused"),
                false => assert!(after.0 > before.0, "{variant}: quantized kernel unused"),
            }
            let expected = stepwise_logits(&reference, &e.prompt, e.prefill);
            let row = model.vocab_size() as usize;
            for (r, (a, x)) in actual.chunks(row).zip(expected.chunks(row)).enumerate() {
                let tol = CPU_PRODUCTS_ROW_RTOL * x.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert_close(&format!("{variant}: row {r}"), a, x, tol, 0.0);
            }
            // And the float32 model still says what mlx-lm's bf16 one says, roughly: the
            // same greedy first token after the prompt.
            let last = |l: &[f32]| {
                let r = &l[l.len() - row..];
                (0..row).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap()
            };
            assert_eq!(last(&actual), last(&e.logits_stepwise), "{variant}: argmax");
        }
    })
}

/// Stored for the CPU (`--cpu-gemm off`: every product in MLX, on weights kept as the
/// transpose of row-major matrices), the logits are MLX's on the weights as loaded.
#[test]
fn weights_stored_for_the_cpu_give_the_same_logits() {
    on_cpu(|| {
        let cpu = CpuProducts {
            gemm: false,
            threads: 2,
        };
        let prompt: Vec<u32> = (0..9).map(|i| (i * 53 + 11) % 200).collect();
        for variant in ["bf16-tied", "bf16-untied"] {
            let options = qwen3::ModelOptions {
                cpu: Some(cpu),
                ..Default::default()
            };
            let [reference, model] = random_pair(variant, None, options);
            let row = reference.vocab_size() as usize;
            let expected = stepwise_logits(&reference, &prompt, 4);
            let actual = stepwise_logits(&model, &prompt, 4);
            for (r, (a, e)) in actual.chunks(row).zip(expected.chunks(row)).enumerate() {
                assert!(a == e, "{variant}: row {r} differs");
            }
        }
    })
}

/// Batched decode with the CPU kernels (a batch's step is several rows: the GEMM) gives
/// each sequence what it gets alone (one row: MLX's product).
#[test]
fn sequences_decode_in_one_batch_as_alone_with_cpu_products() {
    on_cpu(|| {
        let options = qwen3::ModelOptions::for_device(&mlx_rs::Device::cpu());
        assert!(options.cpu.is_some_and(|c| c.gemm) || cfg!(target_os = "macos"));
        let [_, model] = random_pair("bf16-tied", None, options);
        let vocab = model.vocab_size() as u32;
        for (what, requests, steps) in batching::schedules(vocab) {
            batching::assert_batched_matches_alone(
                what, &model, &requests, steps, BATCH_ATOL, BATCH_RTOL,
            );
        }
    })
}
