//! Shared helpers of the qwen3_5 tests: fixture paths, the mlx-lm reference outputs, and a
//! tiny byte-level tokenizer.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Tolerance of logits against mlx-lm, relative to the largest |logit| of each row (the
/// scale that the bf16 hidden state carries into every logit of the row). The Rust model
/// runs the same MLX ops in the same order as mlx-lm, and on the CPU the logits come out
/// bit-identical today; the tolerance leaves room for one bf16 ulp of that scale (2^-7
/// relative) should an op be reordered (e.g. a fused form), while a real mistake (a norm
/// shifted twice, a rotated dimension off, a head mixed up) moves logits by a sizeable
/// fraction of the scale.
pub const LOGITS_ROW_RTOL: f32 = 1.0 / 128.0;
/// Absolute floor of the logits tolerance.
pub const LOGITS_ATOL: f32 = 1e-3;

/// The folder of all tiny fixture models.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen")
}

/// A fixture model folder.
pub fn model_dir(variant: &str) -> PathBuf {
    fixtures().join(variant)
}

/// A fixture as mlx-lm loads it (float parameters in the stored dtype; the CPU default
/// runs a quantized model with float32 activations, which `forward.rs` checks on its own),
/// with the current device's other defaults.
#[allow(dead_code)]
pub fn load_stored(dir: impl AsRef<std::path::Path>) -> qwen3_5::Model {
    let options = qwen3_5::ModelOptions {
        float_dtype: qwen3_5::FloatDtype::Stored,
        ..qwen3_5::ModelOptions::default()
    };
    qwen3_5::load_with(dir, options).unwrap()
}

/// Prefill, then one step per remaining prompt token: the stepwise logits, flattened,
/// in float32.
#[allow(dead_code)]
pub fn stepwise_logits(model: &qwen3_5::Model, prompt: &[u32], prefill: usize) -> Vec<f32> {
    let tokens = |t: &[u32]| mlx_rs::Array::from_slice(t, &[1, t.len() as i32]).unwrap();
    let floats = |a: mlx_rs::Array| {
        let a = a.astype(mlx_rs::Dtype::Float32).unwrap();
        a.to_vec::<f32>().unwrap()
    };
    let mut cache = model.new_cache();
    let mut out = floats(
        model
            .forward(&tokens(&prompt[..prefill]), &mut cache)
            .unwrap(),
    );
    for t in prefill..prompt.len() {
        out.extend(floats(
            model
                .forward(&tokens(&prompt[t..t + 1]), &mut cache)
                .unwrap(),
        ));
    }
    out
}

/// All model variants.
pub const VARIANTS: &[&str] = &[
    "mlx-bf16-tied",
    "mlx-bf16-untied",
    "hf-bf16-untied",
    "hf-bf16-tied",
    "mlx-q4-tied",
    "mlx-q4-untied-mixed",
];

/// The reference outputs of a variant.
pub struct Expected {
    pub prompt: Vec<u32>,
    pub prefill: usize,
    pub real_vocab_size: i32,
    pub logits_full: (Vec<i32>, Vec<f32>),
    pub logits_stepwise: (Vec<i32>, Vec<f32>),
    pub greedy: Vec<u32>,
    pub greedy_logits: (Vec<i32>, Vec<f32>),
    pub greedy_masked: Vec<u32>,
}

fn array(v: &Value) -> (Vec<i32>, Vec<f32>) {
    let shape = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect();
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (shape, data)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Reads `<variant>.expected.json`.
pub fn expected(variant: &str) -> Expected {
    let path = fixtures().join(format!("{variant}.expected.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    Expected {
        prompt: ids(&v["prompt"]),
        prefill: v["prefill"].as_u64().unwrap() as usize,
        real_vocab_size: v["real_vocab_size"].as_i64().unwrap() as i32,
        logits_full: array(&v["logits_full"]),
        logits_stepwise: array(&v["logits_stepwise"]),
        greedy: ids(&v["greedy"]),
        greedy_logits: array(&v["greedy_logits"]),
        greedy_masked: ids(&v["greedy_masked"]),
    }
}

#[path = "../../../../mlx-lm/tests/lm/close.rs"]
mod close;
pub use close::assert_close;

/// Relative (to the row's largest logit) tolerance between bf16 logits computed on
/// different devices (GPU against CPU): four bf16 ulps of the scale. Matmuls accumulate in
/// a different order there, and each bf16 activation rounding can land one ulp apart.
pub const CROSS_DEVICE_ROW_RTOL: f32 = 4.0 / 128.0;

/// Asserts that each row (of `row` logits) of `actual` is within
/// `LOGITS_ATOL + LOGITS_ROW_RTOL · max |expected row|` of `expected`.
pub fn assert_logits_close(what: &str, actual: &[f32], expected: &[f32], row: usize) {
    assert_logits_close_rtol(what, actual, expected, row, LOGITS_ROW_RTOL)
}

/// [`assert_logits_close`] with a row-relative tolerance of `rtol`.
pub fn assert_logits_close_rtol(
    what: &str,
    actual: &[f32],
    expected: &[f32],
    row: usize,
    rtol: f32,
) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    assert_eq!(expected.len() % row, 0, "{what}: not whole rows");
    for (r, (a, e)) in actual.chunks(row).zip(expected.chunks(row)).enumerate() {
        let scale = e.iter().fold(0f32, |m, x| m.max(x.abs()));
        let tol = LOGITS_ATOL + rtol * scale;
        assert_close(
            &format!("{what}, row {r} (tolerance {tol})"),
            a,
            e,
            tol,
            0.0,
        );
    }
}

/// Copies a fixture model folder into a fresh temporary folder (for tests that edit it).
pub fn copy_to_temp(variant: &str, tag: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!(
        "qwen3_5-test-{}-{variant}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(model_dir(variant)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

mod random_model;
#[allow(unused_imports)] // used by the tests that need a float32 model
pub use random_model::random_model;

#[path = "../../../../mlx-lm/tests/lm/tiny_tokenizer.rs"]
mod tiny_tokenizer;
#[allow(unused_imports)] // not every test binary writes a tokenizer
pub use tiny_tokenizer::write_tiny_tokenizer;

/// Runs `f` with this thread's default CPU stream as the current stream.
pub fn cpu<T>(f: impl FnOnce() -> T) -> T {
    mlx_rs::with_device(&mlx_rs::Device::cpu(), f).unwrap()
}

/// Runs `f` with this thread's default GPU stream as the current stream.
pub fn gpu<T>(f: impl FnOnce() -> T) -> T {
    mlx_rs::with_device(&mlx_rs::Device::gpu(), f).unwrap()
}

/// MLX's CPU JIT cache race between processes and its retry (in the `oracle` crate, which
/// every test binary with Python or CLI children shares).
#[allow(unused_imports)] // not every test binary starts children
pub use oracle::{jit_cache_race, retry_jit_cache_race};

/// Runs `command` (its arguments and environment set) with `stdin` as its standard input,
/// stdout and stderr captured, and waits for it.
pub fn output_with_stdin(command: &mut std::process::Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
