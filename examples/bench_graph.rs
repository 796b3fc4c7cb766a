//! The cost of building and evaluating graphs of many small ops: Rust (`mlx-rs`) against
//! MLX's own C++ API and Python MLX, in the same run, on the same MLX library.
//!
//! For each chain length N and shape it builds the chain
//! `x -> x*a -> x+b -> x^2 -> sqrt(x) -> x*a …` (N element-wise ops), then evaluates it,
//! timing the two phases separately (warm-up runs first, then timed runs).
//! `benches/peer_graph.py` does the same with `mlx.core`, and `benches/peer_graph.cpp` with
//! MLX's C++ API (compiled here with `--cxx`, against the headers and library that
//! `mlx-sys` links), each run as a subprocess. The C++ side is the floor: what MLX itself
//! costs, to which a binding adds its own. The sides take turns in several rounds (Rust,
//! C++, Python, Rust, …) so that load from other processes falls on all; each reported
//! median is over all rounds' samples.
//!
//! ```text
//! cargo run --release --example bench_graph -- [--python PATH] [--peer SCRIPT]
//!     [--cxx COMPILER|none] [--rounds R] [--reps K] [--warmup W] [--lengths 10,100,1000]
//!     [--shapes 16,256x256] [--device cpu|gpu]
//! ```

use mlx_rs::{Array, Device, DeviceType, Dtype};
use std::process::Command;
use std::time::Instant;

const USAGE: &str = "usage: bench_graph [--python PATH] [--peer SCRIPT] \
    [--cxx COMPILER|none] [--rounds R] [--reps K] [--warmup W] [--lengths 10,100,1000] \
    [--shapes 16,256x256] [--device cpu|gpu]\n\
    K timed runs (after W warm-up runs) per workload, side and round. --cxx (default c++) \
    compiles benches/peer_graph.cpp for the C++ column; none leaves it out.";

