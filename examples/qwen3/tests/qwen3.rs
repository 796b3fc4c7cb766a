//! Qwen3 against mlx-lm 0.32.2 (fixtures from `tests/oracle/gen_qwen3.py`): logits of the
//! whole prompt, step-wise decode through the KV cache, greedy generation, 4-bit and
//! mixed-precision checkpoints; strict loading (bad inputs give errors that name the
//! tensor or config field); and LoRA / DoRA adapters (`lora`).

use mlx_lm::kernels::cpu_bf16;
use mlx_lm::kernels::cpu_gemm::{self, CpuProducts};
use mlx_lm::kernels::cpu_quantized;
use mlx_lm::load::FloatDtype;
use mlx_lm::{GenerateOptions, LanguageModel};
use mlx_rs::nn::{Module, UpdateMode};
use mlx_rs::{Array, Dtype};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "../../../mlx-lm/tests/lm/close.rs"]
mod close;
use close::assert_close;
#[path = "../../../mlx-lm/tests/lm/batching.rs"]
mod batching;
#[path = "qwen3/cpu_products.rs"]
mod cpu_products;
#[path = "qwen3/lora.rs"]
mod lora;
#[path = "../../../mlx-lm/tests/lm/ranks.rs"]
mod ranks;
#[path = "qwen3/tensor_parallel.rs"]
mod tensor_parallel;
use ranks::run_ranks;

/// Every fixture folder.
const VARIANTS: &[&str] = &["bf16-tied", "bf16-untied", "q4-tied", "q4-untied-mixed"];

/// Tolerance of logits against mlx-lm, relative to the largest |logit| of each row (the
/// scale the bf16 hidden state carries into every logit of the row). The model runs the
/// same MLX ops in the same order as mlx-lm, and on the CPU the logits are bit-identical
/// (see `logits_are_bit_identical_on_cpu`); the tolerance (one bf16 ulp of that scale,
/// 2⁻⁷) is for the comparisons that are not exact by construction (the binary's `.npy`
/// round trip), while a real mistake (a missing norm, RoPE on the wrong axis, a head mixed
/// up) moves logits by a sizeable fraction of the scale.
const LOGITS_ROW_RTOL: f32 = 1.0 / 128.0;
/// Absolute floor of the logits tolerance.
const LOGITS_ATOL: f32 = 1e-3;

