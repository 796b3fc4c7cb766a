//! `mlx_lm::tuner`'s LoRA and DoRA layers against mlx-lm 0.32.2's `LoRALinear` and
//! `DoRALinear` (fixture `lora_layers.json` from `tests/oracle/gen_lora.py`): the output,
//! the fused weight (dequantized and re-quantized), and the gradients of a scalar loss with
//! respect to the adapter's parameters, on a dense and a 4-bit base; and the adapter
//! configuration file.

use crate::close::assert_close;
use mlx_lm::tuner::{
    self, Adaptable, AdaptableLinear, AdapterConfig, DoraLinear, FineTuneType, LoraLinear,
};
use mlx_rs::nn::{self, MaybeQuantized, Module, Param, UnaryModule};
use mlx_rs::ops::QuantizeOptions;
use mlx_rs::{Array, Device, Dtype};
use serde_json::Value;

/// Outputs of the same float32 ops in the same order: only the order of summation inside
/// MLX's products could differ (it does not on the CPU).
const LAYER_ATOL: f32 = 1e-5;
/// Relative part of the tolerance of outputs, fused weights and gradients.
const LAYER_RTOL: f32 = 1e-5;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lora_layers.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

fn on_cpu<T>(f: impl FnOnce() -> T) -> T {
    mlx_rs::with_device(&Device::cpu(), f).unwrap()
}

/// The base layer of a case: the float32 weight, quantized (4 bits, group 32) as Python's
/// `QuantizedLinear.from_linear` does when the case says so.
fn base(case: &Value) -> MaybeQuantized<nn::Linear> {
    let linear =
        nn::Linear::from_weights(super::common::json_array(&case["weight"]), None).unwrap();
    if case["quantized"].as_bool().unwrap() {
        let opts = QuantizeOptions {
            group_size: Some(32),
            bits: Some(4),
            ..Default::default()
        };
        MaybeQuantized::Quantized(nn::QuantizedLinear::from_linear(&linear, &opts).unwrap())
    } else {
        linear.into()
    }
}

/// The case's layer, with the fixture's adapter parameters.
fn layer(case: &Value) -> AdaptableLinear {
    let scale = case["scale"].as_f64().unwrap() as f32;
    let set = |p: &mut Param, name: &str| p.set(super::common::json_array(&case[name]));
    if case["kind"] == "dora" {
        let mut l = DoraLinear::from_base(base(case), 4, 0.0, scale).unwrap();
        set(&mut l.lora_a, "lora_a");
        set(&mut l.lora_b, "lora_b");
        set(&mut l.m, "m");
        AdaptableLinear::Dora(l)
    } else {
        let mut l = LoraLinear::from_base(base(case), 4, 0.0, scale).unwrap();
        set(&mut l.lora_a, "lora_a");
        set(&mut l.lora_b, "lora_b");
        AdaptableLinear::Lora(l)
    }
}

fn name(case: &Value) -> String {
    let q = if case["quantized"].as_bool().unwrap() {
        "4-bit"
    } else {
        "dense"
    };
    format!("{} on a {q} base", case["kind"].as_str().unwrap())
}

#[test]
fn layers_compute_what_mlx_lm_computes() {
    on_cpu(|| {
        for case in fixture()["cases"].as_array().unwrap() {
            let what = name(case);
            let l = layer(case);
            let x = super::common::json_array(&case["x"]);
            let y = l.forward(&x).unwrap();
            let want = super::common::json_array(&case["output"]);
            assert_eq!(y.shape(), want.shape(), "{what}");
            assert_close(&what, &floats(&y), &floats(&want), LAYER_ATOL, LAYER_RTOL);
            // The update matters: the base alone is far from the output.
            let base_only = floats(&l.base().forward(&x).unwrap());
            let moved = base_only
                .iter()
                .zip(floats(&want))
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                moved > 0.1,
                "{what}: the adapter changes the output by {moved}"
            );

            // The prepared form (what Qwen 3.5's forward pass runs) gives the same.
            let update = l.low_rank().unwrap().unwrap();
            let y2 = update.apply(&x, &l.base().forward(&x).unwrap()).unwrap();
            assert_close(
                &format!("{what}, prepared form"),
                &floats(&y2),
                &floats(&want),
                LAYER_ATOL,
                LAYER_RTOL,
            );
        }
    })
}

