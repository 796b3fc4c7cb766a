//! Adapters on Qwen3 against mlx-lm 0.32.2 (fixtures from `tests/oracle/gen_lora.py`):
//! LoRA and DoRA adapters made by mlx-lm on a dense and a 4-bit base give mlx-lm's
//! logits (whole prompt and step by step); an adapter for another model is refused with
//! the first key that does not fit; adapters saved here load back; `qwen3 fuse` writes a
//! folder that mlx-lm loads with the same logits as ours; `qwen3 logits --adapter-path`;
//! the same loss and gradients with gradient checkpointing.

#[path = "../../../../mlx-lm/tests/lm/adapter_cases.rs"]
mod adapter_cases;

use adapter_cases::{
    adapter_gradients, assert_checkpointing_changes_nothing, assert_gradients_close,
    assert_rows_close, batch, cases, finite_difference_error, float32_copy, floats, has_dropout,
    mlx_lm_gradients, mlx_lm_logits, to_float64, Case, TempDir,
};
use mlx_lm::tuner::{self, Adapter};
use mlx_lm::LanguageModel;
use std::path::{Path, PathBuf};

fn lora_dir() -> PathBuf {
    super::fixtures().join("lora")
}

/// The float32 base of `case` (a copy of its fixture folder) in `tmp`, and the model.
fn base(case: &Case, tmp: &TempDir) -> (PathBuf, qwen3::Model) {
    let dir = tmp.0.join(&case.base);
    if !dir.exists() {
        float32_copy(&super::fixtures().join(&case.base), &dir);
    }
    let model = qwen3::load(&dir).unwrap();
    (dir, model)
}

fn adapted(case: &Case, tmp: &TempDir) -> qwen3::Model {
    let (_, mut model) = base(case, tmp);
    let adapter = Adapter::load(&case.adapter).unwrap();
    tuner::apply_adapter(&mut model, &adapter).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    model
}