/// Runs `f` on the CPU: the fixtures are mlx-lm's outputs on the CPU, where ours are
/// bit-identical; on a GPU, bf16 products accumulate in another order (on an H200 a row
/// moved by 1.3 % of its largest logit), which says nothing about the model.
fn on_cpu<T>(f: impl FnOnce() -> T) -> T {
    mlx_rs::with_device(&mlx_rs::Device::cpu(), f).unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Expected {
    prompt: Vec<u32>,
    prefill: usize,
    logits_full: Vec<f32>,
    logits_stepwise: Vec<f32>,
    greedy: Vec<u32>,
}

fn expected(variant: &str) -> Expected {
    let path = fixtures().join(format!("{variant}.expected.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let floats = |v: &Value| -> Vec<f32> {
        let data = v["data"].as_array().unwrap();
        data.iter().map(|x| x.as_f64().unwrap() as f32).collect()
    };
    let ids = |v: &Value| -> Vec<u32> {
        let ids = v.as_array().unwrap();
        ids.iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    Expected {
        prompt: ids(&v["prompt"]),
        prefill: v["prefill"].as_u64().unwrap() as usize,
        logits_full: floats(&v["logits_full"]),
        logits_stepwise: floats(&v["logits_stepwise"]),
        greedy: ids(&v["greedy"]),
    }
}

/// A fixture as mlx-lm loads it: float parameters in the stored dtype (the CPU default
/// makes a quantized model's activations float32; `quantized_models_run_in_float32_on_the_cpu`
/// checks that form).
fn load(variant: &str) -> qwen3::Model {
    let options = qwen3::ModelOptions {
        float_dtype: FloatDtype::Stored,
        ..qwen3::ModelOptions::for_current_device()
    };
    qwen3::load_with(fixtures().join(variant), options).unwrap_or_else(|e| panic!("{variant}: {e}"))
}

fn tokens(ids: &[u32]) -> Array {
    let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    Array::from_slice(&ids, &[1, ids.len() as i32]).unwrap()
}

fn floats(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

/// Asserts that each row of `actual` is within `LOGITS_ATOL + LOGITS_ROW_RTOL · max
/// |expected row|` of `expected`.
fn assert_logits_close(what: &str, actual: &[f32], expected: &[f32], row: usize) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (r, (a, e)) in actual.chunks(row).zip(expected.chunks(row)).enumerate() {
        let scale = e.iter().fold(0f32, |m, x| m.max(x.abs()));
        let tol = LOGITS_ATOL + LOGITS_ROW_RTOL * scale;
        assert_close(
            &format!("{what}, row {r} (tolerance {tol})"),
            a,
            e,
            tol,
            0.0,
        );
    }
}

/// Logits of the whole prompt in one forward call.
fn full_logits(model: &qwen3::Model, prompt: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    floats(&model.forward(&tokens(prompt), &mut cache).unwrap())
}

/// Logits of `prefill` tokens at once, then of one token at a time, through the cache.
fn stepwise_logits(model: &qwen3::Model, prompt: &[u32], prefill: usize) -> Vec<f32> {
    let mut cache = model.new_cache();
    let mut out = floats(
        &model
            .forward(&tokens(&prompt[..prefill]), &mut cache)
            .unwrap(),
    );
    for t in prefill..prompt.len() {
        let logits = model
            .forward(&tokens(&prompt[t..t + 1]), &mut cache)
            .unwrap();
        out.extend(floats(&logits));
    }
    assert_eq!(cache.offset(), prompt.len() as i32);
    out
}

#[test]
fn logits_match_mlx_lm() {
    on_cpu(|| {
        for variant in VARIANTS {
            let model = load(variant);
            let e = expected(variant);
            let vocab = model.vocab_size() as usize;
            let got = full_logits(&model, &e.prompt);
            assert_logits_close(&format!("{variant}: full"), &got, &e.logits_full, vocab);
        }
    })
}

#[test]
fn logits_are_bit_identical_on_cpu() {
    on_cpu(|| {
        for variant in VARIANTS {
            let model = load(variant);
            let e = expected(variant);
            assert_eq!(
                full_logits(&model, &e.prompt),
                e.logits_full,
                "{variant}: full"
            );
            let stepwise = stepwise_logits(&model, &e.prompt, e.prefill);
            assert_eq!(stepwise, e.logits_stepwise, "{variant}: step-wise");
        }
    })
}

#[test]
fn stepwise_decode_matches_full_prompt() {
    on_cpu(|| {
        for variant in VARIANTS {
            let model = load(variant);
            let e = expected(variant);
            let vocab = model.vocab_size() as usize;
            let steps = stepwise_logits(&model, &e.prompt, e.prefill);
            let what = format!("{variant}: step-wise against mlx-lm");
            assert_logits_close(&what, &steps, &e.logits_stepwise, vocab);
            let what = format!("{variant}: step-wise against full prompt");
            assert_logits_close(&what, &steps, &full_logits(&model, &e.prompt), vocab);
        }
    })
}

#[test]
fn greedy_generation_matches_mlx_lm() {
    on_cpu(|| {
        for variant in VARIANTS {
            let model = load(variant);
            let e = expected(variant);
            let options = GenerateOptions {
                max_tokens: e.greedy.len(),
                ..Default::default()
            };
            let ids: Vec<u32> = mlx_lm::generate(&model, &e.prompt, options)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(ids, e.greedy, "{variant}");
        }
    })
}

#[test]
fn quantized_layers_follow_the_checkpoint() {
    use mlx_rs::nn::Module;
    let p = load("q4-untied-mixed").parameters().unwrap();
    // 4 bits / group 32: 64 inputs pack into 8 words and 2 groups.
    assert_eq!(
        p["model.layers.0.self_attn.q_proj.weight"].shape(),
        &[64, 8]
    );
    assert_eq!(
        p["model.layers.0.self_attn.q_proj.scales"].shape(),
        &[64, 2]
    );
    // The per-layer entries: 8 bits / group 64.
    assert_eq!(
        p["model.layers.0.self_attn.o_proj.weight"].shape(),
        &[64, 16]
    );
    assert_eq!(p["lm_head.scales"].shape(), &[256, 1]);
    assert_eq!(p["model.embed_tokens.weight"].dtype(), Dtype::Uint32);
    // Float parameters take the checkpoint's dtype.
    assert_eq!(p["model.norm.weight"].dtype(), Dtype::Bfloat16);
    assert!(!load("bf16-tied")
        .parameters()
        .unwrap()
        .contains_key("lm_head.weight"));
}

// ---- strict loading -------------------------------------------------------------------

/// A scratch copy of a fixture folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(variant: &str, tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("qwen3-test-{}-{variant}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixtures().join(variant)).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        Scratch(dir)
    }

    fn edit_config(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> &Self {
        let path = self.0.join("config.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(v.as_object_mut().unwrap());
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        self
    }

    /// Rewrites `model.safetensors` after `edit` changed its tensors.
    fn edit_tensors(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, (StDtype, Vec<usize>, Vec<u8>)>),
    ) -> &Self {
        let path = self.0.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: BTreeMap<_, _> = st
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, (t.dtype(), t.shape().to_vec(), t.data().to_vec())))
            .collect();
        edit(&mut tensors);
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &path).unwrap();
        self
    }

    fn load_err(&self) -> String {
        match qwen3::load(&self.0) {
            Ok(_) => panic!("{} loaded", self.0.display()),
            Err(e) => e.to_string(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_contains(err: &str, part: &str) {
    assert!(err.contains(part), "{err:?} does not say {part:?}");
}

/// `forward` of ids outside the vocabulary is an error naming the id (the embedding's
/// gather used to clamp them: another token's row, silently).
#[test]
fn forward_refuses_ids_outside_the_vocabulary() {
    let model = load("bf16-tied");
    let vocab = model.vocab_size();
    let cases: [(&str, Array, String); 4] = [
        (
            "uint32 at the vocabulary size",
            Array::from_slice(&[1u32, vocab as u32], &[1, 2]).unwrap(),
            format!("token id {vocab} is outside"),
        ),
        (
            "uint32 far beyond",
            Array::from_slice(&[u32::MAX], &[1, 1]).unwrap(),
            "token id 4294967295 is outside".into(),
        ),
        (
            "negative int32",
            Array::from_slice(&[3i32, -1], &[1, 2]).unwrap(),
            "token id -1 is outside".into(),
        ),
        (
            "int64 beyond, second row",
            Array::from_slice(&[1i64, 2, 3, 1 << 40], &[2, 2]).unwrap(),
            "token id 1099511627776 is outside".into(),
        ),
    ];
    for (case, ids, want) in cases {
        let err = model
            .forward(&ids, &mut model.new_cache())
            .map(|_| ())
            .expect_err(case)
            .to_string();
        assert_contains(&err, &want);
        assert_contains(&err, &format!("(0..{vocab})"));
    }
    // The last valid id still goes through.
    let ids = Array::from_slice(&[0u32, vocab as u32 - 1], &[1, 2]).unwrap();
    model.forward(&ids, &mut model.new_cache()).unwrap();
}

#[test]
fn missing_tensor_names_the_key() {
    let s = Scratch::new("bf16-tied", "missing");
    s.edit_tensors(|t| {
        t.remove("model.layers.1.self_attn.k_norm.weight");
    });
    let err = s.load_err();
    assert_contains(
        &err,
        "missing tensor model.layers.1.self_attn.k_norm.weight",
    );
}

#[test]
fn unexpected_tensor_names_the_key() {
    let s = Scratch::new("bf16-tied", "unexpected");
    s.edit_tensors(|t| {
        let norm = t["model.norm.weight"].clone();
        t.insert("model.layers.0.extra.weight".into(), norm);
    });
    assert_contains(
        &s.load_err(),
        "unexpected tensor model.layers.0.extra.weight",
    );
}

#[test]
fn rotary_frequencies_of_old_exports_are_dropped() {
    let s = Scratch::new("bf16-tied", "inv-freq");
    s.edit_tensors(|t| {
        let freqs = (StDtype::F32, vec![8], vec![0u8; 32]);
        t.insert("model.layers.0.self_attn.rotary_emb.inv_freq".into(), freqs);
    });
    qwen3::load(&s.0).unwrap();
}

#[test]
fn wrong_shape_names_the_key() {
    let s = Scratch::new("bf16-tied", "shape");
    s.edit_tensors(|t| {
        let (dtype, _, bytes) = t["model.layers.0.mlp.up_proj.weight"].clone();
        t.insert(
            "model.layers.0.mlp.up_proj.weight".into(),
            (dtype, vec![64, 96], bytes),
        );
    });
    assert_contains(
        &s.load_err(),
        "model.layers.0.mlp.up_proj.weight: shape [64, 96], expected [96, 64]",
    );
}

#[test]
fn missing_config_field_is_named() {
    let s = Scratch::new("bf16-tied", "no-head-dim");
    s.edit_config(|c| {
        c.remove("head_dim");
    });
    let err = s.load_err();
    assert_contains(&err, "config");
    assert_contains(&err, "missing field `head_dim`");

    s.edit_config(|c| {
        c.insert("head_dim".into(), 16.into());
        c.remove("rope_theta");
    });
    assert_contains(&s.load_err(), "missing field `rope_theta`");
}

#[test]
fn unsupported_rope_scaling_is_a_config_error() {
    let s = Scratch::new("bf16-tied", "yarn");
    s.edit_config(|c| {
        let yarn = serde_json::json!({"rope_type": "yarn", "type": "yarn", "factor": 4.0});
        c.insert("rope_scaling".into(), yarn);
    });
    assert_contains(
        &s.load_err(),
        "rope_scaling: type \"yarn\" is not supported",
    );
}

#[test]
fn unknown_quantization_is_a_config_error() {
    let s = Scratch::new("q4-tied", "mode");
    s.edit_config(|c| {
        c["quantization"]["mode"] = "int3".into();
    });
    assert_contains(
        &s.load_err(),
        "quantization.mode: \"int3\" is not a quantization mode",
    );

    s.edit_config(|c| {
        c["quantization"]["mode"] = "affine".into();
        c["quantization"]["bits"] = 7.into();
    });
    assert_contains(&s.load_err(), "7 bits are not supported by the affine mode");

    let s = Scratch::new("bf16-tied", "fp8");
    s.edit_config(|c| {
        let fp8 = serde_json::json!({"quant_method": "fp8"});
        c.insert("quantization_config".into(), fp8);
    });
    assert_contains(&s.load_err(), "quant_method \"fp8\") is not supported");
}

#[test]
fn quantized_tensors_need_the_config_entry() {
    let s = Scratch::new("q4-tied", "no-quant");
    s.edit_config(|c| {
        c.remove("quantization");
        c.remove("quantization_config");
    });
    assert_contains(
        &s.load_err(),
        ".scales: a quantized tensor, but config.json has no \"quantization\"",
    );

    // A layer the config leaves dense, stored quantized.
    let s = Scratch::new("q4-tied", "dense-layer");
    s.edit_config(|c| {
        c["quantization"]["model.layers.0.mlp.up_proj"] = false.into();
    });
    assert_contains(
        &s.load_err(),
        "unexpected tensor model.layers.0.mlp.up_proj.scales",
    );
}

#[test]
fn the_cache_must_fit_the_model() {
    let model = load("bf16-tied");
    let mut cache = mlx_lm::Cache::new(Vec::new());
    let err = model.forward(&tokens(&[1, 2]), &mut cache).unwrap_err();
    assert_contains(&err.to_string(), "the cache has 0 layers, the model 2");
}

/// Float32 logits of a sequence decoded in a batch against decoded alone: the same values
/// up to the order of float sums (attention over padded columns, batched products).
const BATCH_ATOL: f32 = 1e-4;
/// Relative part of the batched-against-alone tolerance.
const BATCH_RTOL: f32 = 1e-4;

#[test]
fn sequences_of_different_lengths_decode_in_one_batch_as_alone() {
    on_cpu(|| {
        // The fixture's shape with random float32 weights.
        let config = qwen3::Config::from_dir(fixtures().join("bf16-tied")).unwrap();
        let model = qwen3::Model::new(config).unwrap();
        assert_eq!(model.dtype(), Dtype::Float32);
        let vocab = model.vocab_size() as u32;
        for (what, requests, steps) in batching::schedules(vocab) {
            batching::assert_batched_matches_alone(
                what, &model, &requests, steps, BATCH_ATOL, BATCH_RTOL,
            );
        }
    })
}

// ---- the qwen3 binary (mlx_lm::cli) ---------------------------------------------------

/// A scratch file path for one test, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!("qwen3-test-{}-{name}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the `qwen3` binary; panics with its stderr unless it succeeds.
fn qwen3_bin(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "qwen3 {args:?} failed: {stderr}");
    out
}

/// `qwen3 logits` (the shared command line on `qwen3::load`) writes mlx-lm's logits of the
/// prompt, and `qwen3 bench` builds the model of a config with random 4-bit weights and
/// reports on it.
#[test]
fn binary_logits_match_mlx_lm_and_bench_runs() {
    let variant = "bf16-untied";
    let e = expected(variant);
    let npy = TempPath::new("logits.npy");
    let ids: Vec<String> = e.prompt.iter().map(u32::to_string).collect();
    let dir = fixtures().join(variant);
    let tokens = ids.join(",");
    qwen3_bin(&[
        "logits".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        // As mlx-lm computes: bfloat16 activations (the CPU default is float32 ones).
        "--float-dtype".as_ref(),
        "stored".as_ref(),
        "--model".as_ref(),
        dir.as_os_str(),
        "--tokens".as_ref(),
        tokens.as_ref(),
        "--out".as_ref(),
        npy.0.as_os_str(),
    ]);
    // Float32 .npy: a header padded to 64 bytes, its length at bytes 8..10, then the data.
    let bytes = std::fs::read(&npy.0).unwrap();
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let logits: Vec<f32> = bytes[start..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(logits.len(), e.logits_full.len());
    let row = e.logits_full.len() / e.prompt.len();
    assert_logits_close("qwen3 logits", &logits, &e.logits_full, row);

    let json = TempPath::new("bench.json");
    let config = dir.join("config.json");
    let out = qwen3_bin(&[
        "bench".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--quantize".as_ref(),
        "4".as_ref(),
        "--prompt".as_ref(),
        "8".as_ref(),
        "--gen".as_ref(),
        "4".as_ref(),
        "--json".as_ref(),
        json.0.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("qwen3 bench: "), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json.0).unwrap()).unwrap();
    assert_eq!(report["quantize"], 4);
    assert!(report["ours"]["decode_tps"].as_f64().unwrap() > 0.0);
    // On the CPU the 4-bit products run in the CPU kernels (outside MLX's graph): what
    // is counted is the graph after the last one, the head's.
    assert_eq!(report["options"]["cpu_gemm"], true, "{report}");
    assert!(
        report["decode_primitives"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(report["peer"].is_null());
}

/// Decode steps handed to MLX on a second thread (the GPU default) give the same ids; the
/// thread evaluates on its own stream, so nothing the model holds may still be an
/// unevaluated op of the loading thread's stream.
#[test]
fn greedy_generation_with_the_submit_thread() {
    on_cpu(|| {
        for variant in VARIANTS {
            let model = load(variant);
            let e = expected(variant);
            let options = GenerateOptions {
                max_tokens: e.greedy.len(),
                submit_thread: Some(true),
                ..Default::default()
            };
            let ids: Vec<u32> = mlx_lm::generate(&model, &e.prompt, options)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(ids, e.greedy, "{variant}");
        }
    })
}