#[test]
fn fused_layers_match_mlx_lm() {
    on_cpu(|| {
        for case in fixture()["cases"].as_array().unwrap() {
            let what = name(case);
            let l = layer(case);
            let fuse = |dequantize: bool| match &l {
                AdaptableLinear::Lora(l) => l.fuse(dequantize).unwrap(),
                AdaptableLinear::Dora(l) => l.fuse(dequantize).unwrap(),
                AdaptableLinear::Base(_) => unreachable!(),
            };
            let MaybeQuantized::Dense(dense) = fuse(true) else {
                panic!("{what}: dequantized fuse gave a quantized layer")
            };
            assert_close(
                &format!("{what}: fused weight"),
                &floats(&dense.weight),
                &floats(&super::common::json_array(&case["fused_weight"])),
                LAYER_ATOL,
                LAYER_RTOL,
            );
            // Without `dequantize`, a quantized base is quantized again, as mlx-lm does.
            let kept = fuse(false);
            let quantized = case["quantized"].as_bool().unwrap();
            assert_eq!(
                matches!(kept, MaybeQuantized::Quantized(_)),
                quantized,
                "{what}"
            );
            let x = super::common::json_array(&case["x"]);
            assert_close(
                &format!("{what}: fused layer's output"),
                &floats(&kept.forward(&x).unwrap()),
                &floats(&super::common::json_array(&case["fused_output"])),
                LAYER_ATOL,
                LAYER_RTOL,
            );
        }
    })
}

#[test]
fn gradients_match_mx_grad() {
    on_cpu(|| {
        for case in fixture()["cases"].as_array().unwrap() {
            let what = name(case);
            let mut l = layer(case);
            let x = super::common::json_array(&case["x"]);
            let cot = super::common::json_array(&case["cotangent"]);
            let (_, grads) =
                nn::value_and_grad(&mut l, |m| m.forward(&x)?.multiply(&cot)?.sum(false)).unwrap();
            // Only the adapter trains: the base is frozen (quantized or not).
            let mut names: Vec<&str> = grads.keys().map(String::as_str).collect();
            names.sort();
            let want: &[&str] = if case["kind"] == "dora" {
                &["lora_a", "lora_b", "m"]
            } else {
                &["lora_a", "lora_b"]
            };
            assert_eq!(names, want, "{what}");
            for n in want {
                assert_close(
                    &format!("{what}: d/d{n}"),
                    &floats(&grads[*n]),
                    &floats(&super::common::json_array(
                        &case[format!("grad_{n}").as_str()],
                    )),
                    LAYER_ATOL,
                    1e-4,
                );
            }
        }
    })
}

/// Dropout applies in training mode only.
#[test]
fn dropout_only_in_training() {
    on_cpu(|| {
        let base: MaybeQuantized<nn::Linear> = nn::Linear::new(64, 8, false).unwrap().into();
        let mut l = LoraLinear::from_base(base, 4, 0.5, 2.0).unwrap();
        l.lora_b
            .set(mlx_rs::ops::ones(&[4, 8], Dtype::Float32).unwrap());
        let x = mlx_rs::ops::ones(&[16, 64], Dtype::Float32).unwrap();
        l.eval().unwrap();
        let a = floats(&l.forward(&x).unwrap());
        let b = floats(&l.forward(&x).unwrap());
        assert_eq!(a, b, "evaluation mode is deterministic");
        l.train(true).unwrap();
        let c = floats(&l.forward(&x).unwrap());
        assert_ne!(a, c, "training mode drops inputs of the update");
    })
}

#[derive(nn::Module)]
struct Block {
    attn: AdaptableLinear,
    mlp: AdaptableLinear,
}

#[derive(nn::Module)]
struct Tiny {
    layers: Vec<Block>,
    head: AdaptableLinear,
}

