//! The forward pass against mlx-lm 0.32.2 (tests/oracle/gen_qwen.py): whole-prompt
//! logits, prefill followed by single-token steps, and greedy decoding, for every
//! fixture variant (both checkpoint layouts, tied and untied heads, Hv = Hk and Hv > Hk,
//! bf16 and 4-bit quantized); and LoRA / DoRA adapters made by mlx-lm (`lora`).

#[path = "../../../mlx-lm/tests/lm/batching.rs"]
mod batching;
mod common;
#[path = "forward/lora.rs"]
mod lora;

use common::{
    assert_close, assert_logits_close, cpu, expected, gpu, model_dir, random_model, VARIANTS,
};
use mlx_lm::kernels::cpu_bf16;
use mlx_lm::kernels::cpu_quantized;
use mlx_lm::kernels::gated_delta::StepPath;
use mlx_rs::{Array, Dtype};
use qwen3_5::{Decode, FloatDtype, GenerateOptions, ModelOptions, SamplingParams};

fn ids(tokens: &[u32]) -> Array {
    Array::from_slice(tokens, &[1, tokens.len() as i32]).unwrap()
}

fn to_f32(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

#[test]
fn whole_prompt_logits_match_mlx_lm() {
    cpu(|| {
        for v in VARIANTS {
            let exp = expected(v);
            let model = common::load_stored(model_dir(v));
            let mut cache = model.new_cache();
            let logits = model.forward(&ids(&exp.prompt), &mut cache).unwrap();
            let mut shape = vec![1];
            shape.extend(&exp.logits_full.0);
            assert_eq!(logits.shape(), shape.as_slice(), "{v}");
            assert_logits_close(v, &to_f32(&logits), &exp.logits_full.1, 256);
            assert_eq!(cache.offset(), exp.prompt.len() as i32);
        }
    })
}

/// The CPU kernels against MLX's products on the same float32 model: rounding in another
/// order only, relative to each row's largest logit.
const CPU_KERNELS_ROW_RTOL: f32 = 1e-4;

/// With the CPU's defaults a checkpoint runs with float32 activations: a quantized one
/// with its scales, norms and unquantized layers converted at load (products in
/// `cpu_quantized`), a dense bfloat16 one with its weight matrices kept in bfloat16
/// (products in `cpu_bf16`) and the rest converted. Against the same weights in float32
/// with every product in MLX; and the last step's greedy token is still mlx-lm's (bf16).
#[test]
fn checkpoints_run_with_float32_activations_on_the_cpu() {
    cpu(|| {
        let defaults = ModelOptions::default();
        assert_eq!(defaults.float_dtype, FloatDtype::Float32Activations);
        for v in [
            "mlx-bf16-tied",
            "mlx-bf16-untied",
            "mlx-q4-tied",
            "mlx-q4-untied-mixed",
        ] {
            let exp = expected(v);
            let model = qwen3_5::load_with(model_dir(v), defaults).unwrap();
            let dense = v.starts_with("mlx-bf16");
            // The embedding table (and so the weights) as compact as stored.
            let table = if dense {
                Dtype::Bfloat16
            } else {
                Dtype::Float32
            };
            assert_eq!(model.dtype(), table, "{v}");
            let mlx = ModelOptions {
                cpu_gemm: false,
                float_dtype: FloatDtype::Cast(Dtype::Float32),
                ..defaults
            };
            let reference = qwen3_5::load_with(model_dir(v), mlx).unwrap();
            let before = (cpu_quantized::products(), cpu_bf16::products());
            let actual = common::stepwise_logits(&model, &exp.prompt, exp.prefill);
            let after = (cpu_quantized::products(), cpu_bf16::products());
            match dense {
                true => assert!(after.1 > before.1, "{v}: bf16 kernel unused"),
                false => assert!(after.0 > before.0, "{v}: quantized kernel unused"),
            }
            let want = common::stepwise_logits(&reference, &exp.prompt, exp.prefill);
            for (r, (a, w)) in actual.chunks(256).zip(want.chunks(256)).enumerate() {
                let tol = CPU_KERNELS_ROW_RTOL * w.iter().fold(0f32, |m, x| m.max(x.abs()));
                assert_close(&format!("{v}: row {r}"), a, w, tol, 0.0);
            }
            let argmax = |l: &[f32]| {
                let r = &l[l.len() - 256..];
                (0..256).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap()
            };
            assert_eq!(
                argmax(&actual),
                argmax(&exp.logits_stepwise.1),
                "{v}: argmax"
            );
        }
    })
}

#[test]
fn prefill_then_single_steps_match_mlx_lm() {
    cpu(|| {
        for v in VARIANTS {
            let exp = expected(v);
            let model = common::load_stored(model_dir(v));
            let mut cache = model.new_cache();
            let mut out = to_f32(
                &model
                    .forward(&ids(&exp.prompt[..exp.prefill]), &mut cache)
                    .unwrap(),
            );
            for t in exp.prefill..exp.prompt.len() {
                out.extend(to_f32(
                    &model
                        .forward(&ids(&exp.prompt[t..t + 1]), &mut cache)
                        .unwrap(),
                ));
            }
            assert_logits_close(v, &out, &exp.logits_stepwise.1, 256);
        }
    })
}

#[test]
fn greedy_generation_matches_mlx_lm() {
    cpu(|| {
        for v in VARIANTS {
            let exp = expected(v);
            let model = common::load_stored(model_dir(v));
            let opts = GenerateOptions {
                max_tokens: exp.greedy.len(),
                ..Default::default()
            };
            let got: Vec<u32> = model
                .generate(&exp.prompt, opts.clone())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(got, exp.greedy, "{v}: greedy ids");

            // The prompt fed in chunks of 4 gives the same tokens.
            let chunked = GenerateOptions {
                prefill_step: 4,
                ..opts.clone()
            };
            let got: Vec<u32> = model
                .generate(&exp.prompt, chunked)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(got, exp.greedy, "{v}: greedy ids, prompt in chunks of 4");

            // With the padded ids masked (ids >= real_vocab_size are never sampled).
            let masked = GenerateOptions {
                valid_vocab_size: Some(exp.real_vocab_size),
                ..opts
            };
            let got: Vec<u32> = model
                .generate(&exp.prompt, masked)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                got, exp.greedy_masked,
                "{v}: greedy ids with the padding masked"
            );
            assert!(got.iter().all(|&t| (t as i32) < exp.real_vocab_size));
        }
    })
}

