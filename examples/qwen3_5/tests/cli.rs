//! Command-line tests: the built `qwen3_5` binary on bad input (one line on stderr, a
//! non-zero exit, no panic) and on the paths that need no weights (`generate --dry-run`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_qwen3_5");

/// Runs the binary with an empty Hugging Face cache and no reachable hub.
fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let hf_home = std::env::temp_dir().join(format!("qwen3_5-cli-hf-{}", std::process::id()));
    run_in(&hf_home, args, stdin)
}

/// Runs the binary with the given Hugging Face home and no reachable hub.
fn run_in(hf_home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("HF_HOME", hf_home)
        // A closed local port: "no network" without depending on DNS or proxies here.
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_HUB_OFFLINE");
    common::output_with_stdin(&mut command, stdin)
}

fn run(args: &[&str]) -> Output {
    run_with_stdin(args, "")
}

/// Asserts a failure with the given exit code and one `error: ` line containing `needle`.
#[track_caller]
fn assert_fails(args: &[&str], code: i32, needle: &str) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr {stderr:?}");
    let line = stderr.trim_end_matches('\n');
    assert!(!line.is_empty(), "{args:?}: empty stderr");
    assert!(
        !line.contains('\n'),
        "{args:?}: more than one line: {stderr:?}"
    );
    assert!(line.starts_with("error: "), "{args:?}: {line:?}");
    assert!(!line.contains("panicked"), "{args:?}: {line:?}");
    assert!(line.contains(needle), "{args:?}: {line:?} lacks {needle:?}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    line.to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3_5-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A model folder without weights: config.json, the tiny byte-level tokenizer, the Qwen 3.5
/// chat template.
fn model_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    common::write_tiny_tokenizer(&dir);
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_5_chat_template.jinja");
    std::fs::copy(template, dir.join("chat_template.jinja")).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "requires a subcommand"),
        (&["bogus"], "unrecognized subcommand"),
        (&["generate", "--prompt", "hi"], "--model"),
        (&["generate", "--model", "m"], "--prompt"),
        (
            &["generate", "--model", "m", "--prompt", "p", "--nope"],
            "--nope",
        ),
        (
            &["generate", "--model", "m", "--prompt", "p", "--temp", "abc"],
            "--temp",
        ),
        (
            &["generate", "--model", "m", "--prompt", "p", "--temp", "-1"],
            "--temp",
        ),
        (
            &["generate", "--model", "m", "--prompt", "p", "--temp", "nan"],
            "finite",
        ),
        (
            &[
                "generate",
                "--model",
                "m",
                "--prompt",
                "p",
                "--max-tokens",
                "0",
            ],
            "--max-tokens",
        ),
        (
            &[
                "generate",
                "--model",
                "m",
                "--prompt",
                "p",
                "--max-tokens",
                "-5",
            ],
            "--max-tokens",
        ),
        (
            &["generate", "--model", "m", "--prompt", "p", "--top-k", "x"],
            "--top-k",
        ),
        (
            &["generate", "--model", "m", "--prompt", "p", "--top-p", "0"],
            "(0, 1]",
        ),
        (
            &[
                "generate", "--model", "m", "--prompt", "p", "--top-p", "1.5",
            ],
            "(0, 1]",
        ),
        (
            &["generate", "--model", "m", "--prompt", "p", "--min-p", "1"],
            "[0, 1)",
        ),
        (
            &[
                "generate",
                "--model",
                "m",
                "--prompt",
                "p",
                "--repetition-penalty",
                "0",
            ],
            "> 0",
        ),
        (
            &[
                "generate",
                "--model",
                "m",
                "--prompt",
                "p",
                "--presence-penalty",
                "inf",
            ],
            "finite",
        ),
        (
            &["generate", "--model", "m", "--prompt", "p", "--seed", "-3"],
            "--seed",
        ),
        (
            &[
                "generate", "--model", "m", "--prompt", "p", "--device", "tpu",
            ],
            "possible values",
        ),
        (
            &[
                "generate",
                "--model",
                "m",
                "--prompt",
                "p",
                "--think",
                "--no-think",
            ],
            "cannot be used",
        ),
        (&["chat"], "--model"),
        (&["logits", "--model", "m", "--out", "x.npy"], "--tokens"),
        (&["logits", "--model", "m", "--tokens", "1,2"], "--out"),
        (
            &["logits", "--model", "m", "--tokens", "", "--out", "x.npy"],
            "token ids",
        ),
        (
            &[
                "logits", "--model", "m", "--tokens", "1,,2", "--out", "x.npy",
            ],
            "token 2 is empty",
        ),
        (
            &[
                "logits", "--model", "m", "--tokens", "1,2,", "--out", "x.npy",
            ],
            "token 3 is empty",
        ),
        (
            &["logits", "--model", "m", "--tokens", "a", "--out", "x.npy"],
            "'a'",
        ),
        (
            &[
                "logits", "--model", "m", "--tokens", "3,1.5", "--out", "x.npy",
            ],
            "token 2",
        ),
        (
            &["logits", "--model", "m", "--tokens", "-1", "--out", "x.npy"],
            "negative",
        ),
        (
            &[
                "logits", "--model", "m", "--tokens", "5,-7", "--out", "x.npy",
            ],
            "negative",
        ),
        (
            &[
                "logits",
                "--model",
                "m",
                "--tokens",
                "4294967296",
                "--out",
                "x.npy",
            ],
            "larger",
        ),
        (
            &[
                "logits",
                "--model",
                "m",
                "--tokens",
                "99999999999999999999",
                "--out",
                "x.npy",
            ],
            "larger",
        ),
    ];
    for (args, needle) in cases {
        let line = assert_fails(args, 2, needle);
        assert!(line.ends_with("(see --help)"), "{line}");
    }
}

