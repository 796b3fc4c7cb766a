//! MLX's distributed engine from Rust, end to end on this machine: `mlx-launch` starts 2
//! to 4 CPU processes of a ring group (this test binary re-run as workers, see
//! `distributed/workers.rs`), and they check every collective against the one-process
//! result, data-parallel training, failures, and a group shared with Python MLX ranks.
//!
//! Every run is bounded: the launcher's `--timeout` stops it, and directly started
//! workers are killed at a deadline.

#[path = "distributed/workers.rs"]
mod workers;

use mlx_rs::distributed::{self as dist, is_available, Backend, Group};
use mlx_rs::{Array, Dtype};
use std::ffi::OsString;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The variable that makes the `worker` test run a scenario.
const SCENARIO: &str = "MLX_LAUNCH_TEST_SCENARIO";
const LAUNCH: &str = env!("CARGO_BIN_EXE_mlx-launch");
/// The launcher stops a run after this many seconds.
const RUN_LIMIT_S: &str = "60";

/// Not a test of its own: the entry point of the worker processes (it does nothing when
/// the scenario variable is not set).
#[test]
fn worker() {
    if let Ok(scenario) = std::env::var(SCENARIO) {
        workers::run(&scenario);
    }
}

/// This binary, run as a worker.
fn worker_command() -> Vec<OsString> {
    let exe = std::env::current_exe().expect("the test binary's path");
    vec![
        exe.into(),
        "--exact".into(),
        "worker".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn from(out: Output, took: Duration) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took,
        }
    }

    /// Fails with the whole output unless `cond`.
    fn expect(&self, cond: bool, what: &str) {
        assert!(
            cond,
            "{what}\nexit: {:?} after {:.1?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.took, self.stdout, self.stderr
        );
    }

    /// Whether rank `r` printed a line on stdout that contains `text`.
    fn printed(&self, r: usize, text: &str) -> bool {
        let prefix = format!("[{r}] ");
        self.stdout
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains(text))
    }

    /// Every rank of `size` printed `PASS <scenario> <rank>/<size>`.
    fn expect_all_pass(&self, scenario: &str, size: usize) {
        self.expect(self.code == Some(0), "the run failed");
        for r in 0..size {
            let line = format!("PASS {scenario} {r}/{size}");
            self.expect(
                self.printed(r, &line),
                &format!("rank {r} did not print {line:?}"),
            );
        }
    }
}

/// Runs `mlx-launch ARGS -- COMMAND` with `env` added.
fn launch(args: &[&str], command: &[OsString], env: &[(&str, &str)]) -> Run {
    let start = Instant::now();
    let out = Command::new(LAUNCH)
        .args(args)
        .arg("--")
        .args(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("mlx-launch starts");
    Run::from(out, start.elapsed())
}

/// Runs `scenario` on `n` local ring processes.
fn launch_workers(n: usize, scenario: &str) -> Run {
    let n = n.to_string();
    launch(
        &["-n", &n, "-p", "0", "--timeout", RUN_LIMIT_S],
        &worker_command(),
        &[(SCENARIO, scenario)],
    )
}

/// Runs one worker directly (no launcher) with `env`, killed after `limit`.
fn run_worker(scenario: &str, env: &[(&str, &str)], limit: Duration) -> Run {
    let start = Instant::now();
    let cmd = worker_command();
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env(SCENARIO, scenario)
        .env_remove("MLX_RANK")
        .env_remove("MLX_HOSTFILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the worker starts");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().expect("wait");
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        code: status.code(),
        stdout,
        stderr,
        took: start.elapsed(),
    }
}

/// Writes `text` to `dir/name` (a hostfile for a worker).
fn hostfile(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mlx-launch-test-{}-{name}", std::process::id()))
}

#[test]
fn collectives_on_2_processes() {
    launch_workers(2, "collectives").expect_all_pass("collectives", 2);
}

#[test]
fn collectives_on_4_processes() {
    launch_workers(4, "collectives").expect_all_pass("collectives", 4);
}

#[test]
fn data_parallel_training_matches_one_process() {
    for n in [2, 4] {
        let run = launch_workers(n, "train");
        run.expect_all_pass("train", n);
        run.expect(run.printed(0, "loss "), "rank 0 prints the loss");
    }
}

/// A rank that fails makes the launcher stop the others (here blocked waiting for it in
/// the ring's init) and exit with its code.
#[test]
fn a_failing_rank_stops_the_others() {
    let mut cmd: Vec<OsString> = vec![
        "sh".into(),
        "-c".into(),
        r#"if [ "$MLX_RANK" = 1 ]; then echo failing >&2; exit 3; fi; exec "$@""#.into(),
        "sh".into(),
    ];
    cmd.extend(worker_command());
    let run = launch(
        &["-n", "3", "-p", "0", "--timeout", RUN_LIMIT_S],
        &cmd,
        &[(SCENARIO, "collectives")],
    );
    run.expect(
        run.code == Some(3),
        "the launcher exits with the rank's code",
    );
    run.expect(
        run.stderr.contains("[1] failing"),
        "the rank's stderr is forwarded",
    );
    run.expect(
        run.stderr.contains("mlx-launch: rank 1 exited with code 3"),
        "the launcher names the rank",
    );
    run.expect(
        run.took < Duration::from_secs(20),
        "the others are stopped at once",
    );
}

