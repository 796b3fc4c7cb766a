//! What the model crates' adapter tests share (included with `#[path]` by
//! `examples/qwen3/tests/qwen3/lora.rs` and `examples/qwen3_5/tests/lora.rs`; not a module
//! of the `lm` binary): the cases `tests/oracle/gen_lora.py` wrote, float32 copies of the
//! fixture models (the bases the adapters were made on), and mlx-lm's logits of a folder
//! run live through the Python oracle.

#![allow(dead_code)]

use mlx_rs::{Array, Dtype};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Logits of an adapted model against mlx-lm's, relative to the largest |logit| of each
/// row: float32 on both sides, the same ops, but products summed in other orders (Qwen
/// 3.5's joined projections and CPU GEMM, DoRA's dequantized product against
/// `quantized_matmul`), moved by a few float32 ulps per layer; a wrong scale, a missing
/// update or a layer adapted that should not be moves them by 5 % or more of the scale
/// (`gen_lora.py` refuses adapters that change less).
pub const LORA_LOGITS_ROW_RTOL: f32 = 1e-4;
/// Absolute floor of the tolerance.
pub const LORA_LOGITS_ATOL: f32 = 1e-4;

/// One adapter made by mlx-lm and the logits it gives.
pub struct Case {
    /// The case's name (`lora-dense`, `dora-q4`, …).
    pub name: String,
    /// The fixture folder of the base model (a sibling of `lora/`).
    pub base: String,
    /// The adapter folder.
    pub adapter: PathBuf,
    /// The prompt.
    pub prompt: Vec<i32>,
    /// mlx-lm's logits of the prompt, `[prompt, vocab]` row-major.
    pub logits: Vec<f32>,
    /// The tensors of the adapter.
    pub tensors: Vec<String>,
}

/// The cases under `lora_dir` (a model crate's `tests/fixtures/lora`).
pub fn cases(lora_dir: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(lora_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    entries.sort();
    for path in entries {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let name = file.trim_end_matches(".expected.json").to_string();
        let ints = |v: &Value| -> Vec<i32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() as i32)
                .collect()
        };
        out.push(Case {
            adapter: lora_dir.join(&name),
            name,
            base: doc["base"].as_str().unwrap().to_string(),
            prompt: ints(&doc["prompt"]),
            logits: doc["logits"]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
            tensors: doc["adapter_tensors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect(),
        });
    }
    assert!(!out.is_empty(), "no cases in {}", lora_dir.display());
    out
}

/// A scratch folder for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty folder named after `name` and this process.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lora-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a copy of the model folder `src` into `dst` with every floating-point tensor in
/// float32 (what `model.set_dtype(mx.float32)` gives after mlx-lm's loader): the base the
/// adapters were made on. Packed quantized weights stay as they are.
pub fn float32_copy(src: &Path, dst: &Path) {
    let checkpoint = mlx_lm::Checkpoint::open(src).unwrap();
    let tensors = checkpoint.load_all().unwrap();
    let tensors: Vec<(String, Array)> = tensors
        .into_iter()
        .map(|(k, v)| {
            let v = if v.dtype().is_float() {
                v.astype(Dtype::Float32).unwrap()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    std::fs::create_dir_all(dst).unwrap();
    mlx_rs::io::save_safetensors(
        dst.join("model.safetensors"),
        tensors.iter().map(|(k, v)| (k, v)),
        [("format", "mlx")],
    )
    .unwrap();
    std::fs::copy(src.join("config.json"), dst.join("config.json")).unwrap();
}

/// mlx-lm's logits of `prompt` for the model folder `dir` (its loader, strict), with the
/// adapter of `adapter` loaded by its `load_adapters` when given: `[prompt, vocab]`.
pub fn mlx_lm_logits(dir: &Path, prompt: &[i32], adapter: Option<&Path>) -> Vec<f32> {
    const SCRIPT: &str = r#"
import json, sys
import mlx.core as mx
from mlx_lm.utils import load_model
from mlx_lm.tuner.utils import load_adapters
mx.set_default_device(mx.cpu)
from pathlib import Path
model, _ = load_model(Path(sys.argv[1]))
if len(sys.argv) > 3:
    load_adapters(model, sys.argv[3])
    model.eval()
ids = mx.array(json.loads(sys.argv[2]))[None]
out = model(ids).astype(mx.float32)[0]
sys.stdout.write(json.dumps(out.reshape(-1).tolist()))
"#;
    let mut cmd = oracle::python().unwrap_or_else(|e| panic!("{e}"));
    cmd.args(["-c", SCRIPT])
        .arg(dir)
        .arg(serde_json::to_string(prompt).unwrap());
    if let Some(a) = adapter {
        cmd.arg(a);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "mlx-lm failed on {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts every row of `got` is within `LORA_LOGITS_ATOL + LORA_LOGITS_ROW_RTOL · max
/// |want row|` of `want`; returns the largest error relative to its row's scale.
pub fn assert_rows_close(what: &str, got: &[f32], want: &[f32], row: usize) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0f32;
    for (r, (g, w)) in got.chunks(row).zip(want.chunks(row)).enumerate() {
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        let tol = LORA_LOGITS_ATOL + LORA_LOGITS_ROW_RTOL * scale;
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "{what}: row {r}, logit {i} is {a} but mlx-lm's is {b} (tolerance {tol})"
            );
            worst = worst.max((a - b).abs() / scale.max(1e-6));
        }
    }
    worst
}

/// The float32 values of `a`.
pub fn floats(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

/// `ids` as a `[1, len]` batch.
pub fn batch(ids: &[i32]) -> Array {
    Array::from_slice(ids, &[1, ids.len() as i32]).unwrap()
}
