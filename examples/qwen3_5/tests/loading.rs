//! Strict loading: config fields and checkpoint tensors that are missing, unexpected,
//! mis-shaped or of the wrong dtype are errors that name the field or tensor.

mod common;

use common::{copy_to_temp, model_dir};
use qwen3_5::config::{Config, LayerType};
use qwen3_5::Error;
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

fn load_err(dir: &Path) -> String {
    match qwen3_5::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn read_config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn write_config(dir: &Path, v: &Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(v).unwrap(),
    )
    .unwrap();
}

/// Rewrites `dir/<file>` after `edit` changed its tensors (name → (dtype, shape, bytes)).
fn edit_tensors(
    dir: &Path,
    file: &str,
    edit: impl FnOnce(&mut BTreeMap<String, (StDtype, Vec<usize>, Vec<u8>)>),
) {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: BTreeMap<String, (StDtype, Vec<usize>, Vec<u8>)> = st
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
}

#[test]
fn configs_of_all_fixtures_parse() {
    let c = Config::from_file(model_dir("mlx-bf16-tied")).unwrap();
    assert_eq!(c.model_type, "qwen3_5");
    let t = &c.text;
    assert_eq!(
        (t.hidden_size, t.num_hidden_layers, t.vocab_size),
        (64, 4, 256)
    );
    assert_eq!(t.rope_dims(), 8);
    assert!(t.tie_word_embeddings);
    assert_eq!(t.layer_types[3], LayerType::FullAttention);
    assert_eq!(t.layer_types[..3], [LayerType::LinearAttention; 3]);
    assert!(c.quantization.is_none());

    // Bare text config, untied, more value heads than key heads.
    let c = Config::from_file(model_dir("mlx-bf16-untied")).unwrap();
    assert!(!c.text.tie_word_embeddings);
    assert_eq!(
        (c.text.linear_num_key_heads, c.text.linear_num_value_heads),
        (2, 4)
    );

    // tie_word_embeddings only at the top level.
    assert!(
        Config::from_file(model_dir("hf-bf16-tied"))
            .unwrap()
            .text
            .tie_word_embeddings
    );

    // Quantization with per-layer overrides.
    let q = Config::from_file(model_dir("mlx-q4-untied-mixed"))
        .unwrap()
        .quantization
        .unwrap();
    assert_eq!((q.default.group_size, q.default.bits), (32, 4));
    let head = q.per_layer["lm_head"].unwrap();
    assert_eq!((head.group_size, head.bits), (64, 8));
    assert!(q.per_layer.contains_key("layers.0.mlp.down_proj"));
}

type ConfigEdit = Box<dyn Fn(&mut Value)>;