impl Adaptable for Tiny {
    fn layers_path(&self) -> String {
        "layers".into()
    }
    fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

fn tiny() -> Tiny {
    let lin = || AdaptableLinear::from(nn::Linear::new(8, 8, false).unwrap());
    Tiny {
        layers: (0..3)
            .map(|_| Block {
                attn: lin(),
                mlp: lin(),
            })
            .collect(),
        head: lin(),
    }
}

/// `num_layers` counts from the last layer (0 or less: all), `keys` are paths inside a
/// layer or whole paths, as in mlx-lm's `linear_to_lora_layers`.
#[test]
fn layers_to_adapt_are_chosen_as_mlx_lm_chooses_them() {
    let adapted = |model: &Tiny| -> Vec<String> {
        let mut v: Vec<String> = model
            .parameters()
            .unwrap()
            .into_keys()
            .filter(|k| k.ends_with(".lora_a"))
            .map(|k| k.trim_end_matches(".lora_a").to_string())
            .collect();
        v.sort();
        v
    };
    let p = |keys: Option<&[&str]>| tuner::LoraParameters {
        rank: 2,
        keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let mut m = tiny();
    assert_eq!(
        tuner::linear_to_lora_layers(&mut m, 2, &p(None), false).unwrap(),
        4
    );
    assert_eq!(
        adapted(&m),
        [
            "layers.1.attn",
            "layers.1.mlp",
            "layers.2.attn",
            "layers.2.mlp"
        ]
    );
    // Again on an adapted layer: an error naming it.
    let err = tuner::linear_to_lora_layers(&mut m, 1, &p(None), false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("layers.2.attn"), "{err}");

    let mut m = tiny();
    let keys: &[&str] = &["mlp", "head"];
    tuner::linear_to_lora_layers(&mut m, -1, &p(Some(keys)), true).unwrap();
    assert_eq!(
        adapted(&m),
        ["head", "layers.0.mlp", "layers.1.mlp", "layers.2.mlp"]
    );
    assert!(m.parameters().unwrap().contains_key("layers.0.mlp.m"));
}

/// `adapter_config.json` as mlx-lm writes it, read and written back.
#[test]
fn adapter_config_round_trips_and_bad_ones_are_named() {
    let doc: Value = serde_json::json!({
        "fine_tune_type": "dora",
        "num_layers": 16,
        "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.05, "keys": ["self_attn.q_proj"]},
        "model": "Qwen/Qwen3-0.6B",
        "iters": 600
    });
    let c = AdapterConfig::from_json(&doc, "adapter_config.json").unwrap();
    assert_eq!(c.fine_tune_type, FineTuneType::Dora);
    assert_eq!(c.num_layers, 16);
    let p = c.lora_parameters.as_ref().unwrap();
    assert_eq!((p.rank, p.scale, p.dropout), (8, 20.0, 0.05));
    assert_eq!(
        p.keys.as_deref(),
        Some(&["self_attn.q_proj".to_string()][..])
    );
    assert_eq!(c.extra["iters"], 600);
    let back = AdapterConfig::from_json(&c.to_json(), "again").unwrap();
    assert_eq!(back, c);

    // Without `fine_tune_type`: LoRA, as mlx-lm reads it.
    let c = AdapterConfig::from_json(
        &serde_json::json!({"num_layers": 2, "lora_parameters": {"rank": 4, "scale": 1.0, "dropout": 0.0}}),
        "x",
    )
    .unwrap();
    assert_eq!(c.fine_tune_type, FineTuneType::Lora);

    let bad = |doc: Value, part: &str| {
        let err = AdapterConfig::from_json(&doc, "cfg.json")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(part), "{err} should mention {part}");
    };
    bad(serde_json::json!({"lora_parameters": {}}), "num_layers");
    bad(serde_json::json!({"num_layers": 2}), "lora_parameters");
    bad(
        serde_json::json!({"num_layers": 2, "lora_parameters": {"rank": 4, "alpha": 16, "dropout": 0.0}}),
        "alpha",
    );
    bad(
        serde_json::json!({"num_layers": 2, "fine_tune_type": "prefix", "lora_parameters": {}}),
        "prefix",
    );
    bad(
        serde_json::json!({"num_layers": 2, "lora_parameters": {"rank": 0.5, "scale": 1.0, "dropout": 0.0}}),
        "rank",
    );
    // Full fine-tuning needs no `lora_parameters`.
    assert!(AdapterConfig::from_json(
        &serde_json::json!({"num_layers": 2, "fine_tune_type": "full"}),
        "x"
    )
    .is_ok());
}

/// Data lines become the tokens and prompt offsets mlx-lm's `ChatDataset`,
/// `CompletionsDataset` and `TextDataset` make of them (run live, with transformers'
/// tokenizer on the same tiny tokenizer and chat template), with and without
/// `mask_prompt`; a malformed line is named by its number.
#[test]
fn datasets_tokenize_as_mlx_lm_does() {
    use mlx_lm::tuner::datasets::{load_examples, DataOptions};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/qwen3_5/tests/fixtures/char-tokenizer");
    let tokenizer = mlx_lm::tokenizer::Tokenizer::from_model_dir(&dir).unwrap();
    let template = mlx_lm::chat::ChatTemplate::from_model_dir(&dir).unwrap();
    let eos = tokenizer.token_to_id("<|im_end|>").unwrap();
    let tmp = std::env::temp_dir().join(format!("lm-datasets-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let files = [
        (
            "chat",
            vec![
                serde_json::json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello!"}]}),
                serde_json::json!({"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}),
            ],
        ),
        (
            "completions",
            vec![serde_json::json!({"prompt": "sky?", "completion": "blue.", "extra": 1})],
        ),
        (
            "text",
            vec![serde_json::json!({"text": "plain text, no template"})],
        ),
    ];
    const SCRIPT: &str = r#"
import json, sys
from transformers import AutoTokenizer
from mlx_lm.tuner.datasets import create_dataset
import types
tok = AutoTokenizer.from_pretrained(sys.argv[1])
out = {}
for name in sys.argv[3:]:
    rows = [json.loads(l) for l in open(f"{sys.argv[2]}/{name}.jsonl")]
    for mask in (False, True):
        if name == "text" and mask:
            continue
        ds = create_dataset(rows, tok, types.SimpleNamespace(mask_prompt=mask))
        out[f"{name}-{str(mask).lower()}"] = [list(ds.process(ds[i])) for i in range(len(ds))]
print(json.dumps(out))
"#;
    for (name, rows) in &files {
        let text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
        std::fs::write(tmp.join(format!("{name}.jsonl")), text).unwrap();
    }
    let out = oracle::python()
        .unwrap_or_else(|e| panic!("{e}"))
        .args(["-c", SCRIPT])
        .arg(&dir)
        .arg(&tmp)
        .args(["chat", "completions", "text"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, _) in &files {
        for mask in [false, true] {
            if *name == "text" && mask {
                continue;
            }
            let options = DataOptions {
                mask_prompt: mask,
                eos: Some(eos),
            };
            let got = load_examples(
                &tmp.join(format!("{name}.jsonl")),
                &tokenizer,
                Some(&template),
                &options,
            )
            .unwrap();
            let want = want[format!("{name}-{mask}")].as_array().unwrap();
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, w) in got.iter().zip(want) {
                let ids: Vec<u32> = w[0]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(g.tokens, ids, "{name} (mask {mask}): tokens");
                assert_eq!(
                    g.offset as u64,
                    w[1].as_u64().unwrap(),
                    "{name} (mask {mask}): offset"
                );
                assert!(!mask || g.offset > 0, "{name}: a masked prompt");
            }
        }
    }

    // A malformed line, by number; text data refuses prompt masking.
    std::fs::write(
        tmp.join("bad.jsonl"),
        "{\"text\": \"a\"}\n\n{\"text\": 3}\n",
    )
    .unwrap();
    let err = load_examples(
        &tmp.join("bad.jsonl"),
        &tokenizer,
        None,
        &DataOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bad.jsonl:3") && err.contains("not a string"),
        "{err}"
    );
    std::fs::write(tmp.join("bad.jsonl"), "[1, 2]\n").unwrap();
    let err = load_examples(
        &tmp.join("bad.jsonl"),
        &tokenizer,
        None,
        &DataOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bad.jsonl:1") && err.contains("not a JSON object"),
        "{err}"
    );
    let masked = DataOptions {
        mask_prompt: true,
        eos: None,
    };
    assert!(load_examples(&tmp.join("text.jsonl"), &tokenizer, None, &masked).is_err());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Batches as mlx-lm's `iterate_batches` makes them: examples sorted by length, a last
/// partial batch dropped, rows padded to one plus a multiple of 32 (at most the longest
/// allowed), longer sequences truncated with a warning, `(offset, length)` per row.
#[test]
fn batches_are_sorted_padded_and_truncated_as_mlx_lm_makes_them() {
    use mlx_lm::tuner::datasets::Example;
    use mlx_lm::tuner::trainer::batches;
    let ex = |n: usize, offset: usize| Example {
        tokens: (1..=n as u32).collect(),
        offset,
    };
    let data = vec![ex(40, 0), ex(5, 2), ex(33, 0), ex(7, 3), ex(100, 0)];
    let mut warnings = Vec::new();
    let got = batches(&data, 2, 64, 7, &mut |w| warnings.push(w)).unwrap();
    assert_eq!(
        got.len(),
        2,
        "five examples, batches of two: the longest is dropped"
    );
    let mut shapes: Vec<(Vec<i32>, Vec<i32>)> = got
        .iter()
        .map(|b| (b.ids.shape().to_vec(), b.lengths.to_vec::<i32>().unwrap()))
        .collect();
    shapes.sort();
    // Lengths 5 and 7 pad to 33; 33 and 40 to 65, cut to the limit of 64.
    assert_eq!(shapes[0], (vec![2, 33], vec![2, 5, 3, 7]));
    assert_eq!(shapes[1], (vec![2, 64], vec![0, 33, 0, 40]));
    assert!(warnings.is_empty(), "{warnings:?}");
    let short = batches(&data, 2, 20, 7, &mut |w| warnings.push(w)).unwrap();
    assert!(short.iter().all(|b| b.ids.dim(1) <= 20));
    assert!(
        warnings.iter().any(|w| w.contains("truncated to 20")),
        "{warnings:?}"
    );
    let first = |b: &mlx_lm::tuner::trainer::Batch| b.ids.to_vec::<i32>().unwrap();
    let again = batches(&data, 2, 64, 7, &mut |_| {}).unwrap();
    assert_eq!(
        first(&got[0]),
        first(&again[0]),
        "the same seed, the same order"
    );
    assert!(
        batches(&data, 6, 64, 0, &mut |_| {}).is_err(),
        "fewer examples than a batch"
    );
}
