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

/// The batch of the gradient fixtures (`GRAD_BATCH` / `GRAD_LENGTHS` of `gen_lora.py`):
/// ids `[2, 9]` and the (offset, length) of each row.
pub fn grad_batch() -> (Array, Array) {
    let ids = [
        3, 17, 42, 99, 5, 200, 77, 11, 8, //
        9, 14, 120, 33, 61, 2, 0, 0, 0,
    ];
    (
        Array::from_slice(&ids, &[2, 9]).unwrap(),
        Array::from_slice(&[0, 9, 2, 6], &[2, 2]).unwrap(),
    )
}

/// mlx-lm's loss on [`grad_batch`] and its gradients with respect to the adapter's
/// parameters, for the cases that have them (`<case>.grads.safetensors`).
pub fn mlx_lm_gradients(case: &Case) -> Option<(f32, mlx_rs::nn::ParamMap)> {
    let path = case.adapter.with_extension("grads.safetensors");
    if !path.exists() {
        return None;
    }
    let mut grads: mlx_rs::nn::ParamMap = mlx_rs::io::load_safetensors(&path)
        .unwrap()
        .arrays
        .into_iter()
        .collect();
    let loss = grads.remove("loss").unwrap().item::<f32>().unwrap();
    Some((loss, grads))
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
    // Tests run mlx-lm side by side on a cold MLX CPU cache: see oracle::jit_cache_race.
    let out = oracle::retry_jit_cache_race(|| cmd.output().unwrap());
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

/// Gradients of the training loss against mlx-lm's: the same float32 ops differentiated
/// in the same way; products summed in other orders move each by a few ulps of the
/// tensor's largest gradient (a missing term, a wrong scale or a gradient through the
/// stopped DoRA norm moves them by far more).
pub const GRAD_RTOL: f32 = 1e-4;

/// The training loss of `model` on [`grad_batch`] and its gradients with respect to the
/// adapters (the rest frozen, training mode), through `tuner::value_and_grad`.
pub fn adapter_gradients<M>(model: &mut M) -> (Array, mlx_rs::nn::ParamMap)
where
    M: mlx_lm::tuner::Adaptable + mlx_lm::LanguageModel,
{
    let n = mlx_lm::tuner::freeze_all_but_adapters(model).unwrap();
    assert!(n > 0, "no adapter parameter");
    trainable_gradients(model)
}

/// The training loss of `model` on [`grad_batch`] and its gradients with respect to its
/// trainable parameters (as they are), in training mode, through `tuner::value_and_grad`.
pub fn trainable_gradients<M>(model: &mut M) -> (Array, mlx_rs::nn::ParamMap)
where
    M: mlx_lm::tuner::Adaptable + mlx_lm::LanguageModel,
{
    model.train(true).unwrap();
    let (ids, lengths) = grad_batch();
    let (out, grads) = mlx_lm::tuner::value_and_grad(model, |m| {
        mlx_lm::tuner::default_loss(m, || m.new_cache(), &ids, &lengths)
    })
    .unwrap();
    (out[0].clone(), grads)
}

/// Loss and gradients with gradient checkpointing against those without, relative to
/// each tensor's largest |gradient| (the loss: relative to itself): the same float32 ops
/// on the CPU, the layers only computed again in the backward pass, so they agree to a
/// few ulps (a parameter whose gradient the checkpoint dropped would be off by its whole
/// size).
pub const CHECKPOINT_RTOL: f32 = 1e-5;

/// Whether the adapter of `case` trains with dropout: a checkpointed layer draws its
/// dropout mask again in the backward pass (as mlx-lm's `grad_checkpoint` does), so its
/// gradients are not the forward pass's and such cases are left out of the comparison.
pub fn has_dropout(case: &Case) -> bool {
    let adapter = mlx_lm::tuner::Adapter::load(&case.adapter).unwrap();
    adapter
        .config
        .lora_parameters
        .is_some_and(|p| p.dropout > 0.0)
}

/// The training loss and the gradients of `model`'s trainable parameters
/// ([`trainable_gradients`]: freeze it first) with gradient checkpointing on equal those
/// with it off, within [`CHECKPOINT_RTOL`]; returns the largest relative error of a
/// gradient.
pub fn assert_checkpointing_changes_nothing<M>(what: &str, model: &mut M) -> f32
where
    M: mlx_lm::tuner::Adaptable + mlx_lm::LanguageModel,
{
    let (loss, plain) = trainable_gradients(model);
    model.set_grad_checkpoint(true).unwrap();
    let (loss_c, checkpointed) = trainable_gradients(model);
    model.set_grad_checkpoint(false).unwrap();
    let (a, b) = (loss.item::<f32>().unwrap(), loss_c.item::<f32>().unwrap());
    assert!(
        (a - b).abs() <= CHECKPOINT_RTOL * a.abs(),
        "{what}: loss {b} checkpointed, {a} not"
    );
    let names: Vec<&String> = plain.keys().collect();
    assert_eq!(names, checkpointed.keys().collect::<Vec<_>>(), "{what}");
    let mut worst = 0f32;
    for (name, p) in &plain {
        let (g, p) = (floats(&checkpointed[name]), floats(p));
        let scale = p.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{what}: d/d{name} is zero");
        for (i, (x, y)) in g.iter().zip(&p).enumerate() {
            let err = (x - y).abs() / scale;
            assert!(
                err <= CHECKPOINT_RTOL,
                "{what}: d/d{name}[{i}] is {x} checkpointed, {y} not (largest {scale})"
            );
            worst = worst.max(err);
        }
    }
    worst
}

/// Asserts each gradient is within `GRAD_RTOL` of the largest |value| of mlx-lm's for
/// that tensor; returns the largest relative error.
pub fn assert_gradients_close(
    what: &str,
    got: &mlx_rs::nn::ParamMap,
    want: &mlx_rs::nn::ParamMap,
) -> f32 {
    let names: Vec<&String> = got.keys().collect();
    assert_eq!(
        names,
        want.keys().collect::<Vec<_>>(),
        "{what}: the gradients' names"
    );
    let mut worst = 0f32;
    for (name, w) in want {
        let (g, w) = (floats(&got[name]), floats(w));
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-8);
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            let err = (a - b).abs() / scale;
            assert!(
                err <= GRAD_RTOL,
                "{what}: d/d{name}[{i}] is {a} but mlx-lm's is {b} (largest {scale})"
            );
            worst = worst.max(err);
        }
    }
    worst
}

