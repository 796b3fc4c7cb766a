//! The fused decode (`mlx_lm::kernels`, chosen at load by [`ModelOptions`]) of whole
//! models against the reference ops:
//!
//! * the options resolve to the CPU paths on the CPU;
//! * a whole model loaded with the fused decode ([`Decode::Fused`]) gives the logits and
//!   greedy tokens of the same model loaded with the plain ops ([`Decode::Reference`]),
//!   for every fixture variant, with and without compiled layer steps;
//! * on a GPU, a model of the kernels' shapes gives the same logits fused and plain.
//!
//! The kernels themselves are tested in mlx-lm (`mlx-lm/tests/lm/gated_delta.rs`,
//! `attention_kernel.rs`, `gated_delta_chunked.rs`).
//!
//! `decode_speed` (ignored) times greedy decoding with each decode option:
//! `QWEN3_5_BENCH_DIR=<model folder> cargo test --release -p qwen3_5 --test fused -- --ignored --nocapture`.

mod common;

use common::{
    assert_logits_close, assert_logits_close_rtol, cpu, gpu, model_dir, random_model,
    CROSS_DEVICE_ROW_RTOL, VARIANTS,
};
use mlx_lm::kernels::gated_delta::StepPath;
use mlx_rs::{Array, Device, Dtype};
use qwen3_5::{Decode, GenerateOptions, Model, ModelOptions, Prefill};