struct Options {
    python: String,
    peer: String,
    cxx: Option<String>,
    rounds: usize,
    reps: usize,
    warmup: usize,
    lengths: Vec<usize>,
    shapes: Vec<Vec<i32>>,
    device: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        python: "python3".into(),
        peer: concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer_graph.py").into(),
        cxx: Some("c++".into()),
        rounds: 3,
        reps: 11,
        warmup: 3,
        lengths: vec![10, 100, 1000],
        shapes: vec![vec![16], vec![256, 256]],
        device: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let bad = |e: std::num::ParseIntError| format!("{flag}: {e}");
        match flag.as_str() {
            "--python" => o.python = value()?,
            "--peer" => o.peer = value()?,
            "--cxx" => o.cxx = Some(value()?).filter(|c| c != "none"),
            "--rounds" => o.rounds = value()?.parse().map_err(bad)?,
            "--reps" => o.reps = value()?.parse().map_err(bad)?,
            "--warmup" => o.warmup = value()?.parse().map_err(bad)?,
            "--lengths" => {
                o.lengths = value()?
                    .split(',')
                    .map(|v| v.parse().map_err(bad))
                    .collect::<Result<_, _>>()?
            }
            "--shapes" => {
                o.shapes = value()?
                    .split(',')
                    .map(|s| s.split('x').map(|d| d.parse().map_err(bad)).collect())
                    .collect::<Result<_, _>>()?
            }
            "--device" => o.device = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.reps == 0 || o.rounds == 0 {
        return Err("--reps and --rounds must be at least 1".into());
    }
    Ok(o)
}

/// The chain of `n` element-wise ops.
fn chain(x0: &Array, n: usize, a: &Array, b: &Array) -> mlx_rs::Result<Array> {
    let mut x = x0.clone();
    for i in 0..n {
        x = match i % 4 {
            0 => x.multiply(a)?,
            1 => x.add(b)?,
            2 => x.square()?,
            _ => x.sqrt()?,
        };
    }
    Ok(x)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The timed samples of one workload, in µs.
struct Row {
    n: usize,
    shape: Vec<i32>,
    build: Vec<f64>,
    eval: Vec<f64>,
}

impl Row {
    fn absorb(&mut self, other: Row) {
        self.build.extend(other.build);
        self.eval.extend(other.eval);
    }
}

/// Times `reps` builds and evaluations of the chain (after `warmup` untimed ones).
fn measure(n: usize, shape: &[i32], reps: usize, warmup: usize) -> mlx_rs::Result<Row> {
    let a = Array::scalar(0.999f32);
    let b = Array::scalar(0.001f32);
    let x0 = mlx_rs::ops::ones(shape, Dtype::Float32)?.multiply(&Array::scalar(0.5f32))?;
    mlx_rs::eval(&[&x0, &a, &b])?;
    let mut row = Row {
        n,
        shape: shape.to_vec(),
        build: Vec::with_capacity(reps),
        eval: Vec::with_capacity(reps),
    };
    for r in 0..warmup + reps {
        let t0 = Instant::now();
        let y = chain(&x0, n, &a, &b)?;
        let t1 = Instant::now();
        mlx_rs::eval(&[&y])?;
        let t2 = Instant::now();
        if r >= warmup {
            row.build.push((t1 - t0).as_secs_f64() * 1e6);
            row.eval.push((t2 - t1).as_secs_f64() * 1e6);
        }
    }
    Ok(row)
}

/// One round of the Rust side over every workload, on `device` if given (else on the
/// default stream, as the Python side).
fn rust_round(o: &Options, device: Option<&Device>) -> Result<Vec<Row>, String> {
    let all = || -> mlx_rs::Result<Vec<Row>> {
        let mut rows = Vec::new();
        for shape in &o.shapes {
            for &n in &o.lengths {
                rows.push(measure(n, shape, o.reps, o.warmup)?);
            }
        }
        Ok(rows)
    };
    match device {
        Some(d) => mlx_rs::with_device(d, all).and_then(|r| r),
        None => all(),
    }
    .map_err(|e| e.to_string())
}

struct Peer {
    version: String,
    device: String,
    rows: Vec<Row>,
}

/// The arguments both peers take: the workloads of this run.
fn peer_args(o: &Options) -> Vec<String> {
    let list = |v: Vec<String>| v.join(",");
    let shapes = list(
        o.shapes
            .iter()
            .map(|s| {
                s.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            })
            .collect(),
    );
    let mut args = vec![
        "--reps".into(),
        o.reps.to_string(),
        "--warmup".into(),
        o.warmup.to_string(),
        "--lengths".into(),
        list(o.lengths.iter().map(|n| n.to_string()).collect()),
        "--shapes".into(),
        shapes,
    ];
    if let Some(d) = &o.device {
        args.extend(["--device".into(), d.clone()]);
    }
    args
}

/// Compiles `benches/peer_graph.cpp` with `cxx` against the MLX headers and library that
/// `mlx-sys` links; returns the program's path.
fn compile_cpp_peer(cxx: &str) -> Result<std::path::PathBuf, String> {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer_graph.cpp");
    let dir = std::env::temp_dir().join(format!("bench_graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let exe = dir.join("peer_graph");
    let out = Command::new(cxx)
        .args(["-O2", "-std=c++20", "-I", mlx_sys::MLX_INCLUDE_DIR, source, "-o"])
        .arg(&exe)
        .args(["-L", mlx_sys::MLX_LIBDIR, "-lmlx"])
        .arg(format!("-Wl,-rpath,{}", mlx_sys::MLX_LIBDIR))
        .output()
        .map_err(|e| format!("cannot run the C++ compiler {cxx} ({e}); pass --cxx none to leave the C++ column out"))?;
    if !out.status.success() {
        return Err(format!(
            "{cxx} could not compile {source} ({}); pass --cxx none to leave the C++ \
             column out:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(exe)
}

/// One round of a peer: runs `program` (the Python script or the C++ program) with this
/// run's workloads and reads its JSON.
fn peer_round(o: &Options, mut cmd: Command, what: &str) -> Result<Peer, String> {
    let out = cmd
        .args(peer_args(o))
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        let text = String::from_utf8_lossy(&out.stdout);
        format!("the output of {what} is not JSON ({e}): {text}")
    })?;
    let samples = |r: &serde_json::Value, k: &str| -> Result<Vec<f64>, String> {
        r[k].as_array()
            .ok_or(format!("{what}: a result lacks {k}"))?
            .iter()
            .map(|x| x.as_f64().ok_or(format!("{what}: {k} holds a non-number")))
            .collect()
    };
    let rows = v["results"]
        .as_array()
        .ok_or(format!("the output of {what} lacks results"))?
        .iter()
        .map(|r| {
            Ok(Row {
                n: r["n"].as_u64().ok_or(format!("{what}: a result lacks n"))? as usize,
                shape: r["shape"]
                    .as_array()
                    .ok_or(format!("{what}: a result lacks shape"))?
                    .iter()
                    .map(|d| d.as_i64().unwrap_or(-1) as i32)
                    .collect(),
                build: samples(r, "build_samples")?,
                eval: samples(r, "eval_samples")?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Peer {
        version: v["mlx_version"].as_str().unwrap_or("?").to_string(),
        device: v["device"].as_str().unwrap_or("?").to_string(),
        rows,
    })
}

/// Adds a round's samples to those of the earlier rounds.
fn absorb(acc: &mut Option<Peer>, round: Peer) {
    match acc {
        None => *acc = Some(round),
        Some(p) => p
            .rows
            .iter_mut()
            .zip(round.rows)
            .for_each(|(acc, r)| acc.absorb(r)),
    }
}

/// The peer's median of `phase` for the workload of `r`.
fn peer_median(peer: &Peer, r: &Row, build: bool) -> Result<f64, String> {
    let p = peer
        .rows
        .iter()
        .find(|p| p.n == r.n && p.shape == r.shape)
        .ok_or(format!("a peer has no result for N={} {:?}", r.n, r.shape))?;
    Ok(median(if build { &p.build } else { &p.eval }))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn run() -> Result<(), String> {
    let o = parse_args()?;
    let device = match o.device.as_deref() {
        None => None,
        Some("cpu") => Some(Device::cpu()),
        Some("gpu") => Some(Device::new(DeviceType::Gpu, 0)),
        Some(d) => return Err(format!("unknown device {d}")),
    };
    let shown = match &device {
        Some(d) => d.to_string(),
        None => Device::default_device()
            .map_err(|e| e.to_string())?
            .to_string(),
    };
    let cpp = o.cxx.as_deref().map(compile_cpp_peer).transpose()?;
    let mut ours: Vec<Row> = Vec::new();
    let (mut python, mut cxx) = (None, None);
    for _ in 0..o.rounds {
        let round = rust_round(&o, device.as_ref())?;
        if ours.is_empty() {
            ours = round;
        } else {
            ours.iter_mut()
                .zip(round)
                .for_each(|(acc, r)| acc.absorb(r));
        }
        if let Some(exe) = &cpp {
            let round = peer_round(&o, Command::new(exe), "the C++ peer")?;
            absorb(&mut cxx, round);
        }
        let mut cmd = Command::new(&o.python);
        cmd.arg(&o.peer);
        let round = peer_round(&o, cmd, &format!("{} {}", o.python, o.peer))?;
        absorb(&mut python, round);
    }
    if let Some(exe) = &cpp {
        let _ = std::fs::remove_dir_all(exe.parent().unwrap_or(exe));
    }
    let python = python.ok_or("no rounds ran")?;

    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {} ({}, {threads} threads)",
        cpu_model(),
        std::env::consts::ARCH
    );
    println!(
        "MLX: Rust side {} ({} backend, {shown}); Python side {} ({}){}",
        mlx_rs::version(),
        mlx_rs::backend(),
        python.version,
        python.device,
        match &cxx {
            Some(c) => format!("; C++ side {} ({})", c.version, c.device),
            None => String::new(),
        }
    );
    println!(
        "median of {} rounds × {} timed runs per side (each after {} warm-up runs); \
         µs per whole chain\n",
        o.rounds, o.reps, o.warmup
    );
    match &cxx {
        Some(_) => {
            println!(
                "| workload | phase | ours µs | C++ µs | Python µs | ours/C++ | ours/Python |"
            );
            println!("|---|---|---:|---:|---:|---:|---:|");
        }
        None => {
            println!("| workload | phase | ours µs | Python µs | ours/Python |");
            println!("|---|---|---:|---:|---:|");
        }
    }
    for r in &ours {
        let shape = r
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("×");
        for (phase, build) in [("build", true), ("eval", false)] {
            let a = median(if build { &r.build } else { &r.eval });
            let p = peer_median(&python, r, build)?;
            match &cxx {
                Some(c) => {
                    let c = peer_median(c, r, build)?;
                    println!(
                        "| {} ops on [{shape}] | {phase} | {a:.1} | {c:.1} | {p:.1} | {:.2} | {:.2} |",
                        r.n,
                        a / c,
                        a / p
                    );
                }
                None => println!(
                    "| {} ops on [{shape}] | {phase} | {a:.1} | {p:.1} | {:.2} |",
                    r.n,
                    a / p
                ),
            }
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