/// A peer that leaves makes the others' collective fail with MLX's error, not wait.
#[test]
fn a_peer_that_leaves_is_an_error_in_the_others() {
    let run = launch_workers(2, "peer_exits");
    run.expect(run.code == Some(0), "both ranks end normally");
    run.expect(run.printed(1, "LEAVING"), "rank 1 leaves");
    run.expect(
        run.printed(0, "ERROR after") && run.printed(0, "connection to a peer was lost"),
        "rank 0 gets MLX's error",
    );
}

/// A peer that never starts: MLX would wait forever; the init's timeout ends it.
#[test]
fn a_peer_that_never_comes_times_out() {
    let ports = free_ports(2);
    let dir = scratch("never");
    let hf = hostfile(
        &dir,
        "hosts.json",
        &format!(
            r#"[["127.0.0.1:{}"], ["127.0.0.1:{}"]]"#,
            ports[0], ports[1]
        ),
    );
    let run = run_worker(
        "never_comes",
        &[("MLX_RANK", "0"), ("MLX_HOSTFILE", hf.to_str().unwrap())],
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_dir_all(&dir);
    run.expect(run.code == Some(0), "the worker ends by itself");
    run.expect(
        run.stdout
            .contains("TIMEOUT the ring backend did not connect"),
        "a timeout",
    );
    run.expect(
        run.stdout
            .contains("TIMEOUT AGAIN another distributed init"),
        "the second waits",
    );
    run.expect(run.took < Duration::from_secs(15), "bounded");
}

/// A bad ring configuration is an error value in the process, not a crash or a hang.
#[test]
fn a_wrong_hostfile_is_an_error() {
    let dir = scratch("hostfiles");
    let ports = free_ports(2);
    let two = format!(
        r#"[["127.0.0.1:{}"], ["127.0.0.1:{}"]]"#,
        ports[0], ports[1]
    );
    let cases: Vec<(Option<PathBuf>, &str, &str)> = vec![
        (Some(dir.join("missing.json")), "0", ""),
        (
            Some(hostfile(&dir, "notjson.json", "hosts: [1, 2")),
            "0",
            "parse",
        ),
        (
            Some(hostfile(&dir, "rank.json", &two)),
            "5",
            "Rank cannot be larger",
        ),
        (
            Some(hostfile(
                &dir,
                "addr.json",
                r#"[["127.0.0.1"], ["127.0.0.1"]]"#,
            )),
            "0",
            "Can't parse address",
        ),
        (None, "0", "MLX_HOSTFILE"),
    ];
    for (path, rank, needle) in cases {
        let p = path.as_ref().map(|p| p.to_str().unwrap().to_string());
        let mut env = vec![("MLX_RANK", rank)];
        if let Some(p) = &p {
            env.push(("MLX_HOSTFILE", p));
        }
        let run = run_worker("init_only", &env, Duration::from_secs(30));
        run.expect(run.code == Some(0), &format!("{p:?}: no crash"));
        run.expect(
            run.stdout.contains("INIT ERROR"),
            &format!("{p:?}: an error"),
        );
        run.expect(
            run.stdout.contains(needle),
            &format!("{p:?}: mentions {needle:?}"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// MLX's Python ring ranks and Rust ranks in one group (Rust on even ranks).
const INTEROP_PY: &str = r#"
import mlx.core as mx
g = mx.distributed.init(strict=True, backend="ring")
rank, size = g.rank(), g.size()
x = mx.arange(10, dtype=mx.float32) * (rank + 1)
y = mx.distributed.all_sum(x, group=g)
mx.eval(y)
z = mx.distributed.all_gather(mx.array([rank * 10 + 1], dtype=mx.int32), group=g)
mx.eval(z)
m = mx.distributed.all_max(mx.array([float(rank), -float(rank)]), group=g)
mx.eval(m)
total = sum(range(1, size + 1))
assert y.tolist() == [float(i * total) for i in range(10)], y
assert z.tolist() == [r * 10 + 1 for r in range(size)], z
assert m.tolist() == [float(size - 1), 0.0], m
print(f"PASS python {rank}/{size}", flush=True)
"#;

#[test]
fn rust_and_python_ranks_in_one_group() {
    let (python, py_env) = oracle::python_env().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd: Vec<OsString> = vec![
        "sh".into(),
        "-c".into(),
        r#"if [ $((MLX_RANK % 2)) = 1 ]; then exec "$INTEROP_PYTHON" -c "$INTEROP_PY"; else exec "$@"; fi"#
            .into(),
        "sh".into(),
    ];
    cmd.extend(worker_command());
    let python = python.to_str().expect("a UTF-8 path").to_string();
    let mut env: Vec<(&str, &str)> = py_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend([
        (SCENARIO, "interop"),
        ("INTEROP_PYTHON", python.as_str()),
        ("INTEROP_PY", INTEROP_PY),
    ]);
    let run = launch(
        &["-n", "3", "-p", "0", "--timeout", RUN_LIMIT_S],
        &cmd,
        &env,
    );
    run.expect(run.code == Some(0), "the mixed group runs");
    for (r, line) in [
        (0, "PASS interop 0/3"),
        (1, "PASS python 1/3"),
        (2, "PASS interop 2/3"),
    ] {
        run.expect(
            run.printed(r, line),
            &format!("rank {r} did not print {line:?}"),
        );
    }
}

/// What the launcher does besides starting ranks: one-line errors for bad arguments, the
/// environment it sets, output prefixes, exit codes, the time limit.
#[test]
fn launcher_arguments_and_environment() {
    let dir = scratch("launcher");
    let bad_json = hostfile(&dir, "bad.json", "[{\"ssh\": ");
    let mpi = hostfile(
        &dir,
        "mpi.json",
        r#"{"backend": "mpi", "hosts": [{"ssh": "127.0.0.1"}]}"#,
    );
    let remote = hostfile(
        &dir,
        "remote.json",
        r#"[{"ssh": "box", "ips": ["10.1.2.3"]}]"#,
    );
    let (bad_json, mpi, remote) = (
        bad_json.to_str().unwrap(),
        mpi.to_str().unwrap(),
        remote.to_str().unwrap(),
    );
    let true_cmd: Vec<OsString> = vec!["true".into()];
    let usage: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-n", "0"], "--repeat-hosts"),
        (
            vec!["--hostfile", "/no/such/hosts.json"],
            "cannot read the hostfile",
        ),
        (vec!["--hostfile", bad_json], "bad hostfile"),
        (vec!["--hostfile", mpi], "\"mpi\" backend"),
        (
            vec!["--hostfile", remote, "-p", "0", "-n", "2"],
            "every host is local",
        ),
        (vec!["--hosts", "box1,box2"], "needs IP addresses"),
        (vec!["--hosts", "127.0.0.1,", "-n", "2"], "empty host name"),
        (vec!["-n", "2", "-p", "65535"], "run past 65535"),
        (vec!["--env", "NOT-A-KEY=1"], "KEY=VALUE"),
        (vec!["--timeout", "-1"], "--timeout"),
        (vec!["--backend", "mpi"], "--backend"),
        (vec!["--no-such-flag"], "--no-such-flag"),
        (
            vec!["--hosts", "127.0.0.1", "--hostfile", mpi],
            "--hostfile",
        ),
    ];
    for (args, needle) in usage {
        let run = launch(&args, &true_cmd, &[]);
        run.expect(run.code == Some(2), &format!("{args:?}: exit code 2"));
        let lines: Vec<&str> = run.stderr.lines().collect();
        run.expect(
            lines.len() == 1
                && lines[0].starts_with("mlx-launch: error: ")
                && lines[0].contains(needle),
            &format!("{args:?}: one error line mentioning {needle:?}"),
        );
    }
    // No command at all.
    let run = launch(&["-n", "2"], &[], &[]);
    run.expect(
        run.code == Some(2) && run.stderr.lines().count() == 1,
        "no command: one line",
    );
    // A command that does not exist.
    let run = launch(&["-n", "2", "-p", "0"], &["/no/such/program".into()], &[]);
    run.expect(run.code == Some(127), "command not found: 127");

    // The environment of ring ranks, prefixes on stdout and stderr, and --env.
    let sh = |script: &str| -> Vec<OsString> { vec!["sh".into(), "-c".into(), script.into()] };
    let run = launch(
        &["-n", "2", "-p", "0", "--env", "EXTRA=x y"],
        &sh(r#"echo "rank=$MLX_RANK extra=$EXTRA"; cat "$MLX_HOSTFILE"; echo; echo err >&2"#),
        &[],
    );
    run.expect(run.code == Some(0), "ring env run");
    for r in 0..2 {
        run.expect(
            run.stdout.contains(&format!("[{r}] rank={r} extra=x y")),
            "rank and --env",
        );
        run.expect(run.stderr.contains(&format!("[{r}] err")), "stderr prefix");
    }
    let hosts_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("[0] [["))
        .unwrap_or("");
    let parsed: Vec<Vec<String>> = serde_json::from_str(&hosts_line[4..]).unwrap_or_default();
    run.expect(
        parsed.len() == 2
            && parsed
                .iter()
                .all(|h| h.len() == 1 && h[0].starts_with("127.0.0.1:")),
        "MLX_HOSTFILE holds one 127.0.0.1:port per rank",
    );
    // Each local rank has its own temporary folder (MLX's CPU kernel cache lives there),
    // unless --env sets TMPDIR.
    let run = launch(&["-n", "2", "-p", "0"], &sh(r#"echo "tmp=$TMPDIR""#), &[]);
    run.expect(run.code == Some(0), "TMPDIR run");
    for r in 0..2 {
        let want = std::env::temp_dir().join(format!("mlx-launch-rank{r}"));
        run.expect(
            run.stdout
                .contains(&format!("[{r}] tmp={}", want.display()))
                && want.is_dir(),
            &format!("rank {r}'s own TMPDIR"),
        );
    }
    let run = launch(
        &["-n", "2", "-p", "0", "--env", "TMPDIR=/given"],
        &sh(r#"echo "tmp=$TMPDIR""#),
        &[],
    );
    run.expect(
        run.stdout.contains("[0] tmp=/given") && run.stdout.contains("[1] tmp=/given"),
        "--env TMPDIR kept",
    );
    // NCCL's variables (nothing started on a GPU: the command only prints them).
    let run = launch(
        &["-n", "2", "--backend", "nccl", "--nccl-port", "23456"],
        &sh(r#"echo "$MLX_RANK $MLX_WORLD_SIZE $NCCL_HOST_IP $NCCL_PORT $CUDA_VISIBLE_DEVICES""#),
        &[],
    );
    run.expect(run.code == Some(0), "nccl env run");
    run.expect(
        run.stdout.contains("[0] 0 2 127.0.0.1 23456 0"),
        "rank 0's NCCL env",
    );
    run.expect(
        run.stdout.contains("[1] 1 2 127.0.0.1 23456 1"),
        "rank 1's NCCL env",
    );
    // One process: a group of one (MLX_RANK only, no hostfile).
    launch_workers(1, "alone").expect_all_pass("alone", 1);
    // The time limit.
    let run = launch(
        &["-n", "2", "-p", "0", "--timeout", "0.5"],
        &sh("sleep 30"),
        &[],
    );
    run.expect(run.code == Some(124), "timeout: 124");
    run.expect(run.took < Duration::from_secs(10), "timeout: stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process started without a launcher is a group of one: collectives return their
/// input, point-to-point ops and split fail, strict inits of unconfigured backends fail.
#[test]
fn one_process_is_a_group_of_one() {
    assert!(is_available(Backend::Ring) && is_available(Backend::Any));
    if mlx_rs::linked_backend() == "cpu" {
        for b in [Backend::Mpi, Backend::Nccl, Backend::Jaccl] {
            assert!(!is_available(b), "{b}");
        }
    }
    assert_eq!("ring".parse::<Backend>().unwrap(), Backend::Ring);
    assert!("tcp".parse::<Backend>().is_err());

    if std::env::var_os("MLX_RANK").is_some() {
        return; // run under a launcher: not alone
    }
    let g = Group::init(Backend::Any, false).unwrap();
    assert_eq!((g.rank(), g.size(), g.backend()), (0, 1, None));
    let x = Array::from_slice(&[1.0f32, -2.0, 3.0, 4.0], &[2, 2]).unwrap();
    for y in [
        dist::all_sum(&x, Some(&g)),
        dist::all_max(&x, Some(&g)),
        dist::all_min(&x, None),
        dist::all_gather(&x, Some(&g)),
        dist::sum_scatter(&x, Some(&g)),
    ] {
        assert_eq!(
            y.unwrap().to_vec::<f32>().unwrap(),
            vec![1.0, -2.0, 3.0, 4.0]
        );
    }
    let msg = |r: mlx_rs::Result<Array>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg(dist::send(&x, 0, Some(&g))).contains("singleton"));
    assert!(msg(dist::recv(&[2], Dtype::Float32, 0, None)).contains("singleton"));
    assert!(msg(dist::recv_like(&x, 0, Some(&g))).contains("singleton"));
    assert!(g.split(0, -1).is_err());
    // Strict inits fail, also after a non-strict one of the same backend.
    assert!(Group::init(Backend::Ring, true).is_err());
    assert_eq!(Group::init(Backend::Ring, false).unwrap().size(), 1);
    let e = Group::init(Backend::Ring, true).unwrap_err().to_string();
    assert!(e.contains("[ring]"), "{e}");
    assert!(Group::init(Backend::Mpi, true).is_err() || is_available(Backend::Mpi));
    assert!(Group::init(Backend::Nccl, true).is_err() || is_available(Backend::Nccl));
    assert!(format!("{g:?}").contains("size: 1"));
}