#[test]
fn help_and_version_succeed() {
    for args in [
        &["--help"][..],
        &["generate", "--help"],
        &["logits", "--help"],
        &["--version"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
    let help = String::from_utf8(run(&["generate", "--help"]).stdout).unwrap();
    for flag in [
        "--model",
        "--prompt",
        "--system",
        "--max-tokens",
        "--temp",
        "--top-k",
        "--top-p",
        "--min-p",
        "--repetition-penalty",
        "--presence-penalty",
        "--seed",
        "--no-think",
        "--device",
    ] {
        assert!(help.contains(flag), "generate --help lacks {flag}");
    }
}

#[test]
fn model_resolution_errors_exit_1_with_one_line() {
    assert_fails(
        &["generate", "--model", "/nonexistent/qwen", "--prompt", "hi"],
        1,
        "no such folder",
    );
    assert_fails(
        &["generate", "--model", "./missing-model", "--prompt", "hi"],
        1,
        "no such folder",
    );
    let file = temp_dir("file").join("weights.bin");
    std::fs::write(&file, b"x").unwrap();
    assert_fails(
        &["generate", "--model", s(&file), "--prompt", "hi"],
        1,
        "not a folder",
    );
    let empty = temp_dir("noconfig");
    assert_fails(&["chat", "--model", s(&empty)], 1, "no config.json");
    assert_fails(
        &["generate", "--model", "not a model id!", "--prompt", "hi"],
        1,
        "neither a model folder nor a Hugging Face model id",
    );
    // A model id with no network: the hub cannot be reached.
    let line = assert_fails(
        &["generate", "--model", "Qwen/Qwen3.5-2B", "--prompt", "hi"],
        1,
        "cannot reach the Hugging Face hub",
    );
    assert!(line.contains("pass a local folder"), "{line}");
}

/// Lays out a model in a Hugging Face cache as hf-hub does: refs/main holds the commit,
/// snapshots/<commit>/ holds the files.
fn cached_model(hf_home: &Path, repo: &str, weights: &[(&str, &str)]) -> PathBuf {
    let folder = hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = folder.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), "0123abcd").unwrap();
    std::fs::write(snapshot.join("config.json"), "{}").unwrap();
    common::write_tiny_tokenizer(&snapshot);
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_5_chat_template.jinja");
    std::fs::copy(template, snapshot.join("chat_template.jinja")).unwrap();
    for (name, content) in weights {
        std::fs::write(snapshot.join(name), content).unwrap();
    }
    snapshot
}

