//! The cost of building and evaluating graphs of many small ops: Rust (`mlx-rs`) against
//! Python MLX, in the same run, on the same MLX library.
//!
//! For each chain length N and shape it builds the chain
//! `x -> x*a -> x+b -> x^2 -> sqrt(x) -> x*a …` (N element-wise ops), then evaluates it,
//! timing the two phases separately (warm-up runs first, then the median of the timed
//! runs). It then runs `benches/peer_graph.py`, which does the same with `mlx.core`, and
//! prints one table.
//!
//! ```text
//! cargo run --release --example bench_graph -- [--python PATH] [--peer SCRIPT] [--reps K] [--warmup W]
//!     [--lengths 10,100,1000] [--shapes 16,256x256] [--device cpu|gpu]
//! ```

use mlx_rs::{Array, Device, DeviceType, Dtype};
use std::process::Command;
use std::time::Instant;

struct Options {
    python: String,
    peer: String,
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
        reps: 21,
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
                println!(
                    "usage: bench_graph [--python PATH] [--peer SCRIPT] [--reps K] [--warmup W] \
                     [--lengths 10,100,1000] [--shapes 16,256x256] [--device cpu|gpu]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    if o.reps == 0 {
        return Err("--reps must be at least 1".into());
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Median build and eval times in µs.
fn measure(n: usize, shape: &[i32], reps: usize, warmup: usize) -> mlx_rs::Result<(f64, f64)> {
    let a = Array::scalar(0.999f32);
    let b = Array::scalar(0.001f32);
    let x0 = mlx_rs::ops::ones(shape, Dtype::Float32)?.multiply(&Array::scalar(0.5f32))?;
    mlx_rs::eval(&[&x0, &a, &b])?;
    let (mut builds, mut evals) = (Vec::new(), Vec::new());
    for r in 0..warmup + reps {
        let t0 = Instant::now();
        let y = chain(&x0, n, &a, &b)?;
        let t1 = Instant::now();
        y.eval()?;
        let t2 = Instant::now();
        if r >= warmup {
            builds.push((t1 - t0).as_secs_f64() * 1e6);
            evals.push((t2 - t1).as_secs_f64() * 1e6);
        }
    }
    Ok((median(builds), median(evals)))
}

struct Row {
    n: usize,
    shape: Vec<i32>,
    build: f64,
    eval: f64,
}

struct Peer {
    version: String,
    device: String,
    rows: Vec<Row>,
}

fn run_peer(o: &Options) -> Result<Peer, String> {
    let script = &o.peer;
    let join = |v: Vec<String>| v.join(",");
    let mut cmd = Command::new(&o.python);
    cmd.arg(script)
        .args([
            "--reps",
            &o.reps.to_string(),
            "--warmup",
            &o.warmup.to_string(),
        ])
        .args([
            "--lengths",
            &join(o.lengths.iter().map(|n| n.to_string()).collect()),
        ])
        .args([
            "--shapes",
            &join(
                o.shapes
                    .iter()
                    .map(|s| {
                        s.iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join("x")
                    })
                    .collect(),
            ),
        ]);
    if let Some(d) = &o.device {
        cmd.args(["--device", d]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", o.python))?;
    if !out.status.success() {
        return Err(format!(
            "{} {script} failed ({}):\n{}",
            o.python,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "the peer's output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let field =
        |r: &serde_json::Value, k: &str| r[k].as_f64().ok_or(format!("peer result lacks {k}"));
    let rows = v["results"]
        .as_array()
        .ok_or("peer output lacks results")?
        .iter()
        .map(|r| {
            Ok(Row {
                n: field(r, "n")? as usize,
                shape: r["shape"]
                    .as_array()
                    .ok_or("peer result lacks shape")?
                    .iter()
                    .map(|d| d.as_i64().unwrap_or(-1) as i32)
                    .collect(),
                build: field(r, "build_us")?,
                eval: field(r, "eval_us")?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Peer {
        version: v["mlx_version"].as_str().unwrap_or("?").to_string(),
        device: v["device"].as_str().unwrap_or("?").to_string(),
        rows,
    })
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
        None => Device::default_device().map_err(|e| e.to_string())?,
        Some("cpu") => Device::cpu(),
        Some("gpu") => Device::new(DeviceType::Gpu, 0),
        Some(d) => return Err(format!("unknown device {d}")),
    };
    let mut ours = Vec::new();
    mlx_rs::with_device(&device, || -> mlx_rs::Result<()> {
        for shape in &o.shapes {
            for &n in &o.lengths {
                let (build, eval) = measure(n, shape, o.reps, o.warmup)?;
                ours.push(Row {
                    n,
                    shape: shape.clone(),
                    build,
                    eval,
                });
            }
        }
        Ok(())
    })
    .and_then(|r| r)
    .map_err(|e| e.to_string())?;
    let peer = run_peer(&o)?;

    println!(
        "machine: {} ({}, {} threads)",
        cpu_model(),
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "MLX: Rust side {} ({} backend, device {device}); Python side {} (device {})",
        mlx_rs::version(),
        mlx_rs::backend(),
        peer.version,
        peer.device
    );
    println!(
        "median of {} runs after {} warm-up runs; µs per whole chain\n",
        o.reps, o.warmup
    );
    println!("| workload | phase | ours µs | Python µs | ours/Python |");
    println!("|---|---|---:|---:|---:|");
    for r in &ours {
        let p = peer
            .rows
            .iter()
            .find(|p| p.n == r.n && p.shape == r.shape)
            .ok_or(format!(
                "the peer has no result for N={} {:?}",
                r.n, r.shape
            ))?;
        let shape = r
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("×");
        for (phase, a, b) in [("build", r.build, p.build), ("eval", r.eval, p.eval)] {
            println!(
                "| {} ops on [{shape}] | {phase} | {a:.1} | {b:.1} | {:.2} |",
                r.n,
                a / b
            );
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
