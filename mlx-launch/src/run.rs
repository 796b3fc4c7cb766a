//! Starting the ranks, forwarding their output, and stopping them all when one fails.

use crate::hosts::Host;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One process to start.
pub struct Rank {
    /// Its rank (`MLX_RANK`).
    pub rank: usize,
    /// Where it runs.
    pub host: Host,
    /// Variables to set, besides `MLX_RANK`.
    pub env: Vec<(String, String)>,
    /// Files to make: the variable that names the file, and its content.
    pub files: Vec<(String, String)>,
}

/// How to run the ranks.
pub struct Options {
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// The working directory of every rank (default: the launcher's, where it exists).
    pub cwd: Option<PathBuf>,
    /// Stop every rank after this long.
    pub timeout: Option<Duration>,
    /// Print what is started.
    pub verbose: bool,
}

/// How long stopped ranks get to exit after the first signal before they are killed.
const GRACE: Duration = Duration::from_secs(3);

/// The last terminating signal the launcher received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// Catches SIGINT, SIGTERM and SIGHUP, so that the ranks (each in its own process group)
/// are stopped rather than left running.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// Sends `sig` to the process group of `child` (its own group, led by it).
fn signal_group(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on a process group we created; errors (already gone) are fine.
        unsafe { libc::kill(-pid, sig) };
    }
}

/// Temporary files for local ranks, removed when dropped.
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The temporary folder of rank `rank`, under the usual one (`$TMPDIR` or `/tmp`). MLX
/// compiles CPU kernels into a cache under the temporary folder, and a process that finds
/// a kernel library another process is still writing loads a half-written file ("undefined
/// symbol"); ranks on one machine start together and compile the same kernels, so each
/// rank gets its own cache (kept between runs).
fn rank_tmp_name(rank: usize) -> String {
    format!("mlx-launch-rank{rank}")
}

/// Whether `--env` sets `TMPDIR` for this rank (then it is left as given).
fn sets_tmpdir(r: &Rank) -> bool {
    r.env.iter().any(|(k, _)| k == "TMPDIR")
}

/// The shell script that runs rank `r` on a remote host (over `ssh -tt`).
fn remote_script(r: &Rank, opts: &Options) -> Result<String> {
    let mut script = String::from("stty -echo 2>/dev/null; ");
    let dir = match &opts.cwd {
        Some(d) => Some(d.clone()),
        None => std::env::current_dir().ok(),
    };
    if let Some(d) = dir {
        let d = d.to_str().context("the working directory is not UTF-8")?;
        let q = shell_quote(d);
        if opts.cwd.is_some() {
            script += &format!("cd {q} || exit 1; ");
        } else {
            script += &format!("cd {q} 2>/dev/null; ");
        }
    }
    for (k, v) in &r.env {
        script += &format!("export {k}={}; ", shell_quote(v));
    }
    for (k, content) in &r.files {
        script += &format!(
            "f=$(mktemp) && printf '%s' {} > \"$f\" && export {k}=\"$f\"; ",
            shell_quote(content)
        );
    }
    if !sets_tmpdir(r) {
        script += &format!(
            "export TMPDIR=\"${{TMPDIR:-/tmp}}/{}\"; mkdir -p \"$TMPDIR\"; ",
            rank_tmp_name(r.rank)
        );
    }
    script += &format!("export MLX_RANK={}; exec", r.rank);
    for a in &opts.command {
        let a = a
            .to_str()
            .context("the command is not UTF-8 (needed over ssh)")?;
        script += " ";
        script += &shell_quote(a);
    }
    Ok(script)
}

/// Starts one rank, in its own process group, with its output piped.
fn spawn(r: &Rank, opts: &Options, local_files: &[(String, PathBuf)]) -> Result<Child> {
    let mut cmd = if r.host.is_local() {
        let mut cmd = Command::new(&opts.command[0]);
        cmd.args(&opts.command[1..]);
        cmd.envs(r.env.iter().map(|(k, v)| (k, v)));
        for (k, path) in local_files {
            cmd.env(k, path);
        }
        cmd.env("MLX_RANK", r.rank.to_string());
        if !sets_tmpdir(r) {
            let dir = std::env::temp_dir().join(rank_tmp_name(r.rank));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot make {} for rank {}", dir.display(), r.rank))?;
            cmd.env("TMPDIR", dir);
        }
        if let Some(d) = &opts.cwd {
            cmd.current_dir(d);
        }
        cmd
    } else {
        let mut cmd = Command::new("ssh");
        cmd.args(["-tt", "-o", "LogLevel=QUIET", &r.host.ssh]);
        cmd.arg(remote_script(r, opts)?);
        cmd
    };
    if opts.verbose {
        let where_ = if r.host.is_local() {
            "locally"
        } else {
            &r.host.ssh
        };
        eprintln!("mlx-launch: starting rank {} {where_}: {cmd:?}", r.rank);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.spawn().with_context(|| {
        let what = if r.host.is_local() {
            opts.command[0].to_string_lossy().into_owned()
        } else {
            "ssh".to_string()
        };
        format!("cannot start {what:?} for rank {}", r.rank)
    })
}

/// Copies `from` to stdout or stderr line by line, each line prefixed with `[rank] `.
fn forward(rank: usize, from: impl Read, to_stderr: bool, done: mpsc::Sender<()>) {
    let prefix = format!("[{rank}] ");
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // ssh -tt ends lines with \r\n.
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        let mut out = Vec::with_capacity(prefix.len() + line.len() + 1);
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(&line);
        out.push(b'\n');
        let _ = if to_stderr {
            let mut e = std::io::stderr().lock();
            e.write_all(&out).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&out).and_then(|()| o.flush())
        };
    }
    let _ = done.send(());
}

