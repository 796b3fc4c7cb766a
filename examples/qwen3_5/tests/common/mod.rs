//! Shared helpers of the qwen3_5 tests: fixture paths and the mlx-lm reference outputs.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Logits of the Rust model and of mlx-lm (same MLX, CPU, bf16 activations) may differ
/// by a few bf16 ulps where the two compute in a different order (e.g. the last-row
/// head in generation vs. the whole-prompt head). Logits here reach |50|, where one bf16
/// ulp is 0.25; below |8| it is 1/32.
pub const LOGITS_ATOL: f32 = 0.07;
/// Relative part of the logits tolerance (two bf16 ulps).
pub const LOGITS_RTOL: f32 = 2.0 * 0.0078125;

/// The folder of all tiny fixture models.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen")
}

/// A fixture model folder.
pub fn model_dir(variant: &str) -> PathBuf {
    fixtures().join(variant)
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

/// Asserts `actual` is within the logits tolerance of `expected`, element-wise.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], atol: f32, rtol: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let mut worst = (0usize, 0f32);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let err = (a - e).abs();
        let allowed = atol + rtol * e.abs();
        if err > allowed && err - allowed > worst.1 {
            worst = (i, err - allowed);
        }
        assert!(a.is_finite(), "{what}: non-finite value at {i}");
    }
    assert!(
        worst.1 == 0.0,
        "{what}: element {} is {} but expected {} (atol {atol}, rtol {rtol})",
        worst.0,
        actual[worst.0],
        expected[worst.0]
    );
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