#[test]
fn greedy_step_logits_match_mlx_lm() {
    cpu(|| {
        for v in ["mlx-bf16-untied", "mlx-q4-untied-mixed"] {
            let exp = expected(v);
            let model = common::load_stored(model_dir(v));
            let mut cache = model.new_cache();
            let mut logits = model.forward_last(&ids(&exp.prompt), &mut cache).unwrap();
            let mut out = Vec::new();
            for &t in &exp.greedy {
                out.extend(to_f32(&logits));
                logits = model.forward_last(&ids(&[t]), &mut cache).unwrap();
            }
            assert_logits_close(v, &out, &exp.greedy_logits.1, 256);
        }
    })
}

/// The Hugging Face variants hold the same weights as MLX ones, zero-centred and
/// transposed: after loading (norms shifted once, conv reshaped) the logits are identical.
#[test]
fn both_layouts_give_identical_logits() {
    cpu(|| {
        for (hf, mlx) in [
            ("hf-bf16-untied", "mlx-bf16-untied"),
            ("hf-bf16-tied", "mlx-bf16-tied"),
        ] {
            let prompt = expected(mlx).prompt;
            let a = common::load_stored(model_dir(hf));
            let b = common::load_stored(model_dir(mlx));
            assert_eq!(a.layout(), qwen3_5::weights::Layout::HuggingFace);
            assert_eq!(b.layout(), qwen3_5::weights::Layout::Mlx);
            let la = to_f32(&a.forward(&ids(&prompt), &mut a.new_cache()).unwrap());
            let lb = to_f32(&b.forward(&ids(&prompt), &mut b.new_cache()).unwrap());
            assert_eq!(la, lb, "{hf} vs {mlx}");
        }
    })
}

