//! Adapters on Qwen 3.5 against mlx-lm 0.32.2 (fixtures from `tests/oracle/gen_lora.py`):
//! LoRA and DoRA adapters made by mlx-lm (on the DeltaNet and attention projections and the
//! MLP, dense and 4-bit bases, Hv = Hk and Hv > Hk) give mlx-lm's logits through every path
//! of the forward pass (whole prompt, chunked and sequential prefill, the fused decode
//! and the compiled layer steps); an adapter for another model is refused naming the first
//! key that does not fit; `qwen3_5 fuse` writes folders that mlx-lm loads with our logits;
//! `qwen3_5 logits --adapter-path`; the training loss's gradients with respect to the
//! adapters through the reference forward pass (sequential and chunked delta rule, the
//! conv, gated attention) against `mx.grad` of mlx-lm's model and against central
//! differences in float64; the same loss and gradients with gradient checkpointing; full
//! fine-tuning (gradients with respect to the weights against `mx.grad`, a trained
//! checkpoint that mlx-lm loads with our logits).

#[path = "../../../../mlx-lm/tests/lm/adapter_cases.rs"]
mod adapter_cases;

use adapter_cases::{
    adapter_gradients, assert_checkpointing_changes_nothing, assert_gradients_close,
    assert_rows_close, batch, cases, finite_difference_error, float32_copy, floats, has_dropout,
    mlx_lm_gradients, mlx_lm_logits, to_float64, Case, TempDir,
};
use mlx_lm::tuner::Adaptable;
use mlx_lm::tuner::{self, Adapter};
use qwen3_5::{Decode, ModelOptions, Prefill};
use std::path::{Path, PathBuf};

fn lora_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora")
}

/// The float32 copy of `case`'s base in `tmp`.
fn base_dir(case: &Case, tmp: &TempDir) -> PathBuf {
    let dir = tmp.0.join(&case.base);
    if !dir.exists() {
        float32_copy(&super::common::model_dir(&case.base), &dir);
    }
    dir
}

fn adapted(case: &Case, tmp: &TempDir, options: ModelOptions) -> qwen3_5::Model {
    let mut model = qwen3_5::load_with(base_dir(case, tmp), options).unwrap();
    let adapter = Adapter::load(&case.adapter).unwrap();
    tuner::apply_adapter(&mut model, &adapter).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    model
}

/// The paths of the forward pass an adapted layer must take part in.
fn option_sets() -> Vec<(&'static str, ModelOptions)> {
    let defaults = ModelOptions::for_device(&mlx_rs::Device::cpu());
    vec![
        ("defaults (chunked prefill, fused decode)", defaults),
        (
            "reference decode, sequential prefill, no CPU GEMM",
            ModelOptions {
                decode: Decode::Reference,
                prefill: Prefill::Sequential,
                cpu_gemm: false,
                ..defaults
            },
        ),
        (
            "compiled layer steps",
            ModelOptions {
                compile_layers: true,
                ..defaults
            },
        ),
    ]
}

#[test]
fn adapters_made_by_mlx_lm_give_its_logits() {
    super::common::cpu(|| {
        let tmp = TempDir::new("qwen3_5-apply");
        for case in cases(&lora_dir()) {
            for (how, options) in option_sets() {
                let what = format!("{} ({how})", case.name);
                let model = adapted(&case, &tmp, options);
                let row = model.config().text.vocab_size as usize;
                let mut cache = model.new_cache();
                let got = floats(&model.forward(&batch(&case.prompt), &mut cache).unwrap());
                let worst = assert_rows_close(&what, &got, &case.logits, row);
                eprintln!("{what}: largest error {worst:e} of a row's scale");

                // Prefill, then one token at a time (the fused decode on these options).
                let mut cache = model.new_cache();
                let prompt = &case.prompt;
                let mut steps = floats(&model.forward(&batch(&prompt[..3]), &mut cache).unwrap());
                for t in 3..prompt.len() {
                    let step = model
                        .forward(&batch(&prompt[t..t + 1]), &mut cache)
                        .unwrap();
                    steps.extend(floats(&step));
                }
                assert_rows_close(&format!("{what}, step-wise"), &steps, &case.logits, row);
            }
            let model = adapted(
                &case,
                &tmp,
                ModelOptions::for_device(&mlx_rs::Device::cpu()),
            );
            let saved = tuner::adapter_weights(&model, tuner::FineTuneType::Lora).unwrap();
            let names: Vec<&String> = saved.keys().collect();
            assert_eq!(
                names,
                case.tensors.iter().collect::<Vec<_>>(),
                "{}",
                case.name
            );
        }
    })
}

