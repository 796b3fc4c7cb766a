//! Tensor parallelism: Qwen3 sharded across 2 ring processes on this host, each one rank
//! (this test binary run again as `tensor_parallel_worker`), against one process.

use super::*;

/// The variable that makes `tensor_parallel_worker` run as one rank: `VARIANT:DTYPE,…`
/// (the fixtures to shard, and the dtype to cast them to).
const TP_WORKER: &str = "QWEN3_TEST_TP_CASES";
/// The folder where the ranks write their logits.
const TP_OUT: &str = "QWEN3_TEST_TP_OUT";
/// A rank run is killed after this long.
const TP_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
/// Tolerance of sharded float32 logits against one process, relative to the row's
/// largest |logit|: the sharded model adds the same products in another order (two
/// partial sums, then their sum), a few float32 ulps.
const TP_F32_ROW_RTOL: f32 = 1e-5;
/// The same for bf16: each rank's partial output is rounded to bf16 before the sum (one
/// rounding more than in one process, in each layer), and the bf16 logits carry that
/// difference plus their own rounding: two bf16 ulps of the row's scale (2 ×
/// `LOGITS_ROW_RTOL`; measured: 1.7 ulps on `bf16-untied`, deterministic on the CPU).
const TP_BF16_ROW_RTOL: f32 = 2.0 * LOGITS_ROW_RTOL;

/// `variant`, its parameters cast to `dtype`.
fn load_as(variant: &str, dtype: &str) -> qwen3::Model {
    use mlx_rs::nn::{KeyPath, Module, Param, VisitorMut};
    struct ToF32;
    impl VisitorMut for ToF32 {
        fn param(&mut self, _: &str, p: &mut Param) -> mlx_rs::Result<()> {
            let v = p.value().astype(Dtype::Float32)?;
            p.set(v);
            Ok(())
        }
    }
    let mut model = load(variant);
    if dtype == "float32" {
        model.visit_mut(&mut KeyPath::new(), &mut ToF32).unwrap();
    }
    model
}

fn tp_file(dir: &Path, variant: &str, dtype: &str, kind: &str, rank: i32) -> PathBuf {
    dir.join(format!("{variant}-{dtype}-{kind}-rank{rank}.f32"))
}

fn write_f32(path: &Path, v: &[f32]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let chunks = bytes.chunks_exact(4);
    chunks
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Not a test of its own: one rank of `tensor_parallel_logits_equal_one_process` (does
/// nothing unless `TP_WORKER` is set). Writes the full-prompt and step-wise logits of
/// each case, sharded across the ring group.
#[test]
fn tensor_parallel_worker() {
    let Ok(cases) = std::env::var(TP_WORKER) else {
        return;
    };
    let out = PathBuf::from(std::env::var(TP_OUT).unwrap());
    let init = || ranks::ring_group(TP_LIMIT);
    on_cpu(|| {
        for case in cases.split(',').filter(|c| !c.is_empty()) {
            let (variant, dtype) = case.split_once(':').unwrap();
            let e = expected(variant);
            // MLX keeps the group: each init returns the same one.
            let group = init();
            let rank = group.rank();
            let mut model = load_as(variant, dtype);
            model.shard(group).unwrap();
            let full = full_logits(&model, &e.prompt);
            write_f32(&tp_file(&out, variant, dtype, "full", rank), &full);
            let step = stepwise_logits(&model, &e.prompt, e.prefill);
            write_f32(&tp_file(&out, variant, dtype, "step", rank), &step);
        }
        // Heads that do not split: 4 query heads and 2 key/value heads across 4 ranks.
        let group = init();
        if group.size() == 4 {
            let err = load("bf16-untied").shard(group).unwrap_err().to_string();
            assert!(err.contains("the key/value heads (2) across 4"), "{err}");
        }
    });
    println!("TP RANK DONE");
}

/// `n` ranks of this test binary's `tensor_parallel_worker` with `env`.
fn run_workers(n: usize, env: &[(&str, &str)], dir: &Path) {
    let exe = std::env::current_exe().unwrap();
    let outs = run_ranks(n, dir, TP_LIMIT, |_| {
        let mut c = std::process::Command::new(&exe);
        c.args([
            "--exact",
            "tensor_parallel::tensor_parallel_worker",
            "--nocapture",
        ])
        .args(["--test-threads=1"])
        .envs(env.iter().copied());
        c
    });
    for (r, out) in outs.iter().enumerate() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("TP RANK DONE"), "rank {r}: {stdout}");
    }
}

