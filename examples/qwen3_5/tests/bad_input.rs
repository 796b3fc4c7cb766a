//! Bad input everywhere, for the `qwen3_5` binary and library: missing, truncated and
//! garbage files, broken or inconsistent configs, missing and mis-shaped tensors,
//! out-of-range token ids, unwritable outputs, bad flags, and a memory limit too small
//! for the model.
//!
//! Every CLI case must exit non-zero (never by a signal) with exactly one `error: ` line
//! on stderr and no panic; every library case must return `Err` (never panic). The test
//! also writes the table of what happens (the actual messages, paths shortened) to
//! `target/bad-input-qwen3_5.md`, and into the qwen3_5 section of `docs/bad-input.md`
//! when `UPDATE_BAD_INPUT_DOC=1`.

mod common;
#[path = "bad_input/harness.rs"]
mod harness;

use harness::*;
use std::path::Path;
use std::process::Command;

/// Serialises the library cases that change MLX's process-wide memory limit.
static LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn bad_input_fails_cleanly_everywhere() {
    let _limit = LIMIT.lock().unwrap_or_else(|p| p.into_inner());
    let mut rows: Vec<Row> = Vec::new();
    let mut add = |case: &str, cli: Option<Run>, library: Option<String>| {
        rows.push(Row {
            case: case.to_string(),
            cli,
            library,
        })
    };
    let out_ok = std::env::temp_dir().join(format!("qwen3_5-bad-{}.npy", std::process::id()));
    let out_ok = s(&out_ok).to_string();
    let logits = |dir: &Path, tokens: &str| {
        cli(&[
            "logits",
            "--model",
            s(dir),
            "--tokens",
            tokens,
            "--out",
            &out_ok,
        ])
    };
    let dry_run = |dir: &Path| cli(&["generate", "--model", s(dir), "--prompt", "hi", "--dry-run"]);

    // ---- files ----------------------------------------------------------------------
    let missing = std::env::temp_dir().join("qwen3_5-no-such-model-folder");
    add(
        "model folder missing",
        Some(logits(&missing, "1,2")),
        Some(lib("missing folder", || load(&missing))),
    );

    let dir = model("no-config");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    add(
        "`config.json` missing",
        Some(logits(&dir, "1,2")),
        Some(lib("no config", || load(&dir))),
    );

    let dir = model("config-folder");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    std::fs::create_dir(dir.join("config.json")).unwrap();
    add(
        "`config.json` is a folder",
        Some(logits(&dir, "1,2")),
        Some(lib("config folder", || load(&dir))),
    );

    let dir = model("config-fifo");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let made = Command::new("mkfifo")
        .arg(dir.join("config.json"))
        .status()
        .unwrap();
    assert!(made.success());
    add(
        "`config.json` is a FIFO (reading it would block for ever)",
        Some(logits(&dir, "1,2")),
        Some(lib("config fifo", || load(&dir))),
    );

    let dir = model("truncated-config");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), &text[..text.len() / 2]).unwrap();
    add(
        "`config.json` truncated",
        Some(logits(&dir, "1,2")),
        Some(lib("truncated config", || load(&dir))),
    );

    let dir = model("garbage-config");
    std::fs::write(dir.join("config.json"), b"\x00\xff\xfe garbage \x93NUMPY").unwrap();
    add(
        "`config.json` garbage bytes",
        Some(logits(&dir, "1,2")),
        Some(lib("garbage config", || load(&dir))),
    );

    let dir = model("array-config");
    std::fs::write(dir.join("config.json"), "[1, 2, 3]").unwrap();
    add(
        "`config.json` not an object",
        None,
        Some(lib("array config", || load(&dir))),
    );

    let dir = model("field-missing");
    let mut c = config(&dir);
    c["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("hidden_size");
    write_config(&dir, &c);
    add(
        "config field missing (`hidden_size`)",
        Some(logits(&dir, "1,2")),
        Some(lib("missing field", || load(&dir))),
    );

    let dir = model("inconsistent");
    let mut c = config(&dir);
    c["text_config"]["num_key_value_heads"] = 3.into();
    write_config(&dir, &c);
    add(
        "inconsistent config (3 KV heads for 2 query heads)",
        None,
        Some(lib("inconsistent", || load(&dir))),
    );

    let dir = model("wrong-type");
    let mut c = config(&dir);
    c["text_config"]["vocab_size"] = "many".into();
    write_config(&dir, &c);
    add(
        "config value of the wrong type (`vocab_size: \"many\"`)",
        None,
        Some(lib("wrong type", || load(&dir))),
    );

    let dir = model("huge-layers");
    let mut c = config(&dir);
    c["text_config"]["num_hidden_layers"] = (i32::MAX).into();
    c["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("layer_types");
    write_config(&dir, &c);
    add(
        "absurd config size (`num_hidden_layers: 2147483647`)",
        None,
        Some(lib("huge layers", || load(&dir))),
    );

    let dir = model("overflow");
    let mut c = config(&dir);
    c["text_config"]["linear_num_value_heads"] = 65536.into();
    c["text_config"]["linear_num_key_heads"] = 65536.into();
    c["text_config"]["linear_value_head_dim"] = 65536.into();
    write_config(&dir, &c);
    add(
        "config sizes whose products overflow",
        None,
        Some(lib("overflow", || load(&dir))),
    );

    let dir = model("no-weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    add(
        "`model.safetensors` missing",
        Some(logits(&dir, "1,2")),
        Some(lib("no weights", || load(&dir))),
    );

    let dir = model("truncated-weights");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    add(
        "`model.safetensors` truncated",
        Some(logits(&dir, "1,2")),
        Some(lib("truncated weights", || load(&dir))),
    );

    let dir = model("garbage-weights");
    std::fs::write(
        dir.join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage",
    )
    .unwrap();
    add(
        "`model.safetensors` garbage bytes",
        Some(logits(&dir, "1,2")),
        Some(lib("garbage weights", || load(&dir))),
    );

    let dir = model("empty-weights");
    std::fs::write(dir.join("model.safetensors"), b"").unwrap();
    add(
        "`model.safetensors` empty",
        None,
        Some(lib("empty weights", || load(&dir))),
    );

    let dir = model("missing-tensor");
    edit_weights(&dir, |a| {
        let i = name_ending(a, "layers.0.mlp.down_proj.weight");
        a.remove(i);
    });
    add(
        "tensor missing",
        Some(logits(&dir, "1,2")),
        Some(lib("missing tensor", || load(&dir))),
    );

    let dir = model("misshaped-tensor");
    edit_weights(&dir, |a| {
        let i = name_ending(a, "embed_tokens.weight");
        a[i].1 = a[i].1.transpose().unwrap();
    });
    add(
        "tensor of the wrong shape",
        None,
        Some(lib("misshaped tensor", || load(&dir))),
    );

    let dir = model("wrong-dtype");
    edit_weights(&dir, |a| {
        let i = name_ending(a, "norm.weight");
        a[i].1 = a[i].1.astype(mlx_rs::Dtype::Int32).unwrap();
    });
    add(
        "tensor of the wrong dtype (int32 norm)",
        None,
        Some(lib("wrong dtype", || load(&dir))),
    );

    let dir = model("extra-tensor");
    edit_weights(&dir, |a| {
        a.push((
            "language_model.model.extra.weight".into(),
            mlx_rs::Array::scalar(1.0f32),
        ));
    });
    add(
        "unexpected extra tensor",
        None,
        Some(lib("extra tensor", || load(&dir))),
    );

    let dir = model("no-tokenizer");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    add(
        "`tokenizer.json` missing (`generate --dry-run`)",
        Some(dry_run(&dir)),
        None,
    );

    let dir = model("garbage-tokenizer");
    std::fs::write(dir.join("tokenizer.json"), b"{\"model\": 42}").unwrap();
    add(
        "`tokenizer.json` garbage",
        Some(dry_run(&dir)),
        Some(lib("garbage tokenizer", || {
            mlx_lm::tokenizer::Tokenizer::from_model_dir(&dir).map_err(|e| e.to_string())
        })),
    );

    let dir = model("broken-template");
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% for m in messages %}{{ m.content ",
    )
    .unwrap();
    add(
        "chat template does not parse",
        Some(dry_run(&dir)),
        Some(lib("broken template", || {
            mlx_lm::chat::ChatTemplate::from_model_dir(&dir).map_err(|e| e.to_string())
        })),
    );

    let dir = model("raising-template");
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{{ raise_exception('System message must be first') }}",
    )
    .unwrap();
    add("chat template raises", Some(dry_run(&dir)), None);

    // An untrusted template must not hang or take all memory: each fails within its
    // rendering budget (fuel: instructions and bytes made), in well under a few seconds.
    let render = |dir: &Path| -> Result<String, String> {
        let t = mlx_lm::chat::ChatTemplate::from_model_dir(dir).map_err(|e| e.to_string())?;
        t.render(
            &[mlx_lm::chat::Message::user("hi")],
            &mlx_lm::chat::ChatOptions::default(),
        )
        .map_err(|e| e.to_string())
    };
    for (case, name, source) in [
        (
            "chat template with nested loops (10^15 steps: hung `--dry-run`)",
            "loop-template",
            "{% for a in range(100000) %}{% for b in range(100000) %}\
             {% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}",
        ),
        (
            "chat template doubling a string 64 times (took 14 GB until the OOM killer)",
            "doubling-template",
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}\
             {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        ),
        (
            "chat template repeating a string 2^40 times",
            "repeat-template",
            "{{ 'abcd' * 1099511627776 }}",
        ),
    ] {
        let dir = model(name);
        std::fs::write(dir.join("chat_template.jinja"), source).unwrap();
        let started = std::time::Instant::now();
        let run = dry_run(&dir);
        let message = lib(name, || render(&dir));
        assert!(run.line.contains("exceeded its budget"), "{}", run.line);
        assert!(message.contains("exceeded its budget"), "{message}");
        assert!(
            started.elapsed().as_secs() < 30,
            "{name}: {:?}",
            started.elapsed()
        );
        add(case, Some(run), Some(message));
    }
    // Lists joined with `+` escape minijinja's fuel (a deep chain is materialized without
    // being charged): the CLI watches its memory and time while it renders.
    let dir = model("list-doubling-template");
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% set ns = namespace(l=[0]) %}{% for i in range(40) %}\
         {% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = dry_run(&dir);
    assert!(
        run.line.contains("rendering took more than"),
        "{}",
        run.line
    );
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    add(
        "chat template doubling a list 40 times (not charged by minijinja's fuel)",
        Some(run),
        None,
    );
    // The real template still renders a long conversation with tools within the budget.
    let long = {
        let t = mlx_lm::chat::ChatTemplate::new(
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/qwen3_5_chat_template.jinja"),
            )
            .unwrap(),
        )
        .unwrap();
        let mut messages = vec![serde_json::json!({"role": "system", "content": "Be brief."})];
        for i in 0..200 {
            messages.push(serde_json::json!({"role": "user", "content": format!("question {i}: {}", "words ".repeat(50))}));
            if i % 10 == 0 {
                messages.push(serde_json::json!({"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "day": i}}}
                ]}));
                messages.push(serde_json::json!({"role": "tool", "content": "{\"temp\": 21}"}));
            }
            messages.push(serde_json::json!({"role": "assistant", "content": format!("<think>\nthinking {i}\n</think>\n\nanswer {i}: {}", "more words ".repeat(50))}));
        }
        let tools = serde_json::json!([{"type": "function", "function": {
            "name": "get_weather", "description": "The weather of a city on a day.",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "day": {"type": "integer"}}, "required": ["city"]}}}]);
        let options = mlx_lm::chat::ChatOptions {
            tools: Some(tools),
            ..mlx_lm::chat::ChatOptions::default()
        };
        let text = t
            .render_json(&serde_json::Value::Array(messages), &options)
            .expect("the Qwen 3.5 template renders 200 turns with tools within its budget");
        assert!(text.contains("answer 199") && text.contains("<tool_call>"));
        format!(
            "Ok: {} bytes (budget {} steps)",
            text.len(),
            mlx_lm::chat::DEFAULT_BUDGET
        )
    };
    add(
        "Qwen 3.5 template, 200 turns with tool calls (must still render)",
        None,
        Some(long),
    );

    // ---- inputs ---------------------------------------------------------------------
    let dir = model("tokens");
    add(
        "token id outside the vocabulary (`--tokens 999999`)",
        Some(logits(&dir, "999999")),
        Some(lib("generate with an unknown id", || {
            let m = load(&dir)?;
            m.generate(&[1, 999_999], qwen3_5::GenerateOptions::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })),
    );
    add(
        "`Model::forward` of ids outside the vocabulary (was clamped silently)",
        None,
        Some(lib("forward with an unknown id", || {
            let m = load(&dir)?;
            let ids = mlx_rs::Array::from_slice(&[1u32, 999_999], &[1, 2]).unwrap();
            m.forward(&ids, &mut m.new_cache())
                .map_err(|e| e.to_string())
        })),
    );
    add(
        "`Model::forward` of a negative id (`int32`)",
        None,
        Some(lib("forward with a negative id", || {
            let m = load(&dir)?;
            let ids = mlx_rs::Array::from_slice(&[-1i32], &[1, 1]).unwrap();
            m.forward(&ids, &mut m.new_cache())
                .map_err(|e| e.to_string())
        })),
    );
    let config_path = dir.join("config.json");
    for (case, args) in [
        (
            "`bench --prompt 4294967295` (allocated 21 GB first)",
            vec![
                "bench",
                "--config",
                s(&config_path),
                "--prompt",
                "4294967295",
            ],
        ),
        (
            "`bench --gen 4294967295` (ran for ever)",
            vec!["bench", "--config", s(&config_path), "--gen", "4294967295"],
        ),
        (
            "`generate --max-tokens 5000` (context 4096)",
            vec![
                "generate",
                "--model",
                s(&dir),
                "--prompt",
                "hi",
                "--max-tokens",
                "5000",
            ],
        ),
        (
            "`chat --max-tokens 5000` (context 4096)",
            vec!["chat", "--model", s(&dir), "--max-tokens", "5000"],
        ),
    ] {
        let run = cli(&args);
        assert!(run.line.contains("context of 4096"), "{}", run.line);
        add(case, Some(run), None);
    }
    // A temperature whose inverse overflows samples as greedy does.
    let generate_at = |temp: &str| {
        cli_ok(
            &[
                "generate",
                "--model",
                s(&dir),
                "--prompt",
                "hi",
                "--raw",
                "--max-tokens",
                "8",
                "--temp",
                temp,
            ],
            "",
            "Generation:",
        )
        .1
    };
    let greedy = generate_at("0");
    for temp in ["1e-45", "1e-38", "1e-6"] {
        assert_eq!(generate_at(temp), greedy, "--temp {temp}");
    }
    add(
        "`--temp 1e-45` (1/temp overflowed: sampled from NaN); also 1e-38, 1e-6",
        Some(Run {
            code: Some(0),
            line: "the same reply as with --temp 0 (below 1e-5, sampling is greedy)".into(),
        }),
        None,
    );
    let nan_dir = model("nan-weights");
    edit_weights(&nan_dir, |a| {
        let i = name_ending(a, "embed_tokens.weight");
        a[i].1 = a[i].1.multiply(&mlx_rs::Array::scalar(f32::NAN)).unwrap();
    });
    add(
        "weights with NaN: `logits`",
        Some(logits(&nan_dir, "1,2")),
        None,
    );
    let (run, _) = cli_ok(
        &[
            "logits",
            "--model",
            s(&nan_dir),
            "--tokens",
            "1,2",
            "--out",
            &out_ok,
            "--allow-nonfinite",
        ],
        "",
        "wrote",
    );
    add(
        "weights with NaN: `logits --allow-nonfinite`",
        Some(run),
        None,
    );
    let (run, _) = cli_ok(
        &[
            "generate",
            "--model",
            s(&nan_dir),
            "--prompt",
            "hi",
            "--raw",
            "--max-tokens",
            "3",
        ],
        "",
        "warning",
    );
    add(
        "weights with NaN: `generate` (exit 0 without a word)",
        Some(run),
        None,
    );
    add(
        "negative token id (`--tokens -1`)",
        Some(logits(&dir, "-1")),
        None,
    );
    add(
        "token id above u32 (`--tokens 4294967296`)",
        Some(logits(&dir, "4294967296")),
        None,
    );
    add(
        "empty prompt",
        None,
        Some(lib("generate with no tokens", || {
            let m = load(&dir)?;
            m.generate(&[], qwen3_5::GenerateOptions::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })),
    );

    // ---- outputs --------------------------------------------------------------------
    let out_missing = scratch("out").join("no/such/folder/x.npy");
    add(
        "`--out` in a missing folder",
        Some(cli(&[
            "logits",
            "--model",
            s(&dir),
            "--tokens",
            "1",
            "--out",
            s(&out_missing),
        ])),
        None,
    );
    let out_dir = scratch("outdir");
    add(
        "`--out` is a folder",
        Some(cli(&[
            "logits",
            "--model",
            s(&dir),
            "--tokens",
            "1",
            "--out",
            s(&out_dir),
        ])),
        None,
    );
    add(
        "`--out` unwritable (`/dev/full`: no space left)",
        Some(cli(&[
            "logits",
            "--model",
            s(&dir),
            "--tokens",
            "1",
            "--out",
            "/dev/full",
        ])),
        None,
    );

    let links = scratch("links");
    let target = links.join("target.npy");
    std::fs::write(&target, b"old").unwrap();
    let link = links.join("link.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (mut run, _) = cli_ok(
        &[
            "logits",
            "--model",
            s(&dir),
            "--tokens",
            "1",
            "--out",
            s(&link),
        ],
        "",
        "wrote",
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read(&target).unwrap().starts_with(b"\x93NUMPY"));
    run.line
        .push_str(" (the link stays a link; its target holds the logits)");
    add(
        "`--out` a symbolic link (was replaced by a file)",
        Some(run),
        None,
    );
    let dangling = links.join("dangling.npy");
    std::os::unix::fs::symlink(links.join("nowhere/x.npy"), &dangling).unwrap();
    add(
        "`--out` a dangling symbolic link",
        Some(cli(&[
            "logits",
            "--model",
            s(&dir),
            "--tokens",
            "1",
            "--out",
            s(&dangling),
        ])),
        None,
    );

    // ---- flags ----------------------------------------------------------------------
    // `generate --model DIR --prompt p` followed by `extra`.
    let generate = |extra: &[&'static str]| -> Vec<&str> {
        let mut args = vec!["generate", "--model", s(&dir), "--prompt", "p"];
        args.extend_from_slice(extra);
        args
    };
    for (case, args) in [
        ("unknown flag", generate(&["--bogus"])),
        ("missing `--model`", vec!["generate", "--prompt", "p"]),
        ("`--temp -1`", generate(&["--temp", "-1"])),
        ("`--top-p 2`", generate(&["--top-p", "2"])),
        ("`--max-tokens 0`", generate(&["--max-tokens", "0"])),
        ("`--device tpu`", generate(&["--device", "tpu"])),
        ("`--float-dtype int8`", generate(&["--float-dtype", "int8"])),
        (
            "`--tokens 1,,2`",
            vec![
                "logits",
                "--model",
                s(&dir),
                "--tokens",
                "1,,2",
                "--out",
                "x.npy",
            ],
        ),
    ] {
        add(case, Some(cli(&args)), None);
    }
    add(
        "`--device gpu` on a CPU-only build",
        if mlx_rs::Device::gpu().is_available() {
            None
        } else {
            Some(cli(&generate(&["--device", "gpu"])))
        },
        None,
    );

    // ---- memory ---------------------------------------------------------------------
    let old = mlx_rs::memory::get_memory_limit().unwrap();
    mlx_rs::memory::set_memory_limit(64 << 10).unwrap();
    let small_limit = std::panic::catch_unwind(|| lib("load under a 64 KiB limit", || load(&dir)));
    mlx_rs::memory::set_memory_limit(old).unwrap();
    add(
        "memory limit too small for the weights (64 KiB)",
        None,
        Some(small_limit.unwrap()),
    );
    let m = load(&dir).unwrap();
    mlx_rs::memory::set_memory_limit(mlx_rs::memory::get_active_memory().unwrap() + (1 << 20))
        .unwrap();
    let forward = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lib("forward past the limit", || {
            // 1 MiB left: a 4096-token prompt's activations do not fit.
            let tokens: Vec<u32> = (0..4096).map(|i| i % 200).collect();
            let ids = mlx_rs::Array::from_slice(&tokens, &[1, 4096]).unwrap();
            let mut cache = m.new_cache();
            m.forward(&ids, &mut cache)
                .and_then(|l| l.eval().map_err(Into::into))
                .map_err(|e| e.to_string())
        })
    }));
    mlx_rs::memory::set_memory_limit(old).unwrap();
    add(
        "memory limit too small for the activations (1 MiB free)",
        None,
        Some(forward.unwrap()),
    );

    write_table(&rows);
}