#[test]
fn adapters_for_another_model_are_refused_naming_the_key() {
    super::common::cpu(|| {
        let tmp = TempDir::new("qwen3_5-mismatch");
        let all = cases(&lora_dir());
        let case = all.iter().find(|c| c.name == "lora-dense").unwrap();
        let other =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../qwen3/tests/fixtures/lora/lora-dense");
        let adapter = Adapter::load(&other).unwrap();
        let first = adapter.weights.keys().next().unwrap().clone();
        let mut model = qwen3_5::load(base_dir(case, &tmp)).unwrap();
        let err = tuner::apply_adapter(&mut model, &adapter)
            .expect_err("a Qwen3 adapter on Qwen 3.5")
            .to_string();
        assert!(err.contains(&first), "{err} should name {first}");

        // The Hv > Hk model's adapter on the Hv = Hk model: shapes differ.
        let dora = all.iter().find(|c| c.name == "dora-dense").unwrap();
        let mut model = qwen3_5::load(base_dir(case, &tmp)).unwrap();
        let err = tuner::apply_adapter(&mut model, &Adapter::load(&dora.adapter).unwrap())
            .expect_err("an adapter for other shapes")
            .to_string();
        assert!(
            err.contains("shape") && err.contains("language_model.model.layers."),
            "{err}"
        );
    })
}

