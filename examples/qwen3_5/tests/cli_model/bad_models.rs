//! Bad inputs that need a model: corrupt or missing weights, a bad config, out-of-range
//! ids, an unwritable output — one line on stderr and a non-zero exit, nothing left behind.

use super::*;

#[test]
fn bad_models_fail_with_one_line() {
    let v = "mlx-bf16-tied";
    let out_dir = scratch("bad-models");
    let npy = out_dir.join("x.npy");
    let logits = |dir: &Path, needle: &str| {
        assert_fails(
            &[
                "logits",
                "--model",
                s(dir),
                "--tokens",
                "1,2",
                "--out",
                s(&npy),
            ],
            needle,
        )
    };
    let generate = |dir: &Path, needle: &str| {
        assert_fails(
            &["generate", "--model", s(dir), "--prompt", "hi", "--raw"],
            needle,
        )
    };

    // A missing folder.
    logits(Path::new("/nonexistent/qwen-model"), "no such folder");

    // Safetensors that are not safetensors.
    let dir = model_with_tokenizer(v, "corrupt", SPECIALS);
    std::fs::write(
        dir.join("model.safetensors"),
        b"this is not a safetensors file",
    )
    .unwrap();
    logits(&dir, "model.safetensors");
    generate(&dir, "model.safetensors");

    // A truncated file: the header promises more data than there is.
    let dir = model_with_tokenizer(v, "truncated", SPECIALS);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    logits(&dir, "model.safetensors");

    // A tensor missing from the checkpoint is named.
    let dir = model_with_tokenizer(v, "missing-tensor", SPECIALS);
    let tensor = "language_model.model.layers.3.mlp.up_proj.weight";
    drop_tensor(&dir.join("model.safetensors"), tensor);
    logits(&dir, "layers.3.mlp.up_proj");

    // A config field missing, then one with a wrong type.
    for (field, value) in [
        ("hidden_size", None),
        ("num_hidden_layers", Some(json!("4"))),
    ] {
        let dir = model_with_tokenizer(v, &format!("config-{field}"), SPECIALS);
        let path = dir.join("config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let text = config["text_config"].as_object_mut().unwrap();
        match value {
            None => text.remove(field),
            Some(v) => text.insert(field.to_string(), v),
        };
        std::fs::write(&path, config.to_string()).unwrap();
        logits(&dir, field);
        generate(&dir, field);
    }

    // config.json that is not JSON.
    let dir = model_with_tokenizer(v, "config-json", SPECIALS);
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    logits(&dir, "config.json");

    assert_only_files(&out_dir, &[]);
}

/// Rewrites a safetensors file without the tensor `drop`.
fn drop_tensor(path: &Path, drop: &str) {
    use safetensors::tensor::{SafeTensors, TensorView};
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != drop)
        .collect();
    assert!(kept.len() < st.len(), "{drop} is not in {}", path.display());
    let out = safetensors::serialize(kept, None).unwrap();
    std::fs::write(path, out).unwrap();
}

#[test]
fn bad_logits_requests_fail_with_one_line() {
    let model = common::model_dir("mlx-bf16-tied");
    let out_dir = scratch("bad-logits");
    let npy = out_dir.join("x.npy");
    let logits = |tokens: &str, out: &Path, needle: &str| {
        assert_fails(
            &[
                "logits",
                "--model",
                s(&model),
                "--tokens",
                tokens,
                "--out",
                s(out),
            ],
            needle,
        )
    };
    // Ids at or beyond the 256 rows.
    let line = logits("1,256,3", &npy, "token id 256");
    assert!(
        line.contains("outside the model's vocabulary (0..256)"),
        "{line}"
    );
    logits("4000000000", &npy, "token id 4000000000");

    // An existing --out is left as it was when the run fails.
    std::fs::write(&npy, b"old").unwrap();
    logits("300", &npy, "outside");
    assert_eq!(std::fs::read(&npy).unwrap(), b"old");
    assert_only_files(&out_dir, &["x.npy"]);

    // Unwritable destinations.
    logits("1", Path::new("/proc/qwen3_5-logits.npy"), "cannot write");
    logits("1", &npy.join("x.npy"), "is not a folder");
    logits("1", &out_dir.join("missing/x.npy"), "does not exist");
    logits("1", &out_dir, "is a folder");
    assert_only_files(&out_dir, &["x.npy"]);

    // A good run replaces the old file.
    let (_, stderr) = run_ok(
        &[
            "logits",
            "--model",
            s(&model),
            "--tokens",
            "1",
            "--out",
            s(&npy),
        ],
        "",
    );
    assert!(stderr.contains("1 x 256"), "{stderr}");
    assert_eq!(read_npy(&npy).0, [1, 256]);
    assert_only_files(&out_dir, &["x.npy"]);
}