#[test]
fn model_ids_resolve_from_the_cache_without_network() {
    let hf_home = temp_dir("cache-hf");
    cached_model(&hf_home, "Qwen/Qwen3.5-2B", &[("model.safetensors", "")]);
    let args = [
        "generate",
        "--model",
        "Qwen/Qwen3.5-2B",
        "--prompt",
        "Hi",
        "--raw",
        "--dry-run",
    ];
    let out = run_in(&hf_home, &args, "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Hi\n[2 tokens] 72,105\n"
    );

    // Sharded weights: every shard of the index must be cached, else the hub is needed.
    let index = r#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                    "b": "model-00002-of-00002.safetensors"}}"#;
    let snapshot = cached_model(
        &hf_home,
        "mlx-community/Qwen3.5-2B-4bit",
        &[
            ("model.safetensors.index.json", index),
            ("model-00001-of-00002.safetensors", ""),
        ],
    );
    let args = [
        "generate",
        "--model",
        "mlx-community/Qwen3.5-2B-4bit",
        "--prompt",
        "Hi",
        "--raw",
        "--dry-run",
    ];
    let out = run_in(&hf_home, &args, "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the Hugging Face hub"),
        "{stderr}"
    );
    std::fs::write(snapshot.join("model-00002-of-00002.safetensors"), "").unwrap();
    let out = run_in(&hf_home, &args, "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn offline_mode_uses_only_the_cache() {
    let hf_home = temp_dir("offline-hf");
    let out = Command::new(BIN)
        .args(["generate", "--model", "Qwen/Qwen3.5-2B", "--prompt", "hi"])
        .env("HF_HOME", &hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("HF_HUB_OFFLINE"), "{stderr}");
}

#[test]
fn missing_model_files_are_reported() {
    let dir = temp_dir("notok");
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    assert_fails(
        &["generate", "--model", s(&dir), "--prompt", "hi"],
        1,
        "tokenizer.json",
    );

    let dir = temp_dir("notemplate");
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    common::write_tiny_tokenizer(&dir);
    assert_fails(
        &["generate", "--model", s(&dir), "--prompt", "hi"],
        1,
        "no chat template",
    );
}