/// `qwen3_5 fuse` writes a folder that mlx-lm loads: its logits there equal ours, and
/// (dense, or dequantized) the adapted model's.
#[test]
fn fused_checkpoints_load_in_mlx_lm() {
    let tmp = TempDir::new("qwen3_5-fuse");
    for case in cases(&lora_dir()) {
        let quantized = case.base.contains("q4");
        for dequantize in [false, true] {
            if dequantize && !quantized {
                continue;
            }
            let base = base_dir(&case, &tmp);
            let out = tmp.0.join(format!("{}-{dequantize}", case.name));
            let mut args: Vec<&std::ffi::OsStr> = vec![
                "fuse".as_ref(),
                "--device".as_ref(),
                "cpu".as_ref(),
                "--model".as_ref(),
                base.as_os_str(),
                "--adapter-path".as_ref(),
                case.adapter.as_os_str(),
                "--save-path".as_ref(),
                out.as_os_str(),
            ];
            if dequantize {
                args.push("--dequantize".as_ref());
            }
            let run = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3_5"))
                .args(&args)
                .output()
                .unwrap();
            let what = format!("{} fused (dequantize: {dequantize})", case.name);
            assert!(
                run.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let ours = super::common::cpu(|| {
                let model = qwen3_5::load(&out).unwrap();
                let mut cache = model.new_cache();
                floats(&model.forward(&batch(&case.prompt), &mut cache).unwrap())
            });
            let row = ours.len() / case.prompt.len();
            let theirs = mlx_lm_logits(&out, &case.prompt, None);
            assert_rows_close(&format!("{what}: ours vs mlx-lm"), &ours, &theirs, row);
            if !quantized || dequantize {
                assert_rows_close(&format!("{what} vs adapted"), &ours, &case.logits, row);
            }
        }
    }
}

/// `qwen3_5 logits --adapter-path` runs the adapted model.
#[test]
fn binary_logits_take_an_adapter() {
    let tmp = TempDir::new("qwen3_5-cli");
    let all = cases(&lora_dir());
    let case = all.iter().find(|c| c.name == "dora-q4").unwrap();
    let base = base_dir(case, &tmp);
    let npy = tmp.0.join("logits.npy");
    let tokens: Vec<String> = case.prompt.iter().map(i32::to_string).collect();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3_5"))
        .args(["logits", "--device", "cpu", "--model"])
        .arg(&base)
        .arg("--adapter-path")
        .arg(&case.adapter)
        .args(["--tokens", &tokens.join(","), "--out"])
        .arg(&npy)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&npy).unwrap();
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let got: Vec<f32> = bytes[start..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let row = got.len() / case.prompt.len();
    assert_rows_close("qwen3_5 logits --adapter-path", &got, &case.logits, row);
}

/// The reference forward pass (no kernels, no CPU GEMM), with the delta rule of `prefill`:
/// what training differentiates.
fn training_options(prefill: Prefill) -> ModelOptions {
    ModelOptions {
        prefill,
        ..ModelOptions::for_device(&mlx_rs::Device::cpu()).for_training()
    }
}

#[test]
fn adapter_gradients_match_mx_grad() {
    super::common::cpu(|| {
        let tmp = TempDir::new("qwen3_5-grad");
        let mut checked = 0;
        for case in cases(&lora_dir()) {
            let Some((loss, want)) = mlx_lm_gradients(&case) else {
                continue;
            };
            let prefills = [
                ("sequential", Prefill::Sequential),
                ("chunked (3, the last chunk padded)", Prefill::Chunked(3)),
            ];
            for (how, prefill) in prefills {
                let what = format!("{} ({how} delta rule)", case.name);
                let mut model = adapted(&case, &tmp, training_options(prefill));
                let (got_loss, got) = adapter_gradients(&mut model);
                let got_loss = got_loss.item::<f32>().unwrap();
                assert!(
                    (got_loss - loss).abs() <= 1e-5 * loss.abs(),
                    "{what}: loss {got_loss} vs {loss}"
                );
                let worst = assert_gradients_close(&what, &got, &want);
                eprintln!("{what}: {} gradients, largest error {worst:e}", got.len());
            }
            checked += 1;
        }
        assert!(checked >= 3);
    })
}

/// With gradient checkpointing (`--grad-checkpoint`: each layer, DeltaNet or attention,
/// recomputed in the backward pass from its own adapters) the loss and the adapters'
/// gradients are those without it, for every case and both delta rules.
#[test]
fn gradient_checkpointing_gives_the_same_loss_and_gradients() {
    super::common::cpu(|| {
        let tmp = TempDir::new("qwen3_5-ckpt");
        let all: Vec<Case> = cases(&lora_dir())
            .into_iter()
            .filter(|c| !has_dropout(c))
            .collect();
        assert!(all.len() >= 3);
        for case in &all {
            for prefill in [Prefill::Sequential, Prefill::Chunked(3)] {
                let what = format!("{} ({prefill:?} delta rule)", case.name);
                let mut model = adapted(case, &tmp, training_options(prefill));
                tuner::freeze_all_but_adapters(&mut model).unwrap();
                let worst = assert_checkpointing_changes_nothing(&what, &mut model);
                eprintln!("{what}: largest gradient change {worst:e}");
            }
        }
    })
}

/// Central differences of the loss in float64 on the CPU (see `finite_difference_error`;
/// LoRA's gradients, DoRA's magnitudes).
#[test]
fn adapter_gradients_match_finite_differences_in_float64() {
    super::common::cpu(|| {
        let tmp = TempDir::new("qwen3_5-fd");
        let all = cases(&lora_dir());
        let dora_m: fn(&str) -> bool = |k| k.ends_with(".m");
        let case = all.iter().find(|c| c.name == "lora-dense").unwrap();
        let checks = [
            ("lora", Prefill::Sequential, (|_| true) as fn(&str) -> bool),
            ("lora", Prefill::Chunked(3), |_| true),
            ("dora", Prefill::Sequential, dora_m),
        ];
        for (name, prefill, keep) in checks {
            let mut model = if name == "lora" {
                adapted(case, &tmp, training_options(prefill))
            } else {
                // DoRA on the same base (MLX's CPU conv has no float64 for the Hv > Hk
                // fixture's shapes): layers 2 and 3 wrapped here, `lora_b` and `m` moved
                // off their starting values.
                let mut model =
                    qwen3_5::load_with(base_dir(case, &tmp), training_options(prefill)).unwrap();
                let params = tuner::LoraParameters {
                    rank: 4,
                    scale: 2.0,
                    ..Default::default()
                };
                tuner::linear_to_lora_layers(&mut model, 2, &params, true).unwrap();
                perturb_adapters(&mut model);
                model
            };
            to_float64(&mut model);
            model.adapters_changed().unwrap();
            let err = finite_difference_error(&mut model, 3, keep);
            eprintln!("{name} ({prefill:?}): largest finite-difference error {err:e}");
            assert!(err < FD_TOL, "{name} ({prefill:?}): {err}");
        }
    })
}

/// Sets every `lora_b` to small random values and scales every `m` by random factors
/// near 1, so that no gradient vanishes by symmetry.
fn perturb_adapters(model: &mut qwen3_5::Model) {
    use mlx_rs::nn::{Module, ParamMap, UpdateMode};
    use mlx_rs::random;
    let mut new = ParamMap::new();
    for (i, (name, p)) in model.parameters().unwrap().into_iter().enumerate() {
        let key = random::key(1000 + i as u64).unwrap();
        let noise = random::normal(p.shape(), p.dtype(), 0.0, 1.0, Some(&key)).unwrap();
        if name.ends_with("lora_b") {
            new.insert(name, noise.multiply_scalar(0.05).unwrap());
        } else if name.ends_with(".m") {
            let factor = noise.multiply_scalar(0.1).unwrap().add_scalar(1.0).unwrap();
            new.insert(name, p.multiply(&factor).unwrap());
        }
    }
    model.update(&new, UpdateMode::Partial).unwrap();
    model.adapters_changed().unwrap();
}

/// Directional central differences against the gradient, relative to the tensor's
/// gradient norm (bounded by the step and MLX's float32-precision float64 ops, see
/// `finite_difference_error`); a wrong or missing term is off by its own size.
const FD_TOL: f64 = 1e-2;

/// `qwen3_5 lora` trains a DoRA adapter through the prepared forward pass on chat data
/// (prompt masked): the validation loss falls, and mlx-lm loads the adapter with our
/// logits.
#[test]
fn lora_trains_an_adapter_that_mlx_lm_loads() {
    train_and_check("mlx-bf16-tied", "dora", &[]);
}

/// QLoRA: LoRA on the 4-bit base, likewise.
#[test]
fn qlora_trains_an_adapter_that_mlx_lm_loads() {
    train_and_check("mlx-q4-tied", "lora", &[]);
}

fn train_and_check(variant: &str, kind: &str, extra: &[&str]) {
    let tmp = TempDir::new(&format!("qwen3_5-train-{kind}"));
    let base = tmp.0.join("base");
    float32_copy(&super::common::model_dir(variant), &base);
    let tokenizer = super::common::fixtures().join("../char-tokenizer");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tokenizer.join(f), base.join(f)).unwrap();
    }
    let data = tmp.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let line = |i: usize| {
        let (q, a) = [
            ("hi", "hello!"),
            ("bye", "see you."),
            ("sky?", "blue."),
            ("sea?", "wet."),
        ][i % 4];
        serde_json::json!({"messages": [
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ]})
        .to_string()
            + "\n"
    };
    std::fs::write(
        data.join("train.jsonl"),
        (0..8).map(line).collect::<String>(),
    )
    .unwrap();
    std::fs::write(
        data.join("valid.jsonl"),
        (8..12).map(line).collect::<String>(),
    )
    .unwrap();
    let out = tmp.0.join("adapter");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3_5"))
        .args(["lora", "--device", "cpu", "--train", "--model"])
        .arg(&base)
        .arg("--data")
        .arg(&data)
        .arg("--adapter-path")
        .arg(&out)
        .args([
            "--fine-tune-type",
            kind,
            "--mask-prompt",
            "--num-layers",
            "2",
        ])
        .args([
            "--iters",
            "16",
            "--batch-size",
            "2",
            "--rank",
            "4",
            "--scale",
            "2",
        ])
        .args([
            "--learning-rate",
            "1e-2",
            "--steps-per-report",
            "8",
            "--steps-per-eval",
            "16",
        ])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    let vals: Vec<f32> = stdout
        .lines()
        .filter_map(|l| l.split("Val loss ").nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(vals.len(), 2, "{stdout}");
    assert!(
        vals[1] < 0.8 * vals[0],
        "the validation loss falls: {vals:?}"
    );

    let prompt = [10, 20, 30, 40, 50, 60];
    // Our products in MLX's BLAS as mlx-lm's (the CPU GEMM off): what is checked here is
    // the adapter, to float32 rounding (ours against mlx-lm: 1.8e-6 of a row's scale for
    // DoRA, 3.8e-7 for LoRA). The GEMM's products round otherwise, which this trained
    // DoRA model amplifies: with the GEMM on, 1.2e-4 of a row's scale against our own
    // BLAS run at 6 prompt tokens (3e-7 at 2 or 3, 3e-6 without the adapter; LoRA 3e-7).
    let ours = super::common::cpu(|| {
        let options = qwen3_5::ModelOptions {
            cpu_gemm: false,
            ..qwen3_5::ModelOptions::for_device(&mlx_rs::Device::cpu())
        };
        let mut model = qwen3_5::load_with(&base, options).unwrap();
        tuner::apply_adapter(&mut model, &Adapter::load(&out).unwrap()).unwrap();
        let mut cache = model.new_cache();
        floats(&model.forward(&batch(&prompt), &mut cache).unwrap())
    });
    let theirs = mlx_lm_logits(&base, &prompt, Some(&out));
    let worst = assert_rows_close(
        &format!("a {kind} adapter trained on {variant}, in mlx-lm"),
        &ours,
        &theirs,
        ours.len() / prompt.len(),
    );
    eprintln!("a {kind} adapter, ours vs mlx-lm: largest error {worst:e} of a row's scale");
}