fn to_f32(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

fn load(dir: impl AsRef<std::path::Path>, decode: Decode) -> Model {
    qwen3_5::load_with(dir, ModelOptions::default().with_decode(decode)).unwrap()
}

#[test]
fn options_resolve_to_the_cpu_paths() {
    assert_eq!(StepPath::fused_on(&Device::cpu()), StepPath::Compiled);
    let defaults = ModelOptions::for_device(&Device::cpu());
    assert_eq!(defaults.decode, Decode::Fused);
    assert!(
        !defaults.compile_layers,
        "compiled layers are a GPU default"
    );
    assert_eq!(defaults.cpu_gemm, !cfg!(target_os = "macos"));
    assert!((1..=8).contains(&defaults.cpu_threads));
    cpu(|| {
        assert_eq!(ModelOptions::default(), defaults);
        let dir = model_dir("mlx-bf16-tied");
        let fused = load(&dir, Decode::Fused);
        assert_eq!(fused.plan().step, StepPath::Compiled);
        assert!(fused.plan().cpu.is_some());
        assert_eq!(load(&dir, Decode::Reference).plan().step, StepPath::Ops);
        let compiled = ModelOptions {
            compile_layers: true,
            ..defaults
        };
        let model = qwen3_5::load_with(&dir, compiled).unwrap();
        assert!(model.plan().compile_layers);
        let reference = compiled.with_decode(Decode::Reference);
        let model = qwen3_5::load_with(&dir, reference).unwrap();
        assert!(
            !model.plan().compile_layers,
            "compiled layers are a fused form"
        );
        let none = ModelOptions {
            cpu_threads: 0,
            ..defaults
        };
        assert!(qwen3_5::load_with(&dir, none).is_err(), "0 threads");
        assert_eq!(defaults.prefill, Prefill::Chunked(64));
        let chunk0 = ModelOptions {
            prefill: Prefill::Chunked(0),
            ..defaults
        };
        assert!(qwen3_5::load_with(&dir, chunk0).is_err(), "chunk size 0");
    })
}

/// A prompt through the sequential prefill gives the logits of the chunked one (chunks of
/// 4 tokens over a 10-token prompt: three chunks, the last one padded), every variant.
#[test]
fn sequential_prefill_matches_chunked() {
    cpu(|| {
        let prompt: Vec<u32> = (0..10).map(|i| (i * 37 + 11) % 240).collect();
        let ids = Array::from_slice(&prompt, &[1, 10]).unwrap();
        for variant in VARIANTS {
            let dir = model_dir(variant);
            let logits = |prefill: Prefill| {
                let options = ModelOptions {
                    prefill,
                    ..ModelOptions::default()
                };
                let model = qwen3_5::load_with(&dir, options).unwrap();
                assert_eq!(model.plan().prefill, prefill);
                to_f32(&model.forward(&ids, &mut model.new_cache()).unwrap())
            };
            let vocab = logits(Prefill::Sequential).len() / 10;
            assert_logits_close(
                &format!("{variant}: sequential vs chunked prefill"),
                &logits(Prefill::Sequential),
                &logits(Prefill::Chunked(4)),
                vocab,
            );
        }
    })
}

fn three_then_steps(model: &Model, prompt: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    let ids = Array::from_slice(&prompt[..3], &[1, 3]).unwrap();
    let mut out = to_f32(&model.forward(&ids, &mut cache).unwrap());
    for &t in &prompt[3..] {
        let ids = Array::from_slice(&[t], &[1, 1]).unwrap();
        let logits = model.forward(&ids, &mut cache).unwrap();
        assert_eq!(logits.ndim(), 3, "logits stay [B, 1, vocab]");
        out.extend(to_f32(&logits));
    }
    out
}

/// Prefill, then single-token steps: the fused decode vs the reference ops, every
/// fixture variant.
#[test]
fn fused_decode_matches_ops_decode_on_fixtures() {
    cpu(|| {
        let prompt: Vec<u32> = vec![5, 17, 200, 3, 99, 42, 7, 128];
        for v in VARIANTS {
            let run = |d: Decode| three_then_steps(&load(model_dir(v), d), &prompt);
            let vocab = load(model_dir(v), Decode::Reference)
                .config()
                .text
                .vocab_size as usize;
            assert_logits_close(v, &run(Decode::Fused), &run(Decode::Reference), vocab);
        }
    })
}

/// The fused decode with compiled layer steps on and off gives the plain ops' logits on
/// every fixture variant (dense, 4-bit, ...).
#[test]
fn compiled_layer_steps_match_ops_decode_on_fixtures() {
    cpu(|| {
        let prompt: Vec<u32> = vec![5, 17, 200, 3, 99, 42, 7];
        for v in VARIANTS {
            let model = load(model_dir(v), Decode::Reference);
            let vocab = model.config().text.vocab_size as usize;
            let reference = three_then_steps(&model, &prompt);
            for compile_layers in [true, false] {
                let options = ModelOptions {
                    compile_layers,
                    ..ModelOptions::default()
                };
                let model = qwen3_5::load_with(model_dir(v), options).unwrap();
                assert_eq!(model.plan().compile_layers, compile_layers);
                assert_logits_close(
                    &format!("{v}, compiled layers {compile_layers}"),
                    &three_then_steps(&model, &prompt),
                    &reference,
                    vocab,
                );
            }
        }
    })
}

/// A first token straight from an empty cache (no prefill: the conv state starts as zeros).
#[test]
fn fused_decode_from_empty_cache() {
    cpu(|| {
        let dir = model_dir("hf-bf16-untied");
        let run = |d: Decode| {
            let model = load(&dir, d);
            let mut cache = model.new_cache();
            let mut out = Vec::new();
            for t in [11u32, 12, 13] {
                let ids = Array::from_slice(&[t], &[1, 1]).unwrap();
                out.extend(to_f32(&model.forward(&ids, &mut cache).unwrap()));
            }
            assert_eq!(cache.offset(), 3);
            out
        };
        let vocab = load(&dir, Decode::Reference).config().text.vocab_size as usize;
        assert_logits_close(
            "from empty cache",
            &run(Decode::Fused),
            &run(Decode::Reference),
            vocab,
        );
    })
}

/// Batch of two sequences decoding together, fused vs ops.
#[test]
fn fused_decode_batch_of_two() {
    cpu(|| {
        let dir = model_dir("mlx-bf16-untied");
        let run = |d: Decode| {
            let model = load(&dir, d);
            let mut cache = model.new_cache();
            let ids = Array::from_slice(&[1u32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
            let mut out = to_f32(&model.forward(&ids, &mut cache).unwrap());
            for t in [9u32, 10] {
                let ids = Array::from_slice(&[t, t + 100], &[2, 1]).unwrap();
                out.extend(to_f32(&model.forward(&ids, &mut cache).unwrap()));
            }
            out
        };
        let vocab = load(&dir, Decode::Reference).config().text.vocab_size as usize;
        assert_logits_close(
            "batch of two",
            &run(Decode::Fused),
            &run(Decode::Reference),
            vocab,
        );
    })
}

/// CPU time this process has used, in ms (Linux; `None` elsewhere). Under a loaded machine
/// the CPU time per token is steadier than tokens per second.
fn cpu_time_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 10.0) // USER_HZ = 100 on Linux
}

fn greedy(model: &Model, prompt: &[u32], n: usize) -> (Vec<u32>, f64) {
    let opts = GenerateOptions {
        max_tokens: n,
        ..Default::default()
    };
    let mut stream = model.generate(prompt, opts).unwrap();
    let ids: Vec<u32> = (&mut stream).collect::<Result<_, _>>().unwrap();
    (ids, stream.stats().generation_tps())
}

#[test]
fn fused_greedy_generation_matches_ops() {
    cpu(|| {
        for v in VARIANTS {
            let prompt = [3u32, 1, 4, 1, 5, 9, 2, 6];
            let fused_ids = greedy(&load(model_dir(v), Decode::Fused), &prompt, 12).0;
            let ops_ids = greedy(&load(model_dir(v), Decode::Reference), &prompt, 12).0;
            assert_eq!(fused_ids, ops_ids, "{v}: greedy ids");
        }
    })
}

/// Times greedy decoding: the reference ops (the code before the fused forms) against
/// the fused decode, and on a GPU the fused decode without compiled layer steps too.
/// `QWEN3_5_BENCH_DIR` picks the model (default: a fixture), `QWEN3_5_BENCH_TOKENS` the
/// number of tokens (default 64), `QWEN3_5_BENCH_ROUNDS` the rounds (default 5),
/// `QWEN3_5_BENCH_GPU=1` the GPU (with MLX's memory limit set to 24 GB).
#[test]
#[ignore]
fn decode_speed() {
    let env_num = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let dir = std::env::var("QWEN3_5_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| model_dir("mlx-bf16-tied"));
    let n = env_num("QWEN3_5_BENCH_TOKENS", 64);
    let rounds = env_num("QWEN3_5_BENCH_ROUNDS", 5);
    let on_gpu = std::env::var("QWEN3_5_BENCH_GPU").as_deref() == Ok("1");
    let device = if on_gpu {
        mlx_rs::memory::set_memory_limit(24 << 30).unwrap();
        Device::gpu()
    } else {
        Device::cpu()
    };
    let defaults = ModelOptions::for_device(&device);
    let mut variants = vec![
        ("reference", defaults.with_decode(Decode::Reference)),
        ("fused", defaults),
    ];
    if on_gpu {
        let plain = ModelOptions {
            compile_layers: !defaults.compile_layers,
            ..defaults
        };
        variants.push(("fused, compiled layers toggled", plain));
    }
    mlx_rs::with_device(&device, || {
        let models: Vec<Model> = variants
            .iter()
            .map(|(_, o)| qwen3_5::load_with(&dir, *o).unwrap())
            .collect();
        let prompt: Vec<u32> = (0..16).map(|i| (i * 7 + 3) % 200).collect();
        // Warm up every variant (compile traces, JIT kernels).
        for model in &models {
            greedy(model, &prompt, 8);
        }
        let mut ids = Vec::new();
        let mut rates = vec![Vec::new(); models.len()];
        let mut cpu_ms = vec![Vec::new(); models.len()];
        // Alternate the variants so that load changes on the machine hit all alike.
        for round in 0..rounds {
            for (m, model) in models.iter().enumerate() {
                let c0 = cpu_time_ms();
                let (got, tps) = greedy(model, &prompt, n);
                if let (Some(c0), Some(c1)) = (c0, cpu_time_ms()) {
                    cpu_ms[m].push((c1 - c0) / n as f64);
                }
                println!("round {round} {}: {tps:.1} tokens/s", variants[m].0);
                rates[m].push(tps);
                ids.push(got);
            }
        }
        let sorted = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        };
        for (m, model) in models.iter().enumerate() {
            let r = sorted(&rates[m]);
            let c = sorted(&cpu_ms[m]);
            println!(
                "{} on {}: {} ({:?}): median {:.1}, best {:.1} tokens/s; least CPU time per token {} ({rounds} rounds of {n} tokens, prefill included in the CPU time)",
                dir.display(),
                if on_gpu { "GPU" } else { "CPU" },
                variants[m].0,
                model.plan(),
                r[r.len() / 2],
                r[r.len() - 1],
                c.first().map_or("n/a".to_string(), |x| format!("{x:.2} ms")),
            );
        }
        if !ids.windows(2).all(|w| w[0] == w[1]) {
            println!("note: the variants decoded different tokens (near-ties in a random model?)");
        }
    })
    .unwrap();
}

/// Writes a random-weight model whose DeltaNet heads fit the GPU kernels (Dk = 32, two
/// value heads per key head) into a fresh temporary folder.
fn kernel_shaped_model(tag: &str) -> std::path::PathBuf {
    kernel_shaped_model_as(tag, Dtype::Bfloat16)
}

/// [`kernel_shaped_model`] with its float weights (all but `A_log`) in `bf`.
fn kernel_shaped_model_as(tag: &str, bf: Dtype) -> std::path::PathBuf {
    random_model(&format!("fused-{tag}"), bf)
}

/// The fused decode on the CPU in float32 takes the attention outside MLX
/// (`mlx_lm::kernels::cpu_attention`, with the CPU GEMM on): its logits at every step of a
/// prompt and 40 decode steps (the cache past one 256-position block of its buffer, so the
/// buffers hold unused positions) against the reference decode's MLX attention.
#[test]
fn cpu_decode_attention_matches_mlx_in_float32() {
    let dir = kernel_shaped_model_as("cpu-attention-f32", Dtype::Float32);
    let prompt: Vec<u32> = (0..230).map(|i| (i * 7 + 3) % 120).collect();
    let steps: Vec<u32> = (0..40).map(|i| (i * 13 + 5) % 120).collect();
    let run = |decode: Decode| {
        cpu(|| {
            let options = ModelOptions {
                decode,
                cpu_gemm: true,
                ..ModelOptions::for_device(&Device::cpu())
            };
            let model = qwen3_5::load_with(&dir, options).unwrap();
            let before = mlx_lm::kernels::cpu_attention::calls();
            let out = prompt_then_steps(&model, &prompt, &steps);
            (out, mlx_lm::kernels::cpu_attention::calls() - before)
        })
    };
    let (fused, taken) = run(Decode::Fused);
    let (reference, none) = run(Decode::Reference);
    assert!(
        taken >= steps.len(),
        "the fused decode took it {taken} times"
    );
    assert_eq!(none, 0, "the reference decode stays on MLX's attention");
    assert_logits_close_rtol(
        "fused CPU attention vs MLX's",
        &fused,
        &reference,
        128,
        1e-4,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Largest |a − e| per row of `row` values.
fn row_max_diffs(a: &[f32], e: &[f32], row: usize) -> Vec<f32> {
    a.chunks(row)
        .zip(e.chunks(row))
        .map(|(a, e)| a.iter().zip(e).fold(0f32, |m, (x, y)| m.max((x - y).abs())))
        .collect()
}

/// The compiled layer steps (`src/model/layer_step.rs`, on by default on a GPU) against
/// the same fused decode without them, in float32 on the GPU, where the GPU's own ops are a
/// tight reference (a wrong input, offset or rounding point shows as an error of the
/// logits' own size, not of float rounding).
#[test]
#[ignore = "needs a CUDA GPU"]
fn compiled_layer_steps_match_fused_ops_in_float32() {
    gpu_f32_decode_option("compiled-layers", 1e-3, |compile_layers| ModelOptions {
        compile_layers,
        ..ModelOptions::for_device(&Device::gpu())
    });
}

/// Short prompts through the GPU step kernel (`kernel_prefill_max`, on by default on CUDA)
/// against the chunked prefill, in float32 on the GPU: the prompt's logits and every
/// step's after it. The chunked form's float32 products take TF32 where MLX lets them
/// (its default on CUDA): then the two differ by up to 6.7e-3 and 1.2e-2 of the row's
/// scale (H200, two sessions on 2026-12-04), so the tolerance is 3e-2; with
/// `MLX_ENABLE_TF32=0` it is 1e-3 (passed there in both). A wrong index or state is of
/// the logits' own size.
#[test]
#[ignore = "needs a CUDA GPU"]
fn short_prefill_kernel_matches_chunked_prefill_in_float32() {
    let tf32_off = std::env::var("MLX_ENABLE_TF32").is_ok_and(|v| v == "0");
    let rtol = if tf32_off { 1e-3 } else { 3e-2 };
    gpu_f32_decode_option("short-prefill", rtol, |on| ModelOptions {
        kernel_prefill_max: if on { 256 } else { 0 },
        ..ModelOptions::for_device(&Device::gpu())
    });
}

/// Fused decode of a float32 kernel-shaped model on the GPU loaded with an option on and
/// off (`options(on)`): equal within `rtol` of each row's scale (float32 rounding, and TF32
/// products where MLX's matmul takes them); a wrong index or rounding step is of the
/// logits' size (~10).
fn gpu_f32_decode_option(name: &str, rtol: f32, options: impl Fn(bool) -> ModelOptions) {
    let dir = kernel_shaped_model_as(&format!("{name}-f32"), Dtype::Float32);
    let (prompt, steps) = ([3u32, 9, 27, 81, 115], [7u32, 49, 95, 23, 1, 64, 5, 77]);
    let run = |on: bool| {
        gpu(|| {
            let model = qwen3_5::load_with(&dir, options(on)).unwrap();
            prompt_then_steps(&model, &prompt, &steps)
        })
    };
    let (with_option, without) = (run(true), run(false));
    let vocab = 128;
    println!(
        "{name}: max |diff| per row: {:?}",
        row_max_diffs(&with_option, &without, vocab)
    );
    assert_logits_close_rtol(
        &format!("GPU fused, {name} on vs off (float32)"),
        &with_option,
        &without,
        vocab,
        rtol,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prompt then single steps; logits of every position.
fn prompt_then_steps(model: &Model, prompt: &[u32], steps: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    let ids = Array::from_slice(prompt, &[1, prompt.len() as i32]).unwrap();
    let mut out = to_f32(&model.forward(&ids, &mut cache).unwrap());
    for &t in steps {
        let ids = Array::from_slice(&[t], &[1, 1]).unwrap();
        out.extend(to_f32(&model.forward(&ids, &mut cache).unwrap()));
    }
    out
}

/// A model with kernel-sized heads (Dk = 32, Hv = 2 Hk): the fused mode on the CPU, and on
/// a GPU when there is one (the whole-layer kernel), against plain ops on the CPU.
#[test]
fn fused_decode_on_kernel_shaped_model() {
    let dir = kernel_shaped_model("kernel-shaped");
    let (prompt, steps) = ([3u32, 9, 27, 81, 115], [7u32, 49, 95, 23, 1, 64]);
    let (reference, vocab) = cpu(|| {
        let model = load(&dir, Decode::Reference);
        let out = prompt_then_steps(&model, &prompt, &steps);
        (out, model.config().text.vocab_size as usize)
    });
    let fused_cpu = cpu(|| prompt_then_steps(&load(&dir, Decode::Fused), &prompt, &steps));
    assert_logits_close("fused CPU vs ops", &fused_cpu, &reference, vocab);
    match StepPath::gpu_kernel() {
        None => println!("skipped the GPU half: no GPU"),
        Some(kernel) => {
            // The GPU's own reference: its matmuls round bf16 differently from the CPU's,
            // so across devices the prompt's logits differ by a few bf16 ulps of the row's
            // scale (measured on an H200: 0.125 at scale ~11, 2 ulps), and on this tiny
            // random model the differences grow over the decode steps (row 3 differed by
            // 0.73 at scale ~13 on an H200). Across devices only the prompt row is held to
            // a tolerance. The fused forms are held against the GPU's plain ops at every
            // step, with the same few-ulp tolerance: their kernels sum in another order
            // and round exp/rsqrt differently, and on the GPU (unlike the CPU, where the
            // fused forms are bit-identical) that grows over the steps too (H200: 3 ulps,
            // 0.375 at scale ~12.7, by the sixth step; the margin is thin). The prompt
            // runs in the ops' chunked form on both sides (with the short-prompt kernel,
            // tested in float32 below, bf16 rounding of the other form grew past the
            // margin by the third step on an H200).
            let gpu_ops =
                gpu(|| prompt_then_steps(&load(&dir, Decode::Reference), &prompt, &steps));
            assert_logits_close_rtol(
                "GPU ops vs CPU ops, prompt row",
                &gpu_ops[..vocab],
                &reference[..vocab],
                vocab,
                CROSS_DEVICE_ROW_RTOL,
            );
            // The fused decode with and without compiled layer steps.
            for compile_layers in [true, false] {
                let got = gpu(|| {
                    let options = ModelOptions {
                        compile_layers,
                        kernel_prefill_max: 0,
                        ..ModelOptions::default()
                    };
                    let model = qwen3_5::load_with(&dir, options).unwrap();
                    assert_eq!(model.plan().step, kernel);
                    prompt_then_steps(&model, &prompt, &steps)
                });
                assert_logits_close_rtol(
                    &format!("GPU fused (compiled layers {compile_layers}) vs GPU ops"),
                    &got,
                    &gpu_ops,
                    vocab,
                    CROSS_DEVICE_ROW_RTOL,
                );
                println!(
                    "GPU fused ({kernel:?}, compiled layers {compile_layers}) matches the GPU ops"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` on the GPU with the model in `QWEN3_5_BENCH_DIR` (default options but
/// `small_batch_rows` from `QWEN3_5_SMALL_BATCH_ROWS` if set, for A/B runs; MLX's memory
/// limit at 24 GiB); prints that it skipped when the directory is not set.
fn with_bench_model(f: impl FnOnce(&qwen3_5::Model)) {
    let Ok(dir) = std::env::var("QWEN3_5_BENCH_DIR") else {
        println!("skipped: set QWEN3_5_BENCH_DIR");
        return;
    };
    let mut options = ModelOptions::for_device(&Device::gpu());
    if let Ok(rows) = std::env::var("QWEN3_5_SMALL_BATCH_ROWS") {
        options.small_batch_rows = rows.parse().expect("QWEN3_5_SMALL_BATCH_ROWS: a number");
    }
    println!("small-batch kernel up to {} rows", options.small_batch_rows);
    mlx_rs::memory::set_memory_limit(24 << 30).unwrap();
    gpu(|| f(&qwen3_5::load_with(&dir, options).unwrap()))
}

/// Timing, not a check: greedy decode steps of a batch as the serving engine holds one
/// (prompts of 60–123 tokens prefilled alone, then merged: left padding in the attention
/// layers), at batch 1 to 32, on the GPU with the default options. Each step is timed
/// twice: evaluated before the next is built (`sync`), and as the serving engine runs
/// them (`pipelined`: a step is handed to MLX, then the tokens of the one before it are
/// read). On the GPU machine: `QWEN3_5_BENCH_DIR=<model folder> fused-<hash> --ignored
/// --nocapture padded_batch_decode_speed`.
#[test]
#[ignore = "timing, for the GPU machine"]
fn padded_batch_decode_speed() {
    with_bench_model(|model| {
        println!("| batch | sync ms/step | pipelined ms/step | pipelined tokens/s |");
        println!("|---:|---:|---:|---:|");
        for b in [1usize, 2, 4, 8, 16, 32] {
            let sync = batch_steps(model, b, false);
            let piped = batch_steps(model, b, true);
            let tps = b as f64 * 1e3 / piped;
            println!("| {b} | {sync:.2} | {piped:.2} | {tps:.0} |");
        }
    })
}

/// Milliseconds per greedy decode step of a padded batch of `b` rows (see
/// [`padded_batch_decode_speed`]), each step evaluated before the next is built, or
/// (`pipelined`) handed to MLX before the previous step's tokens are read.
fn batch_steps(model: &qwen3_5::Model, b: usize, pipelined: bool) -> f64 {
    let (warm, steps) = (4, 48);
    match run_batch_steps(model, b, pipelined, warm, steps) {
        Ok(ms) => ms,
        Err((step, e)) => panic!("step {step} of {b} rows: {e}"),
    }
}

/// Calls `shim_mark(label)` when the process has a diagnostic `LD_PRELOAD` library that
/// defines it (`benches/cuda_calls.c`: it counts the CUDA driver and cuBLASLt calls MLX
/// makes, and prints them since the last mark); does nothing otherwise.
fn shim_mark(label: &str) {
    use std::ffi::{c_char, c_void, CString};
    extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    // SAFETY: dlsym with RTLD_DEFAULT (null) and a NUL-terminated name only looks a symbol up.
    let f = unsafe { dlsym(std::ptr::null_mut(), c"shim_mark".as_ptr()) };
    if f.is_null() {
        return;
    }
    // SAFETY: a library that defines `shim_mark` defines it as `void shim_mark(const char*)`.
    let f: extern "C" fn(*const c_char) = unsafe { std::mem::transmute(f) };
    let label = CString::new(label).unwrap_or_default();
    f(label.as_ptr());
}

/// The cache of a padded batch of `b` rows: prompts of 60–123 tokens prefilled alone,
/// then merged (left padding in the attention layers), as the serving engine holds one.
fn padded_batch_cache(model: &qwen3_5::Model, b: usize) -> qwen3_5::Cache {
    let caches: Vec<qwen3_5::Cache> = (0..b)
        .map(|i| {
            let len = 60 + (i * 37) % 64;
            let prompt: Vec<u32> = (0..len).map(|j| ((i * 31 + j * 7) % 5000) as u32).collect();
            let mut cache = model.new_cache();
            let ids = Array::from_slice(&prompt, &[1, len as i32]).unwrap();
            model.forward_last(&ids, &mut cache).unwrap();
            cache
        })
        .collect();
    qwen3_5::Cache::merge(&caches).unwrap()
}

/// The greedy tokens of one decode step of a batch (`ids`: one token per row) as a lazy
/// graph over `cache`, which the step updates; MLX's message when building it fails.
fn greedy_step(
    model: &qwen3_5::Model,
    ids: &Array,
    cache: &mut qwen3_5::Cache,
) -> Result<Array, String> {
    let b = ids.size() as i32;
    let logits = model
        .forward_last(&ids.reshape(&[b, 1]).map_err(|e| e.to_string())?, cache)
        .map_err(|e| e.to_string())?;
    mlx_rs::ops::argmax_axis(&logits, -1, false)
        .and_then(|t| t.astype(Dtype::Uint32))
        .map_err(|e| e.to_string())
}

/// `warm` then `steps` greedy decode steps of a padded batch of `b` rows (prompts of
/// 60–123 tokens prefilled alone, then merged): milliseconds per timed step, or the step
/// whose evaluation failed and MLX's message.
fn run_batch_steps(
    model: &qwen3_5::Model,
    b: usize,
    pipelined: bool,
    warm: usize,
    steps: usize,
) -> Result<f64, (usize, String)> {
    let mut cache = padded_batch_cache(model, b);
    let mut ids = Array::from_slice(&vec![1u32; b], &[b as i32]).unwrap();
    let mut unread: Option<Array> = None;
    let mut start = std::time::Instant::now();
    for s in 0..warm + steps {
        if s == warm {
            start = std::time::Instant::now();
        }
        let failed = |e: mlx_rs::Error| (s, e.to_string());
        let next = greedy_step(model, &ids, &mut cache).map_err(|e| (s, e))?;
        let mut arrays = cache.arrays();
        arrays.push(&next);
        if pipelined {
            mlx_rs::async_eval(&arrays).map_err(failed)?;
            if let Some(previous) = unread.replace(next.clone()) {
                previous.to_vec::<u32>().map_err(failed)?;
            }
        } else {
            mlx_rs::eval(&arrays).map_err(failed)?;
        }
        ids = next;
    }
    if let Some(last) = unread {
        last.to_vec::<u32>()
            .map_err(|e| (warm + steps, e.to_string()))?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / steps as f64)
}

/// Timing, not a check: where a padded batch's decode step spends its time, at 1, 2 and
/// 16 rows (prompts as in [`padded_batch_decode_speed`]), each step waited for before the
/// next: building the graph (the forward pass and the greedy pick), handing it to MLX
/// (`async_eval`, which on CUDA encodes every kernel on the calling thread) and waiting
/// for the GPU; then the primitives of one step by kind, where they differ from one row's.
/// On the GPU machine: `QWEN3_5_BENCH_DIR=<model folder> fused-<hash> --ignored --nocapture
/// batch_step_phases`.
#[test]
#[ignore = "diagnostic, for the GPU machine"]
fn batch_step_phases() {
    with_bench_model(|model| {
        println!("| rows | build ms | hand over ms | wait ms | primitives |");
        println!("|---:|---:|---:|---:|---:|");
        let mut kinds_of_one: Vec<(String, usize)> = Vec::new();
        for b in [1usize, 2, 16, 1] {
            let mut cache = padded_batch_cache(model, b);
            let mut ids = Array::from_slice(&vec![1u32; b], &[b as i32]).unwrap();
            let (warm, steps) = (4, 40);
            let mut phases = [0f64; 3];
            let mut kinds = Vec::new();
            for s in 0..warm + steps {
                if s == warm {
                    shim_mark(&format!("{b} rows, prefills and {warm} warm-up steps"));
                }
                let t0 = std::time::Instant::now();
                let next = greedy_step(model, &ids, &mut cache).unwrap();
                let mut arrays = cache.arrays();
                arrays.push(&next);
                if s + 1 == warm {
                    // The last warm-up step (its cache evaluated, its time not counted).
                    kinds = mlx_rs::graph::count_primitives_by_kind(&arrays).unwrap();
                }
                let t1 = std::time::Instant::now();
                mlx_rs::async_eval(&arrays).unwrap();
                let t2 = std::time::Instant::now();
                mlx_rs::eval(&[&next]).unwrap();
                let t3 = std::time::Instant::now();
                if s >= warm {
                    for (p, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                        *p += d.as_secs_f64() * 1e3 / steps as f64;
                    }
                }
                ids = next;
            }
            shim_mark(&format!("{b} rows, {steps} steps"));
            let total: usize = kinds.iter().map(|(_, n)| n).sum();
            let [build, hand, wait] = phases;
            println!("| {b} | {build:.2} | {hand:.2} | {wait:.2} | {total} |");
            if kinds_of_one.is_empty() {
                kinds_of_one = kinds;
            } else if b > 1 {
                for (kind, n) in &kinds {
                    let one = kinds_of_one
                        .iter()
                        .find(|(k, _)| k == kind)
                        .map_or(0, |k| k.1);
                    if *n != one {
                        println!("  {b} rows: {kind} {n} (one row: {one})");
                    }
                }
            }
        }
    })
}

/// Timing, not a check: a batch of fresh prompts prefilled together
/// (`LanguageModel::prefill_rows`, as the serving engine runs requests that arrive
/// together), each (rows, longest) shape twice in a row: the first time pays for what MLX
/// builds per shape, the second shows the prefill itself. On the GPU machine:
/// `QWEN3_5_BENCH_DIR=<model folder> fused-<hash> --ignored --nocapture batched_prefill_shapes`.
#[test]
#[ignore = "timing, for the GPU machine"]
fn batched_prefill_shapes() {
    use mlx_lm::model::LanguageModel;
    with_bench_model(|model| {
        println!("| rows | longest | first ms | again ms |");
        println!("|---:|---:|---:|---:|");
        for (rows, longest) in [
            (16, 90),
            (16, 93),
            (15, 93),
            (8, 90),
            (16, 128),
            (32, 64),
            (1, 90),
        ] {
            let prompts: Vec<Vec<u32>> = (0..rows)
                .map(|i| {
                    let len = longest - i % 5;
                    (0..len).map(|j| ((i * 31 + j * 7) % 5000) as u32).collect()
                })
                .collect();
            let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
            let time = || {
                let start = std::time::Instant::now();
                let caches = model.prefill_rows(&refs).unwrap();
                mlx_rs::eval(&caches.iter().flat_map(|c| c.arrays()).collect::<Vec<_>>()).unwrap();
                start.elapsed().as_secs_f64() * 1e3
            };
            let (first, again) = (time(), time());
            println!("| {rows} | {longest} | {first:.1} | {again:.1} |");
        }
    })
}