/// Crossing the KV cache's 256-position growth step and feeding tokens in uneven chunks
/// gives the same logits as one whole-sequence pass.
#[test]
fn chunked_prefill_matches_one_pass_across_cache_growth() {
    cpu(|| {
        let model = common::load_stored(model_dir("mlx-bf16-untied"));
        let tokens: Vec<u32> = (0..300u32).map(|i| (i * 37 + 11) % 250).collect();
        let whole = to_f32(
            &model
                .forward(&ids(&tokens), &mut model.new_cache())
                .unwrap(),
        );
        let mut cache = model.new_cache();
        let mut pieces = Vec::new();
        let mut start = 0;
        for len in [200usize, 60, 1, 1, 38] {
            let chunk = &tokens[start..start + len];
            pieces.extend(to_f32(&model.forward(&ids(chunk), &mut cache).unwrap()));
            start += len;
        }
        assert_eq!(start, tokens.len());
        assert_eq!(cache.offset(), 300);
        assert_logits_close("chunked vs whole", &pieces, &whole, 256);
    })
}

#[test]
fn generation_stops_and_reports() {
    cpu(|| {
        let exp = expected("mlx-bf16-untied");
        let model = common::load_stored(model_dir("mlx-bf16-untied"));
        // Stop on the 5th greedy token: 4 tokens come out, the stop token does not.
        let stop = exp.greedy[4];
        let first = exp.greedy.iter().position(|&t| t == stop).unwrap();
        let opts = GenerateOptions {
            max_tokens: 50,
            stop_tokens: vec![stop],
            sampling: SamplingParams::greedy(),
            ..Default::default()
        };
        let mut g = model.generate(&exp.prompt, opts).unwrap();
        let got: Vec<u32> = (&mut g).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, exp.greedy[..first]);
        let stats = g.stats().clone();
        assert_eq!(stats.finish_reason, Some(qwen3_5::FinishReason::Stop(stop)));
        assert_eq!(stats.prompt_tokens, exp.prompt.len());
        assert_eq!(stats.generated_tokens, first + 1);
        assert!(stats.prompt_tps() > 0.0);
        assert!(stats.peak_memory > 0);
        // The cache holds the prompt and every token fed back, the stop token included.
        let cache = g.into_cache();
        assert_eq!(cache.offset() as usize, exp.prompt.len() + first + 1);

        let opts = GenerateOptions {
            max_tokens: 3,
            ..Default::default()
        };
        let mut g = model.generate(&exp.prompt, opts).unwrap();
        let got: Vec<u32> = (&mut g).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, exp.greedy[..3]);
        assert_eq!(g.stats().finish_reason, Some(qwen3_5::FinishReason::Length));
        assert!(g.next().is_none(), "a finished generation stays finished");

        // max_tokens = 0 samples nothing but takes the prompt into the cache.
        let opts = GenerateOptions {
            max_tokens: 0,
            ..Default::default()
        };
        let mut g = model.generate(&exp.prompt, opts).unwrap();
        assert!(g.next().is_none());
        assert_eq!(g.stats().finish_reason, Some(qwen3_5::FinishReason::Length));
        assert_eq!(g.into_cache().offset() as usize, exp.prompt.len());
    })
}