/// Qwen3 sharded across 2 processes (ring backend, CPU) gives the logits of one process,
/// for the whole prompt and step by step through the KV cache, in float32 and bf16; both
/// ranks get the same logits bit for bit. And 4 ranks refuse 2 key/value heads.
#[test]
fn tensor_parallel_logits_equal_one_process() {
    let cases = [
        ("bf16-untied", "float32"),
        ("bf16-tied", "float32"),
        ("bf16-untied", "bf16"),
    ];
    let dir = std::env::temp_dir().join(format!("qwen3-tp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec: Vec<String> = cases.iter().map(|(v, d)| format!("{v}:{d}")).collect();
    let spec = spec.join(",");
    let out = dir.to_str().unwrap();
    run_workers(2, &[(TP_WORKER, &spec), (TP_OUT, out)], &dir);
    on_cpu(|| {
        for (variant, dtype) in cases {
            let e = expected(variant);
            let model = load_as(variant, dtype);
            let rtol = match dtype {
                "float32" => TP_F32_ROW_RTOL,
                _ => TP_BF16_ROW_RTOL,
            };
            let alone = [
                ("full", full_logits(&model, &e.prompt)),
                ("step", stepwise_logits(&model, &e.prompt, e.prefill)),
            ];
            for (kind, want) in alone {
                let ranks: Vec<Vec<f32>> = (0..2)
                    .map(|r| read_f32(&tp_file(&dir, variant, dtype, kind, r)))
                    .collect();
                assert_eq!(ranks[0], ranks[1], "{variant} {dtype} {kind}: ranks differ");
                let what = format!("{variant} {dtype} {kind}, 2 ranks");
                let row = model.config().vocab_size as usize;
                let mut worst = 0f32;
                for (r, (a, w)) in ranks[0].chunks(row).zip(want.chunks(row)).enumerate() {
                    let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
                    let err = a.iter().zip(w).fold(0f32, |m, (a, w)| m.max((a - w).abs()));
                    worst = worst.max(err / scale);
                    assert_close(&format!("{what}, row {r}"), a, w, rtol * scale, 0.0);
                }
                println!("{what}: largest error {worst:e} of the row's scale (tolerance {rtol:e})");
            }
        }
    });
    // 4 ranks: the 2 key/value heads do not split (the worker asserts the error).
    run_workers(4, &[(TP_WORKER, ""), (TP_OUT, out)], &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `qwen3 logits` and `qwen3 bench` as 2 ranks of a group (what `mlx-launch -n 2 -- qwen3
/// …` starts): the model is sharded, rank 0 writes the logits (those of one process) and
/// prints the bench report with each rank's figures and the group's; rank 1 prints
/// nothing on stdout.
#[test]
fn binary_runs_sharded_under_a_launcher() {
    let variant = "bf16-untied";
    let e = expected(variant);
    let dir = std::env::temp_dir().join(format!("qwen3-tp-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = fixtures().join(variant);
    let ids: Vec<String> = e.prompt.iter().map(u32::to_string).collect();
    let tokens = ids.join(",");
    let npy = dir.join("logits.npy");
    let qwen3 = |args: &[&std::ffi::OsStr]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3"));
        c.args(args);
        c
    };
    let args: [&std::ffi::OsStr; 9] = [
        "logits".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--model".as_ref(),
        fixture.as_os_str(),
        "--tokens".as_ref(),
        tokens.as_ref(),
        "--out".as_ref(),
        npy.as_os_str(),
    ];
    let outs = run_ranks(2, &dir, TP_LIMIT, |_| qwen3(&args));
    let stderr = |r: usize| String::from_utf8_lossy(&outs[r].stderr).into_owned();
    assert!(stderr(0).contains("wrote"), "{}", stderr(0));
    assert!(!stderr(1).contains("wrote"), "{}", stderr(1));
    let bytes = std::fs::read(&npy).unwrap();
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let logits: Vec<f32> = bytes[start..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let want = on_cpu(|| full_logits(&load(variant), &e.prompt));
    let row = want.len() / e.prompt.len();
    for (r, (a, w)) in logits.chunks(row).zip(want.chunks(row)).enumerate() {
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        let tol = TP_BF16_ROW_RTOL * scale;
        assert_close(&format!("qwen3 logits, 2 ranks, row {r}"), a, w, tol, 0.0);
    }

    let json = dir.join("bench.json");
    let config = fixture.join("config.json");
    let args: [&std::ffi::OsStr; 11] = [
        "bench".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--prompt".as_ref(),
        "8".as_ref(),
        "--gen".as_ref(),
        "4".as_ref(),
        "--json".as_ref(),
        json.as_os_str(),
    ];
    let outs = run_ranks(2, &dir, TP_LIMIT, |_| qwen3(&args));
    let report = String::from_utf8_lossy(&outs[0].stdout);
    for line in [
        "tensor parallel over 2 processes",
        "rank 0: prefill",
        "rank 1: prefill",
    ] {
        assert!(report.contains(line), "no {line:?} in\n{report}");
    }
    assert!(report.contains("group (slowest rank"), "{report}");
    assert!(outs[1].stdout.is_empty(), "rank 1 printed on stdout");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["ranks"].as_array().unwrap().len(), 2);
    assert!(doc["group"]["decode_tps"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}