/// Full fine-tuning (the last two layers' own weights trainable, the prepared forms built
/// again from the traced parameters): the training loss and its gradients with respect
/// to every trainable weight equal those of `mx.grad` through mlx-lm's model on the same
/// float32 weights (the dense bases, tied and untied head), for both delta rules, with
/// and without gradient checkpointing.
#[test]
fn full_fine_tuning_gradients_match_mx_grad() {
    const SCRIPT: &str = r#"
import sys
import mlx.core as mx
import mlx.nn as nn
from pathlib import Path
from mlx.utils import tree_flatten
from mlx_lm.utils import load_model
from mlx_lm.tuner.trainer import default_loss
mx.set_default_device(mx.cpu)
model, _ = load_model(Path(sys.argv[1]))
model.set_dtype(mx.float32)
model.freeze()
for layer in model.layers[-2:]:
    layer.unfreeze()
model.train()
batch = mx.array([[3, 17, 42, 99, 5, 200, 77, 11, 8], [9, 14, 120, 33, 61, 2, 0, 0, 0]])
lengths = mx.array([[0, 9], [2, 6]])
(loss, _), grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
grads = dict(tree_flatten(grads))
grads["loss"] = loss
mx.save_safetensors(sys.argv[2], grads)
"#;
    let tmp = TempDir::new("qwen3_5-full-grad");
    let all = cases(&lora_dir());
    let mut checked = 0;
    for name in ["lora-dense", "dora-dense"] {
        let case = all.iter().find(|c| c.name == name).unwrap();
        let dir = base_dir(case, &tmp);
        let file = tmp.0.join(format!("{name}.full-grads.safetensors"));
        let out = oracle::retry_jit_cache_race(|| {
            oracle::python()
                .unwrap_or_else(|e| panic!("{e}"))
                .args(["-c", SCRIPT])
                .arg(&dir)
                .arg(&file)
                .output()
                .unwrap()
        });
        assert!(
            out.status.success(),
            "mlx-lm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut want: mlx_rs::nn::ParamMap = mlx_rs::io::load_safetensors(&file)
            .unwrap()
            .arrays
            .into_iter()
            .collect();
        let loss = want.remove("loss").unwrap().item::<f32>().unwrap();
        super::common::cpu(|| {
            for prefill in [Prefill::Sequential, Prefill::Chunked(3)] {
                for checkpoint in [false, true] {
                    let what = format!("{name} ({prefill:?}, checkpointed: {checkpoint})");
                    let mut model = qwen3_5::load_with(&dir, training_options(prefill)).unwrap();
                    tuner::unfreeze_last_layers(&mut model, 2).unwrap();
                    model.set_grad_checkpoint(checkpoint).unwrap();
                    mlx_rs::nn::Module::train(&mut model, true).unwrap();
                    let (ids, lengths) = adapter_cases::grad_batch();
                    let (got_loss, got) = tuner::value_and_grad(&mut model, |m| {
                        tuner::default_loss(m, || m.new_cache(), &ids, &lengths)
                    })
                    .unwrap();
                    let got_loss = got_loss[0].item::<f32>().unwrap();
                    assert!(
                        (got_loss - loss).abs() <= 1e-5 * loss.abs(),
                        "{what}: loss {got_loss} vs {loss}"
                    );
                    let worst = assert_gradients_close(&what, &got, &want);
                    eprintln!("{what}: {} gradients, largest error {worst:e}", got.len());
                }
            }
        });
        checked += 1;
    }
    assert_eq!(checked, 2);
}

/// `qwen3_5 lora --fine-tune-type full --grad-checkpoint` trains the last layers'
/// weights: the validation loss falls, and mlx-lm loads the saved weights with our
/// logits.
#[test]
fn full_fine_tuning_trains_weights_that_mlx_lm_loads() {
    train_and_check("mlx-bf16-tied", "full", &["--grad-checkpoint"]);
}