#[test]
fn generation_rejects_bad_prompts() {
    cpu(|| {
        let model = common::load_stored(model_dir("mlx-bf16-tied"));
        let err = model
            .generate(&[], GenerateOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = model
            .generate(&[1, 256], GenerateOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("256"), "{err}");
        let bad = GenerateOptions {
            sampling: SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let err = model.generate(&[1, 2], bad).err().unwrap();
        assert!(err.to_string().contains("temperature"), "{err}");
    })
}

#[test]
fn sampled_generation_is_reproducible_and_masked() {
    cpu(|| {
        let exp = expected("mlx-bf16-tied");
        let model = common::load_stored(model_dir("mlx-bf16-tied"));
        let run = |seed| -> Vec<u32> {
            let opts = GenerateOptions {
                max_tokens: 24,
                sampling: SamplingParams {
                    temperature: 1.0,
                    top_p: 0.95,
                    min_p: 0.02,
                    top_k: 40,
                    repetition_penalty: 1.3,
                    presence_penalty: 0.5,
                    seed: Some(seed),
                    ..Default::default()
                },
                valid_vocab_size: Some(exp.real_vocab_size),
                ..Default::default()
            };
            model
                .generate(&exp.prompt, opts)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let a = run(3);
        assert_eq!(a.len(), 24);
        assert_eq!(a, run(3), "same seed, same tokens");
        assert_ne!(a, run(4), "another seed, other tokens");
        // The padded rows of this model have the largest logits: masking keeps them out.
        assert!(a.iter().all(|&t| (t as i32) < exp.real_vocab_size), "{a:?}");
    })
}

/// Float32 logits of a sequence decoded in a batch against decoded alone: the same values
/// up to the order of float sums (attention over padded columns, batched products).
const BATCH_ATOL: f32 = 1e-4;
/// Relative part of the batched-against-alone tolerance.
const BATCH_RTOL: f32 = 1e-4;

/// Continuous batching: prompts of different lengths prefilled alone, merged into one
/// batch (left padding in the attention layer, DeltaNet states side by side), joining
/// and leaving, decode as they do alone, with the reference and the fused decode (plain
/// and with compiled layer steps).
/// Every batching schedule: each request's tokens batched equal the request alone.
fn assert_schedules(name: &str, model: &qwen3_5::Model) {
    let vocab = model.config().text.vocab_size as u32;
    for (what, requests, steps) in batching::schedules(vocab) {
        batching::assert_batched_matches_alone(
            &format!("{name}: {what}"),
            model,
            &requests,
            steps,
            BATCH_ATOL,
            BATCH_RTOL,
        );
    }
}

#[test]
fn sequences_of_different_lengths_decode_in_one_batch_as_alone() {
    cpu(|| {
        let dir = random_model("batching", Dtype::Float32);
        let reference = ModelOptions::default().with_decode(Decode::Reference);
        let fused = ModelOptions::default().with_decode(Decode::Fused);
        let compiled = ModelOptions {
            compile_layers: true,
            ..fused
        };
        for (name, options) in [
            ("reference", reference),
            ("fused", fused),
            ("compiled layers", compiled),
        ] {
            let model = qwen3_5::load_with(&dir, options).unwrap();
            assert_schedules(name, &model);
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
}

/// The same schedules on a CUDA GPU in float32 (run with `MLX_ENABLE_TF32=0`, so MLX's
/// products are exact float32 there too): the fused decode with and without compiled layer
/// steps, whose padded batches take the attention decode kernels (each row over its own
/// columns, at its own position). On the GPU machine:
/// `MLX_ENABLE_TF32=0 forward-<hash> --ignored in_one_batch_on_the_gpu`.
#[test]
#[ignore = "needs a CUDA GPU"]
fn sequences_of_different_lengths_decode_in_one_batch_on_the_gpu() {
    assert_eq!(
        std::env::var("MLX_ENABLE_TF32").as_deref(),
        Ok("0"),
        "run this test with MLX_ENABLE_TF32=0: CUDA's default TF32 products round float32 \
         to 10 mantissa bits, coarser than its 1e-4 tolerance (on an H200 with TF32 on, \
         element 59 of a step's logits was 0.011 off)"
    );
    let dir = random_model("batching-gpu", Dtype::Float32);
    gpu(|| {
        for compile_layers in [false, true] {
            let options = ModelOptions {
                compile_layers,
                ..ModelOptions::for_device(&mlx_rs::Device::gpu())
            }
            .with_decode(Decode::Fused);
            let model = qwen3_5::load_with(&dir, options).unwrap();
            assert_eq!(model.plan().step, StepPath::CudaKernel, "a CUDA GPU");
            assert_schedules(&format!("GPU, compiled layers {compile_layers}"), &model);
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Dense bfloat16 products of a batch's decode steps in the small-batch tensor-core kernel
/// (`ModelOptions::small_batch_rows`) against MLX's matmul, on a CUDA GPU: a batch of 5
/// prompts, then 6 greedy-fed steps, with and without compiled layer steps. The kernel must
/// take the steps' products (its counter moves) and give the logits of MLX's products
/// within a few bfloat16 ulps of each row's scale (each rounds its sums once, in its own
/// order, and four layers carry the difference). On the GPU machine:
/// `forward-<hash> --ignored small_batch_kernel`.
#[test]
#[ignore = "needs a CUDA GPU"]
fn small_batch_kernel_decodes_a_batch_as_mlx_matmul_does() {
    use mlx_lm::kernels::small_batch;
    let dir = random_model("small-batch-gpu", Dtype::Bfloat16);
    let (b, prompt_len, steps) = (5, 7, 6);
    let run = |rows: i32, compile_layers: bool| {
        gpu(|| {
            let options = ModelOptions {
                compile_layers,
                small_batch_rows: rows,
                ..ModelOptions::for_device(&mlx_rs::Device::gpu())
            };
            let model = qwen3_5::load_with(&dir, options).unwrap();
            assert_eq!(model.plan().small_batch_rows, rows);
            let prompt: Vec<u32> = (0..b * prompt_len).map(|i| (i * 37 % 128) as u32).collect();
            let mut cache = model.new_cache();
            let x = Array::from_slice(&prompt, &[b as i32, prompt_len as i32]).unwrap();
            let mut out = to_f32(&model.forward_last(&x, &mut cache).unwrap());
            let before = small_batch::products();
            for s in 0..steps {
                let next: Vec<u32> = (0..b).map(|i| ((s * 13 + i * 29) % 128) as u32).collect();
                let x = Array::from_slice(&next, &[b as i32, 1]).unwrap();
                out.extend(to_f32(&model.forward_last(&x, &mut cache).unwrap()));
            }
            (out, small_batch::products() - before)
        })
    };
    for compile_layers in [false, true] {
        let (with_kernel, taken) = run(32, compile_layers);
        let (with_matmul, none) = run(0, compile_layers);
        // Plain steps build the products every step (the MLPs, most projections, the
        // head: four a step at least); compiled layer steps build theirs once, when traced.
        let least = if compile_layers { 1 } else { steps * 4 };
        assert!(taken >= least, "the kernel took {taken} products");
        assert_eq!(none, 0, "products in the kernel with it off");
        common::assert_logits_close_rtol(
            &format!("small-batch kernel against MLX's matmul, compiled layers {compile_layers}"),
            &with_kernel,
            &with_matmul,
            128,
            8.0 / 128.0,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Tensor parallelism: 2 ring processes on this host, each one rank. ----

#[path = "../../../mlx-lm/tests/lm/ranks.rs"]
mod ranks;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The variable that makes `tensor_parallel_worker` run as one rank: `VARIANT:DTYPE,…`
/// (the fixtures to shard; DTYPE `float32` casts the float weights, `native` keeps them).
const TP_WORKER: &str = "QWEN3_5_TEST_TP_CASES";
/// The folder where the ranks write their logits.
const TP_OUT: &str = "QWEN3_5_TEST_TP_OUT";
/// A rank run is killed after this long.
const TP_LIMIT: Duration = Duration::from_secs(120);
/// Tolerance of sharded float32 logits against one process, relative to the row's
/// largest |logit|: the same products added in another order (partial sums, then their
/// sum), a few float32 ulps.
const TP_F32_ROW_RTOL: f32 = 1e-5;
/// The same for bf16: each rank's partial output of every mixer and MLP is rounded to
/// bf16 before the sum (one rounding more than in one process), and the recurrence and
/// four layers carry it: six bf16 ulps of the row's scale (measured 4.6 on
/// `mlx-bf16-untied`). The float32 cases are the exact check; for bf16 the test also
/// asserts that sharding moves the logits less than bf16 itself moves them from float32
/// in one process (19.5 ulps on that fixture).
const TP_BF16_ROW_RTOL: f32 = 6.0 / 128.0;

/// The fixture `variant`; with `dtype` `float32` its float tensors cast to float32
/// before loading.
fn load_as(variant: &str, dtype: &str) -> qwen3_5::Model {
    let dir = model_dir(variant);
    if dtype == "native" {
        return common::load_stored(&dir);
    }
    let config = qwen3_5::Config::from_file(dir.join("config.json")).unwrap();
    let tensors = mlx_lm::Checkpoint::open(&dir).unwrap().load_all().unwrap();
    let tensors = tensors
        .into_iter()
        .map(|(k, v)| match v.dtype() {
            Dtype::Bfloat16 => (k, v.astype(Dtype::Float32).unwrap()),
            _ => (k, v),
        })
        .collect();
    qwen3_5::Model::from_tensors(config, tensors, ModelOptions::default()).unwrap()
}

/// The whole-prompt and the step-wise logits of the fixture's prompt.
fn tp_logits(model: &qwen3_5::Model, prompt: &[u32], prefill: usize) -> [Vec<f32>; 2] {
    let mut cache = model.new_cache();
    let full = to_f32(&model.forward(&ids(prompt), &mut cache).unwrap());
    let mut cache = model.new_cache();
    let mut step = to_f32(&model.forward(&ids(&prompt[..prefill]), &mut cache).unwrap());
    for t in prefill..prompt.len() {
        let logits = model.forward(&ids(&prompt[t..t + 1]), &mut cache).unwrap();
        step.extend(to_f32(&logits));
    }
    [full, step]
}

fn tp_file(dir: &Path, variant: &str, dtype: &str, kind: &str, rank: i32) -> PathBuf {
    dir.join(format!("{variant}-{dtype}-{kind}-rank{rank}.f32"))
}

/// Not a test of its own: one rank of `tensor_parallel_logits_equal_one_process` (does
/// nothing unless `TP_WORKER` is set).
#[test]
fn tensor_parallel_worker() {
    let Ok(cases) = std::env::var(TP_WORKER) else {
        return;
    };
    let out = PathBuf::from(std::env::var(TP_OUT).unwrap());
    let init = || ranks::ring_group(TP_LIMIT);
    cpu(|| {
        for case in cases.split(',').filter(|c| !c.is_empty()) {
            let (variant, dtype) = case.split_once(':').unwrap();
            let exp = expected(variant);
            let group = init();
            let rank = group.rank();
            let mut model = load_as(variant, dtype);
            model.shard(group).unwrap();
            let logits = tp_logits(&model, &exp.prompt, exp.prefill);
            for (kind, v) in ["full", "step"].iter().zip(logits) {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                std::fs::write(tp_file(&out, variant, dtype, kind, rank), bytes).unwrap();
            }
        }
        // 2 attention heads do not split across 4 ranks; the model is left as it was.
        let group = init();
        if group.size() == 4 {
            let exp = expected("mlx-bf16-untied");
            let mut model = load_as("mlx-bf16-untied", "native");
            let err = model.shard(group).unwrap_err().to_string();
            assert!(err.contains("the attention heads (2) across 4"), "{err}");
            let [full, _] = tp_logits(&model, &exp.prompt, exp.prefill);
            assert_logits_close("unsharded after the error", &full, &exp.logits_full.1, 256);
        }
    });
    println!("TP RANK DONE");
}

/// Qwen 3.5 sharded across 2 processes (ring backend, CPU) gives the logits of one
/// process, for the whole prompt and step by step through the caches (DeltaNet and
/// attention), float32 and bf16; both ranks get the same logits bit for bit. The fixtures
/// have one key/value head: each rank keeps it. (The 4-bit fixtures cannot split: their
/// 32-wide inputs are one quantization group.) And 4 ranks refuse 2 attention heads.
#[test]
fn tensor_parallel_logits_equal_one_process() {
    let cases = [
        ("mlx-bf16-untied", "float32"),
        ("hf-bf16-tied", "float32"),
        ("mlx-bf16-untied", "native"),
    ];
    let dir = std::env::temp_dir().join(format!("qwen3_5-tp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec: Vec<String> = cases.iter().map(|(v, d)| format!("{v}:{d}")).collect();
    let spec = spec.join(",");
    let exe = std::env::current_exe().unwrap();
    let workers = |n: usize, spec: &str| {
        let outs = ranks::run_ranks(n, &dir, TP_LIMIT, |_| {
            let mut c = std::process::Command::new(&exe);
            c.args(["--exact", "tensor_parallel_worker", "--nocapture"])
                .args(["--test-threads=1"])
                .env(TP_WORKER, spec)
                .env(TP_OUT, &dir);
            c
        });
        for (r, out) in outs.iter().enumerate() {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("TP RANK DONE"), "rank {r}: {stdout}");
        }
    };
    workers(2, &spec);
    cpu(|| {
        for (variant, dtype) in cases {
            let exp = expected(variant);
            let model = load_as(variant, dtype);
            let rtol = match dtype {
                "float32" => TP_F32_ROW_RTOL,
                _ => TP_BF16_ROW_RTOL,
            };
            let alone = tp_logits(&model, &exp.prompt, exp.prefill);
            for (kind, want) in ["full", "step"].iter().zip(alone) {
                let ranks: Vec<Vec<f32>> = (0..2)
                    .map(|r| {
                        let bytes = std::fs::read(tp_file(&dir, variant, dtype, kind, r)).unwrap();
                        let chunks = bytes.chunks_exact(4);
                        chunks
                            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                            .collect()
                    })
                    .collect();
                assert_eq!(ranks[0], ranks[1], "{variant} {dtype} {kind}: ranks differ");
                let what = format!("{variant} {dtype} {kind}, 2 ranks");
                let mut worst = 0f32;
                for (r, (a, w)) in ranks[0].chunks(256).zip(want.chunks(256)).enumerate() {
                    let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
                    let err = a.iter().zip(w).fold(0f32, |m, (a, w)| m.max((a - w).abs()));
                    worst = worst.max(err / scale);
                    assert_close(&format!("{what}, row {r}"), a, w, rtol * scale, 0.0);
                }
                println!("{what}: largest error {worst:e} of the row's scale (tolerance {rtol:e})");
                if dtype == "native" {
                    let [full32, step32] =
                        tp_logits(&load_as(variant, "float32"), &exp.prompt, exp.prefill);
                    let ref32 = if *kind == "full" { full32 } else { step32 };
                    let mut bf16_noise = 0f32;
                    for (a, w) in want.chunks(256).zip(ref32.chunks(256)) {
                        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
                        let err = a.iter().zip(w).fold(0f32, |m, (a, w)| m.max((a - w).abs()));
                        bf16_noise = bf16_noise.max(err / scale);
                    }
                    assert!(
                        worst < bf16_noise,
                        "{what}: sharding moved the logits by {worst:e} of the scale, more \
                         than bf16 moves them from float32 ({bf16_noise:e})"
                    );
                }
            }
        }
    });
    workers(4, "");
    let _ = std::fs::remove_dir_all(&dir);
}