#[test]
fn dry_run_prints_the_templated_prompt_and_its_ids() {
    let dir = model_dir("dry");
    let out = run(&[
        "generate",
        "--model",
        s(&dir),
        "--prompt",
        "Hi",
        "--system",
        "Be brief.",
        "--dry-run",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (prompt, ids) = stdout.rsplit_once("\n[").unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    // The tiny vocabulary: specials 262 (<|im_start|>) and 263 (<|im_end|>), bytes as ids.
    let (count, ids) = ids.trim_end().split_once(" tokens] ").unwrap();
    let ids: Vec<u32> = ids.split(',').map(|t| t.parse().unwrap()).collect();
    assert_eq!(count.parse::<usize>().unwrap(), ids.len());
    assert_eq!(ids[0], 262);
    assert_eq!(ids.iter().filter(|&&t| t == 263).count(), 2);
    let mut user = vec![262];
    user.extend("user\nHi".bytes().map(u32::from));
    user.push(263);
    assert!(ids.windows(user.len()).any(|w| w == user), "{ids:?}");

    // --think: the prompt ends in an open <think>; --raw: no template at all.
    let think = run(&[
        "generate",
        "--model",
        s(&dir),
        "--prompt",
        "Hi",
        "--think",
        "--dry-run",
    ]);
    let think = String::from_utf8(think.stdout).unwrap();
    assert!(
        think.contains("<|im_start|>assistant\n<think>\n\n["),
        "{think}"
    );
    let raw = run(&[
        "generate",
        "--model",
        s(&dir),
        "--prompt",
        "Hi",
        "--raw",
        "--dry-run",
    ]);
    assert_eq!(
        String::from_utf8(raw.stdout).unwrap(),
        "Hi\n[2 tokens] 72,105\n"
    );
}

#[test]
fn prompt_can_come_from_stdin() {
    let dir = model_dir("stdin");
    let out = run_with_stdin(
        &[
            "generate",
            "--model",
            s(&dir),
            "--prompt",
            "-",
            "--raw",
            "--dry-run",
        ],
        "ok",
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ok\n[2 tokens] 111,107\n"
    );
}

#[test]
fn runs_that_need_weights_fail_cleanly_without_them() {
    // The folder has no weights (and an empty config): one line, exit 1.
    let dir = model_dir("noweights");
    assert_fails(&["generate", "--model", s(&dir), "--prompt", "Hi"], 1, "");
    let out = run_with_stdin(&["chat", "--model", s(&dir)], "hello\n/quit\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let npy = temp_dir("npy").join("logits.npy");
    assert_fails(
        &[
            "logits",
            "--model",
            s(&dir),
            "--tokens",
            "1,2,3",
            "--out",
            s(&npy),
        ],
        1,
        "",
    );
    assert!(!npy.exists());
}

#[test]
fn logits_output_is_checked_before_loading() {
    let dir = model_dir("outcheck");
    assert_fails(
        &[
            "logits",
            "--model",
            s(&dir),
            "--tokens",
            "1",
            "--out",
            "/nonexistent-dir/x.npy",
        ],
        1,
        "does not exist",
    );
    assert_fails(
        &[
            "logits",
            "--model",
            s(&dir),
            "--tokens",
            "1",
            "--out",
            s(&dir),
        ],
        1,
        "is a folder",
    );
}

#[path = "../../../mlx-lm/tests/lm/ranks.rs"]
mod ranks;

/// Under a launcher (2 ranks of a ring group, as `mlx-launch -n 2 -- qwen3_5 …` starts
/// them) the model is sharded: `generate` prints the reply on rank 0 only (the reply of
/// one process), `logits` is written by rank 0 only (the logits of one process, within
/// the bf16 tolerance of the sharded forward), and `chat` and `serve` refuse.
#[test]
fn generate_and_logits_under_a_launcher() {
    let limit = std::time::Duration::from_secs(120);
    let dir = common::copy_to_temp("mlx-bf16-untied", "launcher");
    common::write_tiny_tokenizer(&dir);
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_5_chat_template.jinja");
    std::fs::copy(template, dir.join("chat_template.jinja")).unwrap();
    let bin = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args).env("HF_HUB_OFFLINE", "1");
        c
    };
    let generate = [
        "generate",
        "--raw",
        "--device",
        "cpu",
        "--model",
        s(&dir),
        "--prompt",
        "hello",
        "--temp",
        "0",
        "--max-tokens",
        "6",
    ];
    let alone = bin(&generate).output().unwrap();
    assert!(alone.status.success(), "{alone:?}");
    let outs = ranks::run_ranks(2, &dir, limit, |_| bin(&generate));
    assert_eq!(outs[0].stdout, alone.stdout, "rank 0's reply");
    assert!(
        outs[1].stdout.is_empty(),
        "rank 1 printed {:?}",
        outs[1].stdout
    );
    assert!(String::from_utf8_lossy(&outs[0].stderr).contains("Generation:"));

    let npy = |name: &str| dir.join(name);
    let logits = |out: &Path| {
        vec![
            "logits".to_string(),
            "--device".into(),
            "cpu".into(),
            "--model".into(),
            s(&dir).into(),
            "--tokens".into(),
            "1,2,3,4,5".into(),
            "--out".into(),
            s(out).into(),
        ]
    };
    let one = logits(&npy("one.npy"));
    let one: Vec<&str> = one.iter().map(String::as_str).collect();
    assert!(bin(&one).output().unwrap().status.success());
    let two = logits(&npy("two.npy"));
    let two: Vec<&str> = two.iter().map(String::as_str).collect();
    let outs = ranks::run_ranks(2, &dir, limit, |_| bin(&two));
    assert!(!String::from_utf8_lossy(&outs[1].stderr).contains("wrote"));
    let read = |p: PathBuf| -> Vec<f32> {
        let bytes = std::fs::read(p).unwrap();
        let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let chunks = bytes[start..].chunks_exact(4);
        chunks
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    // The bf16 tolerance of `tests/forward.rs`'s sharded logits: six bf16 ulps of the row's
    // largest logit.
    let (a, w) = (read(npy("two.npy")), read(npy("one.npy")));
    assert_eq!(a.len(), w.len());
    for (r, (a, w)) in a.chunks(256).zip(w.chunks(256)).enumerate() {
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        common::assert_close(&format!("row {r}"), a, w, 6.0 / 128.0 * scale, 0.0);
    }

    let chat = ["chat", "--device", "cpu", "--model", s(&dir)];
    let (outs, _) = ranks::spawn_ranks(2, &dir, limit, |_| bin(&chat));
    for out in outs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("does not run under a launcher"), "{stderr}");
    }
    let serve = [
        "serve",
        "--device",
        "cpu",
        "--model",
        s(&dir),
        "--port",
        "0",
    ];
    let (outs, _) = ranks::spawn_ranks(2, &dir, limit, |_| bin(&serve));
    for out in outs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("not under a launcher"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
