//! `qwen3_5 bench`: bad flags give one line and exit code 2; a tiny random model runs
//! (dense and quantized) and writes the JSON report, float32 by default on the CPU, with no
//! progress line when stderr is not a terminal; the mlx-lm peer (from the Python oracle
//! that the `oracle` crate provisions) runs on the same random weights and produces the same
//! greedy tokens.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn bench(args: &[&str]) -> Output {
    bench_with_env(args, &[])
}

/// `qwen3_5 bench` with extra environment variables (the Python it starts inherits them).
fn bench_with_env(args: &[&str], env: &[(String, String)]) -> Output {
    common::retry_jit_cache_race(|| {
        Command::new(env!("CARGO_BIN_EXE_qwen3_5"))
            .arg("bench")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("the qwen3_5 binary runs")
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("qwen3_5-bench-test-{}-{name}", std::process::id()))
}

/// A tiny Qwen 3.5 config (3 DeltaNet layers with Hv = 2·Hk, one attention layer), every
/// input width a multiple of 64 so that it quantizes.
fn tiny_config(tag: &str) -> PathBuf {
    let path = temp(&format!("{tag}-config.json"));
    let config = json!({
        "model_type": "qwen3_5",
        "text_config": {
            "model_type": "qwen3_5_text",
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
            "linear_num_key_heads": 2, "linear_num_value_heads": 4,
            "linear_key_head_dim": 32, "linear_value_head_dim": 16,
            "linear_conv_kernel_dim": 4, "vocab_size": 256, "rms_norm_eps": 1e-6,
            "full_attention_interval": 4, "tie_word_embeddings": true,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "partial_rotary_factor": 0.25}
        }
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[test]
fn bad_flags_are_one_line_and_exit_2() {
    for (args, needle) in [
        (&["--config", "2b", "--quantize", "3"][..], "--quantize"),
        (&["--config", "2b", "--dtype", "int8"], "--dtype"),
        (&["--config", "2b", "--prompt", "0"], "--prompt"),
        (&["--config", "2b", "--gen", "-5"], "--gen"),
        (
            &["--config", "2b", "--memory-limit", "-1"],
            "--memory-limit",
        ),
        (&["--config", "2b", "--compare", "llama.cpp"], "--compare"),
        (&["--config", "2b", "--device", "tpu"], "--device"),
        (&[], "--config"),
    ] {
        let out = bench(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_inputs_fail_before_the_run() {
    let missing = temp("missing.json");
    for (args, needle) in [
        (
            vec!["--config", missing.to_str().unwrap()],
            "neither 2b, 0.8b nor a config.json",
        ),
        (vec!["--config", "Cargo.toml"], "not valid JSON"),
        (
            vec!["--config", "2b", "--json", "/nonexistent-dir/x.json"],
            "does not exist",
        ),
        (
            vec![
                "--config",
                "2b",
                "--compare",
                "mlx-lm",
                "--python",
                "/nonexistent/py",
            ],
            "cannot run /nonexistent/py",
        ),
        // MLX's CPU build loads no CUDA driver to profile with.
        (
            vec!["--config", "2b", "--cuda-profile-decode"],
            "MLX has not loaded the CUDA driver",
        ),
    ] {
        let out = bench(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A config that parses as JSON but is not a Qwen 3.5 model.
    let bad = temp("bad.json");
    std::fs::write(&bad, r#"{"model_type": "llama"}"#).unwrap();
    let out = bench(&["--config", bad.to_str().unwrap(), "--device", "cpu"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("model_type"), "{}", stderr(&out));
    let _ = std::fs::remove_file(bad);
}

fn run_tiny(extra: &[&str], tag: &str) -> (String, Value) {
    run_tiny_with_env(extra, tag, &[])
}

fn run_tiny_with_env(extra: &[&str], tag: &str, env: &[(String, String)]) -> (String, Value) {
    let config = tiny_config(tag);
    let json_path = temp(&format!("{tag}.json"));
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--device",
        "cpu",
        "--prompt",
        "70",
        "--gen",
        "5",
        "--json",
        json_path.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = bench_with_env(&args, env);
    let err = stderr(&out);
    assert!(out.status.success(), "{tag}: {err}");
    // stderr is a pipe here: no progress line (drawn with \r and erased with ESC [K).
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "{tag}: progress output on a pipe: {err:?}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let _ = std::fs::remove_file(json_path);
    let _ = std::fs::remove_file(config);
    (String::from_utf8_lossy(&out.stdout).into_owned(), report)
}

fn check_side(side: &Value, what: &str) {
    for key in ["prefill_tps", "decode_tps", "peak_mem_bytes"] {
        let v = side[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: no {key}"));
        assert!(v > 0.0, "{what}: {key} = {v}");
    }
}

#[test]
fn tiny_model_runs_and_reports() {
    for (extra, tag) in [
        (&["--bandwidth", "50"][..], "dense"),
        (&["--quantize", "4", "--dtype", "float32"], "q4"),
        (&["--sequential-prefill", "--rounds", "2"], "sequential"),
    ] {
        let (stdout, report) = run_tiny(extra, tag);
        // float32, asked for or as the CPU's default.
        assert_eq!(report["dtype"], json!("float32"), "{tag}");
        assert!(stdout.contains("prefill tok/s"), "{tag}: {stdout}");
        assert!(report["device"].as_str().unwrap().starts_with("cpu"));
        check_side(&report["ours"], tag);
        assert!(report["peer"].is_null(), "{tag}: no peer was asked for");
        let primitives = report["decode_primitives"].as_u64().unwrap_or(0);
        // A CPU step's products run outside MLX (`cpu_rows`, `cpu_quantized`), each
        // evaluating its input: the graph left at the end holds only what follows the
        // last product (the head's), at least the sampling.
        assert!(
            primitives >= 1,
            "{tag}: {primitives} primitives per decode step"
        );
        assert!(
            stdout.contains(&format!(
                "graph primitives per decode step (ours): {primitives}"
            )),
            "{tag}: {stdout}"
        );
        // The decode limit: only where the bandwidth is given (this CPU is no known card).
        let limit = &report["decode_limit"];
        if tag == "dense" {
            let bytes = limit["weight_bytes"].as_f64().unwrap();
            let tps = limit["decode_limit_tps"].as_f64().unwrap();
            assert!(
                bytes > 0.0 && (tps - 50e9 / bytes).abs() < 1e-6 * tps,
                "{limit}"
            );
            assert!(stdout.contains("decode limit: "), "{tag}: {stdout}");
        } else {
            assert!(limit.is_null(), "{tag}: {limit}");
        }
        let sequential = tag == "sequential";
        assert_eq!(
            report["prefill"] == json!("sequential"),
            sequential,
            "{tag}"
        );
    }
}

#[test]
fn mlx_lm_peer_on_the_same_weights() {
    // The provisioned oracle's Python, with its packages on PYTHONPATH for the bench process
    // and so for the Python it starts; a failure to provision fails the test.
    let (python, mut env) = oracle::python_env().unwrap_or_else(|e| panic!("{e}"));
    let python = python.to_str().expect("a UTF-8 Python path");
    // MLX's CPU compiler caches kernels as shared libraries in $TMPDIR/mlx/<version>/cpu and
    // another process may load one that is still being written ("file too short"): this
    // test's processes (ours, then the Python peer) get their own folder, so that they do not
    // race `tiny_model_runs_and_reports`, which runs at the same time.
    let tmp = temp("peer-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.push(("TMPDIR".into(), tmp.to_str().unwrap().into()));
    let (stdout, report) =
        run_tiny_with_env(&["--compare", "mlx-lm", "--python", python], "peer", &env);
    // The peer ran mlx-lm's model of the config's model_type, through the generic script.
    let _ = std::fs::remove_dir_all(&tmp);
    check_side(&report["ours"], "ours");
    check_side(&report["peer"], "peer");
    assert!(stdout.contains("ours/mlx-lm"), "{stdout}");
    // float32, same random weights and prompt: the greedy tokens agree.
    assert!(
        stdout.contains("the first 5 of 5 agree"),
        "greedy tokens differ: {stdout}"
    );
}

#[cfg(unix)]
#[test]
fn only_mlx_jit_cache_races_are_retried() {
    use std::os::unix::process::ExitStatusExt;
    let out = |code: i32, stderr: &str| Output {
        status: std::process::ExitStatus::from_raw(code << 8),
        stdout: Vec::new(),
        stderr: stderr.as_bytes().to_vec(),
    };
    let race =
        "error: Could not load C++ shared library /tmp/mlx/0.32.2/cpu/libX.so: file too short";
    assert!(common::jit_cache_race(&out(1, race)));
    assert!(
        !common::jit_cache_race(&out(0, race)),
        "a success is not a race"
    );
    assert!(!common::jit_cache_race(&out(1, "error: bad flag")));
    let mut runs = 0;
    let last = common::retry_jit_cache_race(|| {
        runs += 1;
        if runs < 3 {
            out(1, race)
        } else {
            out(0, "")
        }
    });
    assert!(last.status.success() && runs == 3, "{runs} runs");
    let mut runs = 0;
    let other = common::retry_jit_cache_race(|| {
        runs += 1;
        out(2, "error: bad flag")
    });
    assert_eq!(
        (other.status.code(), runs),
        (Some(2), 1),
        "other failures are not rerun"
    );
}