/// The exit code that stands for `status` (128 + the signal for a killed process).
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => (c & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).min(255) as u8,
        _ => 1,
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".into(),
    }
}

/// Runs every rank to the end and returns the launcher's exit code: 0 when all succeed,
/// else the code of the first rank that failed (124 after `--timeout`, 128 + the signal
/// when the launcher was interrupted).
pub fn launch(ranks: &[Rank], opts: &Options) -> Result<u8> {
    if opts.command.is_empty() {
        bail!("no command to run");
    }
    catch_signals();
    // Files of local ranks: one temporary file per distinct content.
    let mut temp = TempFiles(Vec::new());
    let mut local_files: Vec<Vec<(String, PathBuf)>> = Vec::new();
    let mut made: Vec<(String, PathBuf)> = Vec::new();
    for r in ranks {
        let mut files = Vec::new();
        if r.host.is_local() {
            for (k, content) in &r.files {
                let path = match made.iter().find(|(c, _)| c == content) {
                    Some((_, p)) => p.clone(),
                    None => {
                        let p = std::env::temp_dir().join(format!(
                            "mlx-launch-{}-{}-{}.json",
                            std::process::id(),
                            k.to_lowercase(),
                            made.len()
                        ));
                        std::fs::write(&p, content)
                            .with_context(|| format!("cannot write {}", p.display()))?;
                        temp.0.push(p.clone());
                        made.push((content.clone(), p.clone()));
                        p
                    }
                };
                files.push((k.clone(), path));
            }
        }
        local_files.push(files);
    }

    let (done_tx, done_rx) = mpsc::channel();
    let mut children: Vec<Child> = Vec::new();
    let mut streams = 0;
    for (r, files) in ranks.iter().zip(&local_files) {
        let mut child = match spawn(r, opts, files) {
            Ok(c) => c,
            Err(e) => {
                for c in &mut children {
                    signal_group(c, libc::SIGKILL);
                    let _ = c.wait();
                }
                return Err(e);
            }
        };
        let rank = r.rank;
        if let Some(out) = child.stdout.take() {
            let tx = done_tx.clone();
            std::thread::spawn(move || forward(rank, out, false, tx));
            streams += 1;
        }
        if let Some(err) = child.stderr.take() {
            let tx = done_tx.clone();
            std::thread::spawn(move || forward(rank, err, true, tx));
            streams += 1;
        }
        children.push(child);
    }
    drop(done_tx);

    let start = Instant::now();
    let mut status: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut failure: Option<u8> = None;
    let mut stop_reason: Option<u8> = None;
    let mut stopped_at: Option<Instant> = None;
    let (mut terminated, mut killed) = (false, false);
    loop {
        for (i, child) in children.iter_mut().enumerate() {
            if status[i].is_some() {
                continue;
            }
            if let Some(st) = child.try_wait().context("cannot wait for a rank")? {
                status[i] = Some(st);
                if opts.verbose || (!st.success() && stopped_at.is_none()) {
                    eprintln!("mlx-launch: rank {} {}", ranks[i].rank, describe(st));
                }
                if !st.success() && stopped_at.is_none() {
                    failure = Some(exit_code(st).max(1));
                    stopped_at = Some(Instant::now());
                }
            }
        }
        let running: Vec<usize> = (0..children.len())
            .filter(|&i| status[i].is_none())
            .collect();
        if running.is_empty() {
            break;
        }
        let sig = SIGNAL.swap(0, Ordering::SeqCst);
        if sig != 0 && stop_reason.is_none() {
            eprintln!("mlx-launch: got signal {sig}; stopping all ranks");
            stop_reason = Some((128 + sig).min(255) as u8);
            stopped_at.get_or_insert_with(Instant::now);
            terminated = true;
            for &i in &running {
                signal_group(&children[i], sig);
            }
        }
        if let Some(t) = opts.timeout {
            if stop_reason.is_none() && start.elapsed() >= t {
                eprintln!("mlx-launch: timed out after {t:?}; stopping all ranks");
                stop_reason = Some(124);
                stopped_at.get_or_insert_with(Instant::now);
            }
        }
        if let Some(at) = stopped_at {
            if !terminated {
                terminated = true;
                for &i in &running {
                    signal_group(&children[i], libc::SIGTERM);
                }
            } else if at.elapsed() >= GRACE && !killed {
                killed = true;
                for &i in &running {
                    signal_group(&children[i], libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The output of ranks that left children holding their pipes is not waited for long.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..streams {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    Ok(failure.or(stop_reason).unwrap_or(0))
}
