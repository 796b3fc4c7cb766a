//! Runs the ranks of a ring group as local processes, for the tensor-parallel tests of the
//! model crates (which include this file): what `mlx-launch -n N` does, without needing
//! the launcher's binary in the model crate's tests.
#![allow(dead_code)] // each test binary uses its part

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Starts `n` ranks of a ring group on local ports, each `command(rank)` with the rank's
/// `MLX_RANK` and `MLX_HOSTFILE` (written in `dir`); waits for them (killed after
/// `limit`) and returns their outputs and the time they took.
pub fn spawn_ranks(
    n: usize,
    dir: &Path,
    limit: Duration,
    command: impl Fn(usize) -> Command,
) -> (Vec<Output>, Duration) {
    use std::process::Stdio;
    let ports: Vec<u16> = {
        let ls: Vec<_> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
    };
    let hosts: Vec<String> = ports
        .iter()
        .map(|p| format!("[\"127.0.0.1:{p}\"]"))
        .collect();
    let hostfile = dir.join("hosts.json");
    std::fs::write(&hostfile, format!("[{}]", hosts.join(", "))).unwrap();
    let mut children: Vec<_> = (0..n)
        .map(|r| {
            // A temporary folder per rank: MLX's CPU backend writes the kernels it compiles
            // to a cache under the temporary folder, and two processes compiling the same
            // kernel at once can load the other's half-written library (seen in CI:
            // "undefined symbol" from `Compile::eval_cpu`).
            let tmp = dir.join(format!("tmp-rank{r}"));
            std::fs::create_dir_all(&tmp).unwrap();
            command(r)
                .env("TMPDIR", &tmp)
                .env("MLX_RANK", r.to_string())
                .env("MLX_HOSTFILE", &hostfile)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let start = std::time::Instant::now();
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        if start.elapsed() > limit {
            for c in &mut children {
                let _ = c.kill();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    (outs, start.elapsed())
}

/// [`spawn_ranks`], asserting that every rank succeeded.
pub fn run_ranks(
    n: usize,
    dir: &Path,
    limit: Duration,
    command: impl Fn(usize) -> Command,
) -> Vec<Output> {
    let (outs, took) = spawn_ranks(n, dir, limit, command);
    for (r, out) in outs.iter().enumerate() {
        assert!(
            out.status.success(),
            "rank {r} of {n} failed ({:?} after {:.1?})\n--- stdout\n{}--- stderr\n{}",
            out.status,
            took,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    outs
}

/// This process's ring group, as a rank started by [`spawn_ranks`] (MLX keeps the group:
/// each call returns the same one); waits at most `limit` for the other ranks.
pub fn ring_group(limit: Duration) -> mlx_rs::distributed::Group {
    use mlx_rs::distributed::{Backend, Group, InitOptions};
    Group::init_with(&InitOptions {
        backend: Backend::Ring,
        strict: true,
        timeout: Some(limit),
    })
    .unwrap()
}