fn logits(model: &qwen3::Model, prompt: &[i32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    floats(&model.forward(&batch(prompt), &mut cache).unwrap())
}

#[test]
fn adapters_made_by_mlx_lm_give_its_logits() {
    super::on_cpu(|| {
        let tmp = TempDir::new("qwen3-apply");
        for case in cases(&lora_dir()) {
            let model = adapted(&case, &tmp);
            let row = model.vocab_size() as usize;
            let got = logits(&model, &case.prompt);
            let worst = assert_rows_close(&case.name, &got, &case.logits, row);
            eprintln!("{}: largest error {worst:e} of a row's scale", case.name);

            // Step by step through the KV cache: the same.
            let mut cache = model.new_cache();
            let mut steps = floats(
                &model
                    .forward(&batch(&case.prompt[..3]), &mut cache)
                    .unwrap(),
            );
            for t in 3..case.prompt.len() {
                let step = model
                    .forward(&batch(&case.prompt[t..t + 1]), &mut cache)
                    .unwrap();
                steps.extend(floats(&step));
            }
            assert_rows_close(
                &format!("{}, step-wise", case.name),
                &steps,
                &case.logits,
                row,
            );

            // The adapter's tensors are the model's adapter parameters, by mlx-lm's names.
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

/// An adapter saved here is mlx-lm's format: read back (here and by mlx-lm) it gives the
/// same logits.
#[test]
fn saved_adapters_load_here_and_in_mlx_lm() {
    super::on_cpu(|| {
        let tmp = TempDir::new("qwen3-save");
        let all = cases(&lora_dir());
        let case = all.iter().find(|c| c.name == "dora-q4").unwrap();
        let model = adapted(case, &tmp);
        let config = Adapter::load(&case.adapter).unwrap().config;
        let saved = tmp.0.join("saved");
        Adapter::from_model(&model, config)
            .unwrap()
            .save(&saved)
            .unwrap();
        let (base_dir, mut again) = base(case, &tmp);
        tuner::apply_adapter(&mut again, &Adapter::load(&saved).unwrap()).unwrap();
        let row = again.vocab_size() as usize;
        assert_rows_close("reloaded", &logits(&again, &case.prompt), &case.logits, row);
        let theirs = mlx_lm_logits(&base_dir, &case.prompt, Some(&saved));
        assert_rows_close("mlx-lm on the saved adapter", &theirs, &case.logits, row);
    })
}

fn apply_err(model: &mut qwen3::Model, adapter: &Adapter) -> String {
    match tuner::apply_adapter(model, adapter) {
        Ok(()) => panic!("the adapter was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn adapters_that_do_not_fit_are_refused_naming_the_key() {
    super::on_cpu(|| {
        let tmp = TempDir::new("qwen3-mismatch");
        let all = cases(&lora_dir());
        let case = all.iter().find(|c| c.name == "lora-dense").unwrap();

        // An adapter made for Qwen 3.5: its first key (sorted) is named.
        let other =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../qwen3_5/tests/fixtures/lora/lora-dense");
        let adapter = Adapter::load(&other).unwrap();
        let first = adapter.weights.keys().next().unwrap().clone();
        let (_, mut model) = base(case, &tmp);
        let err = apply_err(&mut model, &adapter);
        assert!(err.contains(&first), "{err} should name {first}");
        assert!(err.contains("not an adapter parameter"), "{err}");

        // A tensor of another shape (a rank that does not match the configuration).
        let mut adapter = Adapter::load(&case.adapter).unwrap();
        let key = "model.layers.1.mlp.up_proj.lora_b".to_string();
        let b = adapter.weights[&key].clone();
        let wider = mlx_rs::ops::concatenate_axis(&[b.clone(), b], 0).unwrap();
        adapter.weights.insert(key.clone(), wider);
        let (_, mut model) = base(case, &tmp);
        let err = apply_err(&mut model, &adapter);
        assert!(err.contains(&key) && err.contains("shape"), "{err}");

        // A base tensor smuggled into a LoRA adapter.
        let mut adapter = Adapter::load(&case.adapter).unwrap();
        let key = "model.norm.weight".to_string();
        adapter.weights.insert(
            key.clone(),
            mlx_rs::ops::ones(&[64], mlx_rs::Dtype::Float32).unwrap(),
        );
        let (_, mut model) = base(case, &tmp);
        assert!(apply_err(&mut model, &adapter).contains(&key));

        // A missing folder names it.
        let err = Adapter::load(tmp.0.join("nowhere"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nowhere"), "{err}");
    })
}

/// `qwen3 fuse` writes a folder mlx-lm loads: its logits there equal ours, and (dense, or
/// dequantized) the adapted model's.
#[test]
fn fused_checkpoints_load_in_mlx_lm() {
    let tmp = TempDir::new("qwen3-fuse");
    for case in cases(&lora_dir()) {
        let quantized = case.base.starts_with("q4");
        for dequantize in [false, true] {
            if dequantize && !quantized {
                continue;
            }
            let base_dir = tmp.0.join(&case.base);
            if !base_dir.exists() {
                float32_copy(&super::fixtures().join(&case.base), &base_dir);
                std::fs::write(base_dir.join("tokenizer_config.json"), "{}").unwrap();
            }
            let out = tmp.0.join(format!("{}-{dequantize}", case.name));
            let mut args: Vec<&std::ffi::OsStr> = vec![
                "fuse".as_ref(),
                "--device".as_ref(),
                "cpu".as_ref(),
                "--model".as_ref(),
                base_dir.as_os_str(),
                "--adapter-path".as_ref(),
                case.adapter.as_os_str(),
                "--save-path".as_ref(),
                out.as_os_str(),
            ];
            if dequantize {
                args.push("--dequantize".as_ref());
            }
            super::qwen3_bin(&args);
            let what = format!("{} fused (dequantize: {dequantize})", case.name);
            assert!(
                out.join("tokenizer_config.json").is_file(),
                "{what}: tokenizer files"
            );
            let config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                    .unwrap();
            assert_eq!(
                config.get("quantization").is_some(),
                quantized && !dequantize,
                "{what}"
            );

            let ours = super::on_cpu(|| {
                let model = qwen3::load(&out).unwrap();
                logits(&model, &case.prompt)
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

/// `qwen3 logits --adapter-path` runs the adapted model.
#[test]
fn binary_logits_take_an_adapter() {
    let tmp = TempDir::new("qwen3-cli");
    let all = cases(&lora_dir());
    let case = all.iter().find(|c| c.name == "lora-q4").unwrap();
    let base_dir = tmp.0.join(&case.base);
    float32_copy(&super::fixtures().join(&case.base), &base_dir);
    let npy = tmp.0.join("logits.npy");
    let tokens: Vec<String> = case.prompt.iter().map(i32::to_string).collect();
    let tokens = tokens.join(",");
    super::qwen3_bin(&[
        "logits".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--model".as_ref(),
        base_dir.as_os_str(),
        "--adapter-path".as_ref(),
        case.adapter.as_os_str(),
        "--tokens".as_ref(),
        tokens.as_ref(),
        "--out".as_ref(),
        npy.as_os_str(),
    ]);
    let bytes = std::fs::read(&npy).unwrap();
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let got: Vec<f32> = bytes[start..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let row = got.len() / case.prompt.len();
    assert_rows_close("qwen3 logits --adapter-path", &got, &case.logits, row);

    // A folder that is not an adapter: one error line naming the file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3"))
        .args(["logits", "--device", "cpu", "--model"])
        .arg(&base_dir)
        .arg("--adapter-path")
        .arg(&tmp.0)
        .args(["--tokens", "1,2", "--out"])
        .arg(&npy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("adapter_config.json"), "{stderr}");
}

/// The training loss and its gradients with respect to the adapters equal mlx-lm's
/// (`nn.value_and_grad` on its model with the same weights and adapter).
#[test]
fn adapter_gradients_match_mx_grad() {
    super::on_cpu(|| {
        let tmp = TempDir::new("qwen3-grad");
        let mut checked = 0;
        for case in cases(&lora_dir()) {
            let Some((loss, want)) = mlx_lm_gradients(&case) else {
                continue;
            };
            let mut model = adapted(&case, &tmp);
            let (got_loss, got) = adapter_gradients(&mut model);
            let got_loss = got_loss.item::<f32>().unwrap();
            assert!(
                (got_loss - loss).abs() <= 1e-5 * loss.abs(),
                "{}: loss {got_loss} vs {loss}",
                case.name
            );
            let worst = assert_gradients_close(&case.name, &got, &want);
            eprintln!(
                "{}: {} gradients, largest error {worst:e}",
                case.name,
                got.len()
            );
            checked += 1;
        }
        assert!(checked >= 2);
    })
}

/// With gradient checkpointing (`--grad-checkpoint`: each layer recomputed in the
/// backward pass) the loss and the adapters' gradients are those without it, for LoRA
/// and DoRA on a dense and a 4-bit base.
#[test]
fn gradient_checkpointing_gives_the_same_loss_and_gradients() {
    super::on_cpu(|| {
        let tmp = TempDir::new("qwen3-ckpt");
        let all: Vec<Case> = cases(&lora_dir())
            .into_iter()
            .filter(|c| !has_dropout(c))
            .collect();
        assert!(all.len() >= 2);
        for case in &all {
            let mut model = adapted(case, &tmp);
            tuner::freeze_all_but_adapters(&mut model).unwrap();
            let worst = assert_checkpointing_changes_nothing(&case.name, &mut model);
            eprintln!("{}: largest gradient change {worst:e}", case.name);
        }
    })
}

/// Full fine-tuning (the last layer's weights trainable) with gradient checkpointing: the
/// same loss and gradients as without it.
#[test]
fn gradient_checkpointing_in_full_fine_tuning_gives_the_same_gradients() {
    super::on_cpu(|| {
        let tmp = TempDir::new("qwen3-ckpt-full");
        let all = cases(&lora_dir());
        let case = all.iter().find(|c| c.name == "lora-dense").unwrap();
        let (_, mut model) = base(case, &tmp);
        let n = tuner::unfreeze_last_layers(&mut model, 1).unwrap();
        assert!(n > 0);
        let worst = assert_checkpointing_changes_nothing("full", &mut model);
        eprintln!("full: {n} gradients, largest change {worst:e}");
    })
}

/// The gradients agree with central differences of the loss, all in float64 on the CPU
/// (LoRA's; DoRA's magnitudes `m`, whose gradient is the loss's true derivative).
#[test]
fn adapter_gradients_match_finite_differences_in_float64() {
    super::on_cpu(|| {
        let tmp = TempDir::new("qwen3-fd");
        let dora_m: fn(&str) -> bool = |k| k.ends_with(".m");
        for (name, keep) in [
            ("lora-dense", (|_| true) as fn(&str) -> bool),
            ("dora-dense", dora_m),
        ] {
            let all = cases(&lora_dir());
            let case = all.iter().find(|c| c.name == name).unwrap();
            let mut model = adapted(case, &tmp);
            to_float64(&mut model);
            let err = finite_difference_error(&mut model, 3, keep);
            eprintln!("{name}: largest finite-difference error {err:e}");
            assert!(err < FD_TOL, "{name}: {err}");
        }
    })
}

/// Directional central differences against the gradient, relative to the tensor's
/// gradient norm (bounded by the step and MLX's float32-precision float64 ops, see
/// `finite_difference_error`); a wrong or missing gradient term is off by its own size.
const FD_TOL: f64 = 1e-2;

// ---- training: `qwen3 lora` ------------------------------------------------------------

/// A float32 base with the tiny character tokenizer (ids below the fixture's vocabulary)
/// and a data folder of short sentences that a small adapter can learn.
fn training_setup(tmp: &TempDir) -> (PathBuf, PathBuf) {
    training_setup_on(tmp, "bf16-tied")
}

/// [`training_setup`] on the fixture `variant`.
fn training_setup_on(tmp: &TempDir, variant: &str) -> (PathBuf, PathBuf) {
    let base = tmp.0.join("base");
    float32_copy(&super::fixtures().join(variant), &base);
    let tokenizer =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../qwen3_5/tests/fixtures/char-tokenizer");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tokenizer.join(f), base.join(f)).unwrap();
    }
    let data = tmp.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let line = |i: usize| {
        let animal = ["cat", "dog", "owl", "fox"][i % 4];
        serde_json::json!({ "text": format!("the {animal} sat on the mat by the door.") })
            .to_string()
    };
    let lines =
        |range: std::ops::Range<usize>| -> String { range.map(|i| line(i) + "\n").collect() };
    std::fs::write(data.join("train.jsonl"), lines(0..8)).unwrap();
    std::fs::write(data.join("valid.jsonl"), lines(8..12)).unwrap();
    std::fs::write(data.join("test.jsonl"), lines(12..16)).unwrap();
    (base, data)
}

fn qwen3_lora(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_qwen3"))
        .arg("lora")
        .args(["--device", "cpu"])
        .args(args)
        .output()
        .unwrap()
}

/// The `Val loss` values printed, in order.
fn val_losses(stdout: &str) -> Vec<f32> {
    stdout
        .lines()
        .filter_map(|l| l.split("Val loss ").nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// `qwen3 lora` trains an adapter on text data: the validation loss falls, reports and
/// checkpoints are written as mlx-lm writes them, and mlx-lm loads the adapter with the
/// same logits as ours.
#[test]
fn lora_trains_an_adapter_that_mlx_lm_loads() {
    let tmp = TempDir::new("qwen3-train");
    let (base, data) = training_setup(&tmp);
    let out = tmp.0.join("adapter");
    let run = qwen3_lora(&[
        "--model".as_ref(),
        base.as_os_str(),
        "--train".as_ref(),
        "--test".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--adapter-path".as_ref(),
        out.as_os_str(),
        "--iters".as_ref(),
        "24".as_ref(),
        "--batch-size".as_ref(),
        "2".as_ref(),
        "--num-layers".as_ref(),
        "-1".as_ref(),
        "--rank".as_ref(),
        "4".as_ref(),
        "--scale".as_ref(),
        "2".as_ref(),
        "--learning-rate".as_ref(),
        "1e-2".as_ref(),
        "--steps-per-report".as_ref(),
        "8".as_ref(),
        "--steps-per-eval".as_ref(),
        "12".as_ref(),
        "--save-every".as_ref(),
        "12".as_ref(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}\n{stdout}");
    let vals = val_losses(&stdout);
    assert_eq!(vals.len(), 3, "validation at steps 0, 12 and 24: {stdout}");
    assert!(
        vals[2] < 0.8 * vals[0],
        "the validation loss falls: {vals:?}\n{stdout}"
    );
    assert!(stdout.contains("Iter 24: Train loss"), "{stdout}");
    assert!(
        stdout.contains("Tokens/sec") && stdout.contains("Peak mem"),
        "{stdout}"
    );
    assert!(stdout.contains("Test loss"), "{stdout}");
    for f in [
        "adapters.safetensors",
        "adapter_config.json",
        "0000012_adapters.safetensors",
        "0000024_adapters.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["fine_tune_type"], "lora");
    assert_eq!(config["num_layers"], -1);
    assert_eq!(config["lora_parameters"]["rank"], 4);

    // mlx-lm loads what we trained and computes the same logits.
    let prompt = [10, 20, 30, 40, 50, 60];
    let ours = super::on_cpu(|| {
        let mut model = qwen3::load(&base).unwrap();
        tuner::apply_adapter(&mut model, &Adapter::load(&out).unwrap()).unwrap();
        logits(&model, &prompt)
    });
    let theirs = mlx_lm_logits(&base, &prompt, Some(&out));
    let row = ours.len() / prompt.len();
    assert_rows_close("a trained adapter in mlx-lm", &ours, &theirs, row);
}

/// `qwen3 lora -c FILE` reads an mlx_lm.lora YAML config (its keys, `lora_parameters`),
/// a flag on the command line wins over the file, and a key the command does not have is
/// an error that names it.
#[test]
fn lora_reads_an_mlx_lm_config_file() {
    let tmp = TempDir::new("qwen3-config");
    let (base, data) = training_setup(&tmp);
    let out = tmp.0.join("adapter");
    let config = tmp.0.join("lora_config.yaml");
    let yaml = format!(
        "# as mlx_lm.lora's examples/lora_config.yaml\nmodel: {}\ntrain: true\ndata: {}\n\
         fine_tune_type: lora\nnum_layers: -1\nbatch_size: 2\niters: 50\n\
         learning_rate: 1.0e-2\nsteps_per_report: 2\nsteps_per_eval: 100\n\
         adapter_path: {}\nsave_every: 100\nmax_seq_length: 2048\nseed: 0\n\
         resume_adapter_file: null\nlora_parameters:\n  rank: 4\n  scale: 2.0\n  dropout: 0.0\n",
        base.display(),
        data.display(),
        out.display()
    );
    std::fs::write(&config, yaml).unwrap();
    let run = qwen3_lora(&[
        "-c".as_ref(),
        config.as_os_str(),
        "--iters".as_ref(),
        "2".as_ref(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}\n{stdout}");
    assert!(stdout.contains("Iter 2: Train loss"), "{stdout}");
    assert!(
        !stdout.contains("Iter 4:"),
        "--iters 2 wins over the file's 50: {stdout}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(written["lora_parameters"]["rank"], 4);
    assert_eq!(written["lora_parameters"]["scale"], 2.0);
    assert_eq!(written["num_layers"], -1);

    std::fs::write(
        &config,
        format!("model: {}\nwandb: my-project\n", base.display()),
    )
    .unwrap();
    let run = qwen3_lora(&["-c".as_ref(), config.as_os_str()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("key 'wandb'"), "{stderr}");
}

/// Bad data: a malformed line (its number in the error), an empty training set, a line
/// without the format's keys; sequences longer than --max-seq-length are truncated with a
/// warning.
#[test]
fn lora_reports_bad_data_with_the_line() {
    let tmp = TempDir::new("qwen3-train-bad");
    let (base, data) = training_setup(&tmp);
    let out = tmp.0.join("out");
    let run_on = |data: &Path, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_qwen3"))
            .args(["lora", "--device", "cpu", "--train", "--model"])
            .arg(&base)
            .arg("--data")
            .arg(data)
            .arg("--adapter-path")
            .arg(&out)
            .args([
                "--iters",
                "1",
                "--batch-size",
                "2",
                "--rank",
                "2",
                "--num-layers",
                "-1",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let err = |run: &std::process::Output| String::from_utf8_lossy(&run.stderr).to_string();

    let bad = tmp.0.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let good = std::fs::read_to_string(data.join("train.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(2, "{\"text\": \"unterminated");
    std::fs::write(bad.join("train.jsonl"), lines.join("\n")).unwrap();
    let run = run_on(&bad, &[]);
    assert!(!run.status.success());
    assert!(err(&run).contains("train.jsonl:3"), "{}", err(&run));

    std::fs::write(bad.join("train.jsonl"), "\n").unwrap();
    let run = run_on(&bad, &[]);
    assert!(!run.status.success());
    assert!(err(&run).contains("empty"), "{}", err(&run));

    std::fs::write(
        bad.join("train.jsonl"),
        "{\"text\": \"a\"}\n{\"prompt\": \"b\"}\n",
    )
    .unwrap();
    let run = run_on(&bad, &[]);
    assert!(
        err(&run).contains("train.jsonl:2") && err(&run).contains("`text`"),
        "{}",
        err(&run)
    );

    let run = run_on(&data, &["--max-seq-length", "16"]);
    assert!(run.status.success(), "{}", err(&run));
    assert!(err(&run).contains("truncated to 16"), "{}", err(&run));
}

/// A loss that turns NaN stops training with a message naming the step, and the last
/// checkpoint stays.
#[test]
fn lora_stops_on_a_nan_loss_and_keeps_the_last_checkpoint() {
    let tmp = TempDir::new("qwen3-train-nan");
    let (base, data) = training_setup(&tmp);
    let out = tmp.0.join("adapter");
    let run = qwen3_lora(&[
        "--model".as_ref(),
        base.as_os_str(),
        "--train".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--adapter-path".as_ref(),
        out.as_os_str(),
        "--iters".as_ref(),
        "6".as_ref(),
        "--batch-size".as_ref(),
        "2".as_ref(),
        "--optimizer".as_ref(),
        "sgd".as_ref(),
        "--num-layers".as_ref(),
        "2".as_ref(),
        "--learning-rate".as_ref(),
        "1e30".as_ref(),
        "--save-every".as_ref(),
        "1".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("the training loss is") && stderr.contains("at step"),
        "{stderr}"
    );
    assert!(stderr.contains("is kept in"), "{stderr}");
    assert!(out.join("0000001_adapters.safetensors").is_file());
    // The kept adapter is finite.
    let kept = mlx_rs::io::load_safetensors(out.join("adapters.safetensors")).unwrap();
    for (k, v) in kept.arrays {
        let v = floats(&v);
        assert!(v.iter().all(|x| x.is_finite()), "{k}");
    }
}

/// `--test` alone evaluates the adapter at `--adapter-path`, and `--resume-adapter-file`
/// starts from a checkpoint: the resumed run's first validation (before any update) and
/// the test of the saved adapter give the loss the first run's test gave after training
/// (the validation and test sets hold the same lines here).
#[test]
fn lora_tests_and_resumes_from_a_checkpoint() {
    let tmp = TempDir::new("qwen3-train-resume");
    let (base, data) = training_setup(&tmp);
    assert_eq!(
        std::fs::read_to_string(data.join("valid.jsonl")).unwrap(),
        std::fs::read_to_string(data.join("test.jsonl")).unwrap()
    );
    let out = tmp.0.join("adapter");
    let run = |extra: &[&str]| {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3"))
            .args(["lora", "--device", "cpu", "--model"])
            .arg(&base)
            .arg("--data")
            .arg(&data)
            .arg("--adapter-path")
            .arg(&out)
            .args(["--batch-size", "2", "--num-layers", "-1", "--rank", "4"])
            .args(["--learning-rate", "1e-2", "--steps-per-eval", "8"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout).to_string();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        stdout
    };
    let test_loss = |stdout: &str| -> String {
        let line = stdout.lines().find(|l| l.starts_with("Test loss")).unwrap();
        line.split(',')
            .next()
            .unwrap()
            .trim_start_matches("Test loss ")
            .to_string()
    };
    let trained = run(&["--train", "--test", "--iters", "8"]);
    let after = test_loss(&trained);
    assert_eq!(
        test_loss(&run(&["--test"])),
        after,
        "--test on the saved adapter"
    );

    let checkpoint = tmp.0.join("checkpoint.safetensors");
    std::fs::copy(out.join("adapters.safetensors"), &checkpoint).unwrap();
    let resumed = run(&[
        "--train",
        "--iters",
        "1",
        "--resume-adapter-file",
        checkpoint.to_str().unwrap(),
    ]);
    let first_val = format!("{:.3}", val_losses(&resumed)[0]);
    assert_eq!(first_val, after, "{resumed}");
    assert!(val_losses(&trained)[0] > val_losses(&resumed)[0] + 1.0);
}

/// QLoRA (DoRA on the 4-bit base) and full fine-tuning of the last layer train too, and
/// mlx-lm loads what they wrote with our logits.
#[test]
fn qlora_and_full_fine_tuning_train_what_mlx_lm_loads() {
    for (variant, kind) in [("q4-tied", "dora"), ("bf16-tied", "full")] {
        let tmp = TempDir::new(&format!("qwen3-train-{kind}"));
        let (base, data) = training_setup_on(&tmp, variant);
        let out = tmp.0.join("adapter");
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3"))
            .args(["lora", "--device", "cpu", "--train", "--model"])
            .arg(&base)
            .arg("--data")
            .arg(&data)
            .arg("--adapter-path")
            .arg(&out)
            .args(["--fine-tune-type", kind, "--num-layers", "1", "--rank", "4"])
            .args([
                "--iters",
                "16",
                "--batch-size",
                "2",
                "--learning-rate",
                "1e-2",
            ])
            .args(["--steps-per-eval", "16", "--scale", "2"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let vals = val_losses(&stdout);
        assert!(vals[1] < 0.8 * vals[0], "{kind}: {vals:?}");
        let adapter = Adapter::load(&out).unwrap();
        if kind == "full" {
            assert_eq!(adapter.config.fine_tune_type, tuner::FineTuneType::Full);
            assert!(adapter
                .weights
                .keys()
                .all(|k| k.starts_with("model.layers.1.")));
            assert!(adapter
                .weights
                .contains_key("model.layers.1.mlp.up_proj.weight"));
        }
        let prompt = [10, 20, 30, 40, 50, 60];
        let ours = super::on_cpu(|| {
            let mut model = qwen3::load(&base).unwrap();
            tuner::apply_adapter(&mut model, &adapter).unwrap();
            logits(&model, &prompt)
        });
        let theirs = mlx_lm_logits(&base, &prompt, Some(&out));
        assert_rows_close(kind, &ours, &theirs, ours.len() / prompt.len());
    }
}