/// Central differences of the training loss against the model's gradient, both in
/// float64 on the CPU (the model's parameters already float64), along two directions in
/// each of every `stride`-th adapter tensor kept by `keep`: the gradient's own (the
/// derivative there is the gradient's norm) and a fixed pseudo-random unit vector (it is
/// the gradient's dot product with it). Returns the largest error relative to the
/// tensor's gradient norm.
///
/// Directional derivatives of whole tensors, and a step of 1e-2 along a unit vector:
/// MLX 0.32's CPU backend computes `fast::rms_norm`, `fast::rope`, `exp`, `sigmoid` and
/// the softmax of float64 arrays with float32 precision (measured: 1.5e-7 relative for
/// `rms_norm`, `exp` equal to float32's), which leaves ~1e-6 of rounding in the loss;
/// differences of single entries with small gradients drown in it.
///
/// `keep` chooses the tensors (by name): DoRA's gradient of `lora_a` and `lora_b` leaves
/// out the norm of the adapted weight on purpose (mlx-lm's `stop_gradient`), so only its
/// `m` has the loss's true derivative.
pub fn finite_difference_error<M>(model: &mut M, stride: usize, keep: fn(&str) -> bool) -> f64
where
    M: mlx_lm::tuner::Adaptable + mlx_lm::LanguageModel,
{
    use mlx_rs::nn::UpdateMode;
    const H: f64 = 1e-2;
    let (_, grads) = adapter_gradients(model);
    let (ids, lengths) = grad_batch();
    let loss_at = |model: &mut M, name: &str, value: Array| -> f64 {
        let mut one = mlx_rs::nn::ParamMap::new();
        one.insert(name.to_string(), value);
        model.update(&one, UpdateMode::Partial).unwrap();
        model.refresh_adapters().unwrap();
        let out =
            mlx_lm::tuner::default_loss(&*model, || model.new_cache(), &ids, &lengths).unwrap();
        out[0].item::<f64>().unwrap()
    };
    let params = model.parameters().unwrap();
    let kept: Vec<(&String, &Array)> = grads.iter().filter(|(k, _)| keep(k)).collect();
    assert!(!kept.is_empty(), "no tensor to check");
    let mut worst = 0f64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (name, g) in kept.into_iter().step_by(stride.max(1)) {
        assert_eq!(g.dtype(), Dtype::Float64, "{name}");
        let p = params[name].clone();
        let g: Vec<f64> = g.to_vec::<f64>().unwrap();
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(norm > 0.0, "{name}: zero gradient");
        let along: Vec<f64> = g.iter().map(|x| x / norm).collect();
        let random: Vec<f64> = (0..g.len())
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if seed >> 63 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .map(|x: f64| x / (g.len() as f64).sqrt())
            .collect();
        for (what, d) in [
            ("along the gradient", along),
            ("a random direction", random),
        ] {
            let want: f64 = g.iter().zip(&d).map(|(a, b)| a * b).sum();
            let step = Array::from_slice(&d, p.shape())
                .unwrap()
                .multiply_scalar(H)
                .unwrap();
            let up = loss_at(model, name, p.add(&step).unwrap());
            let down = loss_at(model, name, p.subtract(&step).unwrap());
            loss_at(model, name, p.clone());
            let fd = (up - down) / (2.0 * H);
            let err = (fd - want).abs() / norm;
            eprintln!("  {name}, {what}: gradient {want:e}, central difference {fd:e}");
            worst = worst.max(err);
        }
    }
    worst
}

/// Casts every floating-point parameter of `model` to float64.
pub fn to_float64<M: mlx_rs::nn::Module>(model: &mut M) {
    use mlx_rs::nn::{KeyPath, Param, VisitorMut};
    struct Cast;
    impl VisitorMut for Cast {
        fn param(&mut self, _: &str, p: &mut Param) -> mlx_rs::Result<()> {
            if p.dtype().is_float() {
                let v = p.value().astype(Dtype::Float64)?;
                p.set(v);
            }
            Ok(())
        }
    }
    model.visit_mut(&mut KeyPath::new(), &mut Cast).unwrap();
}
