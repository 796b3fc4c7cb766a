//! Runs the ranks of a ring group as local processes, for the tensor-parallel tests of the
//! model crates (which include this file): what `mlx-launch -n N` does, without needing
//! the launcher's binary in the model crate's tests.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Starts `n` ranks of a ring group on local ports, each `command(rank)` with the rank's
/// `MLX_RANK` and `MLX_HOSTFILE`; waits for them (killed after `limit`), asserts that
/// all succeeded and returns their outputs.
pub fn run_ranks(
    n: usize,
    dir: &Path,
    limit: Duration,
    command: impl Fn(usize) -> Command,
) -> Vec<Output> {
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
            command(r)
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
    for (r, out) in outs.iter().enumerate() {
        assert!(
            out.status.success(),
            "rank {r} of {n} failed ({:?} after {:.1?})\n--- stdout\n{}--- stderr\n{}",
            out.status,
            start.elapsed(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    outs
}