/// Each broken field gives an error naming it.
#[test]
fn bad_config_fields_are_named() {
    let base = read_config(&model_dir("mlx-bf16-tied"));
    let cases: Vec<(&str, ConfigEdit)> = vec![
        (
            "text_config.hidden_size: missing",
            Box::new(|v| {
                v["text_config"]
                    .as_object_mut()
                    .unwrap()
                    .remove("hidden_size");
            }),
        ),
        (
            "text_config.head_dim: expected a positive integer",
            Box::new(|v| {
                v["text_config"]["head_dim"] = json!(-32);
            }),
        ),
        (
            "text_config.rms_norm_eps: expected a positive number",
            Box::new(|v| {
                v["text_config"]["rms_norm_eps"] = json!("tiny");
            }),
        ),
        (
            "text_config.linear_num_value_heads",
            Box::new(|v| {
                v["text_config"]["linear_num_value_heads"] = json!(3);
            }),
        ),
        (
            "text_config.layer_types: 3 entries",
            Box::new(|v| {
                v["text_config"]["layer_types"] =
                    json!(["linear_attention", "linear_attention", "full_attention"]);
            }),
        ),
        (
            "text_config.layer_types[1]",
            Box::new(|v| {
                v["text_config"]["layer_types"][1] = json!("sliding_attention");
            }),
        ),
        (
            "text_config.tie_word_embeddings: missing",
            Box::new(|v| {
                v["text_config"]
                    .as_object_mut()
                    .unwrap()
                    .remove("tie_word_embeddings");
            }),
        ),
        (
            "text_config.rope_parameters.rope_theta: missing",
            Box::new(|v| {
                v["text_config"]["rope_parameters"]
                    .as_object_mut()
                    .unwrap()
                    .remove("rope_theta");
            }),
        ),
        (
            "text_config.rope_parameters.rope_type",
            Box::new(|v| {
                v["text_config"]["rope_parameters"]["rope_type"] = json!("yarn");
            }),
        ),
        (
            "text_config.full_attention_interval: missing (and no layer_types)",
            Box::new(|v| {
                let t = v["text_config"].as_object_mut().unwrap();
                t.remove("layer_types");
                t.remove("full_attention_interval");
            }),
        ),
        (
            "model_type",
            Box::new(|v| {
                v["model_type"] = json!("llama");
            }),
        ),
        (
            "quantization.bits",
            Box::new(|v| {
                v["quantization"] = json!({"group_size": 64, "bits": 7});
            }),
        ),
        (
            "quantization.group_size: missing",
            Box::new(|v| {
                v["quantization"] = json!({"bits": 4});
            }),
        ),
    ];
    for (needle, edit) in cases {
        let mut v = base.clone();
        edit(&mut v);
        let err = Config::from_json(&v).expect_err(needle);
        assert!(matches!(err, Error::Config(_)), "{needle}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
    }
    // The same through `load`, from a file.
    let dir = copy_to_temp("mlx-bf16-tied", "cfg");
    let mut v = base.clone();
    v["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("num_key_value_heads");
    write_config(&dir, &v);
    let msg = load_err(&dir);
    assert!(
        msg.contains("text_config.num_key_value_heads: missing"),
        "{msg}"
    );
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("config.json") && msg.contains("invalid JSON"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_to_temp("mlx-bf16-tied", "missing");
    edit_tensors(&dir, "model.safetensors", |t| {
        t.remove("language_model.model.layers.1.linear_attn.A_log")
            .unwrap();
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("missing tensor language_model.model.layers.1.linear_attn.A_log"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    // An untied model needs its head.
    let dir = copy_to_temp("mlx-bf16-untied", "missing-head");
    edit_tensors(&dir, "model.safetensors", |t| {
        t.remove("language_model.lm_head.weight").unwrap();
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("missing tensor language_model.lm_head.weight"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    // Hugging Face names in a sharded checkpoint.
    let dir = copy_to_temp("hf-bf16-untied", "missing-hf");
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let name = "model.language_model.layers.3.self_attn.q_norm.weight";
    let file = index["weight_map"][name].as_str().unwrap().to_string();
    edit_tensors(&dir, &file, |t| {
        t.remove(name).unwrap();
    });
    let msg = load_err(&dir);
    assert!(msg.contains(name), "{msg}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = copy_to_temp("mlx-bf16-tied", "unexpected");
    edit_tensors(&dir, "model.safetensors", |t| {
        let extra = (StDtype::BF16, vec![2], vec![0u8; 4]);
        t.insert(
            "language_model.model.layers.0.mlp.extra.weight".into(),
            extra,
        );
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("unexpected tensor language_model.model.layers.0.mlp.extra.weight"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    // A fifth layer the config does not have.
    let dir = copy_to_temp("mlx-bf16-tied", "extra-layer");
    edit_tensors(&dir, "model.safetensors", |t| {
        let norm = t["language_model.model.layers.0.input_layernorm.weight"].clone();
        t.insert(
            "language_model.model.layers.4.input_layernorm.weight".into(),
            norm,
        );
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("unexpected tensor language_model.model.layers.4.input_layernorm.weight"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    // Vision and MTP tensors are skipped (the HF fixtures carry some): it loads.
    qwen3_5::load(model_dir("hf-bf16-untied")).unwrap();
}

#[test]
fn misshaped_tensor_is_named() {
    let dir = copy_to_temp("mlx-bf16-tied", "shape");
    edit_tensors(&dir, "model.safetensors", |t| {
        let (d, _, b) = t["language_model.model.layers.3.self_attn.k_proj.weight"].clone();
        // Same bytes, transposed shape.
        t.insert(
            "language_model.model.layers.3.self_attn.k_proj.weight".into(),
            (d, vec![64, 32], b),
        );
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("language_model.model.layers.3.self_attn.k_proj.weight: shape [64, 32], expected [32, 64]"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    // A conv weight in neither layout.
    let dir = copy_to_temp("mlx-bf16-tied", "conv");
    edit_tensors(&dir, "model.safetensors", |t| {
        let name = "language_model.model.layers.2.linear_attn.conv1d.weight";
        let (d, s, b) = t[name].clone();
        t.insert(name.into(), (d, vec![s[0], 2, 2], b));
    });
    let msg = load_err(&dir);
    assert!(msg.contains("language_model.model.layers.2.linear_attn.conv1d.weight: shape [96, 2, 2], expected [96, 4, 1]"), "{msg}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn wrong_dtype_is_named() {
    let dir = copy_to_temp("mlx-bf16-tied", "dtype");
    edit_tensors(&dir, "model.safetensors", |t| {
        let name = "language_model.model.norm.weight";
        let (_, s, b) = t[name].clone();
        t.insert(name.into(), (StDtype::I16, s, b));
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("language_model.model.norm.weight: dtype"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn quantized_tensors_are_checked() {
    // Scales of the wrong width for the config's hidden size.
    let dir = copy_to_temp("mlx-q4-tied", "qshape");
    edit_tensors(&dir, "model.safetensors", |t| {
        for suffix in ["scales", "biases"] {
            let name = format!("language_model.model.layers.0.mlp.up_proj.{suffix}");
            let (d, s, b) = t[&name].clone();
            t.insert(name, (d, vec![s[0] / 2, s[1] * 2], b));
        }
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("language_model.model.layers.0.mlp.up_proj.scales"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    // A per-layer config entry that disagrees with the stored bits.
    let dir = copy_to_temp("mlx-q4-untied-mixed", "qcfg");
    let mut v = read_config(&dir);
    v["quantization"]["language_model.model.layers.0.mlp.down_proj"] =
        json!({"group_size": 32, "bits": 4});
    write_config(&dir, &v);
    let msg = load_err(&dir);
    assert!(
        msg.contains("language_model.model.layers.0.mlp.down_proj.weight")
            && msg.contains("8 bits"),
        "{msg}"
    );

    // Quantized tensors with no quantization in the config.
    let mut v = read_config(&dir);
    v.as_object_mut().unwrap().remove("quantization");
    v.as_object_mut().unwrap().remove("quantization_config");
    write_config(&dir, &v);
    let msg = load_err(&dir);
    assert!(msg.contains("no \"quantization\""), "{msg}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sharded_index_must_match_files() {
    let dir = copy_to_temp("hf-bf16-untied", "index");
    let path = dir.join("model.safetensors.index.json");
    let mut index: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    index["weight_map"]["model.language_model.layers.9.mlp.up_proj.weight"] =
        json!("model-00001-of-00002.safetensors");
    std::fs::write(&path, index.to_string()).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.language_model.layers.9.mlp.up_proj.weight"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    let msg = load_err(Path::new("/nonexistent/qwen3_5-model"));
    assert!(msg.contains("/nonexistent/qwen3_5-model"), "{msg}");
}

/// Errors name a tensor of a Hugging Face checkpoint (here a text-only export, `model.*`)
/// as the model does (MLX names) and as the checkpoint stores it.
#[test]
fn hf_tensors_are_named_as_stored() {
    let dir = copy_to_temp("hf-bf16-tied", "hf-names");
    edit_tensors(&dir, "model.safetensors", |t| {
        t.remove("model.layers.3.self_attn.q_norm.weight").unwrap();
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("missing tensor language_model.model.layers.3.self_attn.q_norm.weight")
            && msg.contains("(model.layers.3.self_attn.q_norm.weight in this checkpoint's naming)"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    let dir = copy_to_temp("hf-bf16-tied", "hf-shape");
    edit_tensors(&dir, "model.safetensors", |t| {
        let name = "model.layers.3.self_attn.k_proj.weight";
        let (d, s, b) = t[name].clone();
        t.insert(name.into(), (d, vec![s[1], s[0]], b));
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("language_model.model.layers.3.self_attn.k_proj.weight: shape")
            && msg.contains("(stored as model.layers.3.self_attn.k_proj.weight)"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
