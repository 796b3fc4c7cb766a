//! `mlx-launch`: starts an MLX program as several processes that form one distributed
//! group (ring or NCCL backend), on this machine or on several over ssh, as Python's
//! `mlx.launch` does. See README.md.

mod hosts;
mod run;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use hosts::Host;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The backends mlx-launch can set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LaunchBackend {
    /// TCP around a ring of processes: MLX_RANK and MLX_HOSTFILE.
    Ring,
    /// NVIDIA NCCL: MLX_RANK, MLX_WORLD_SIZE, NCCL_HOST_IP, NCCL_PORT.
    Nccl,
}

/// Start an MLX program as N processes of one distributed group.
///
/// Every process gets the environment MLX reads to join the group (MLX_RANK, and for ring
/// MLX_HOSTFILE, for NCCL MLX_WORLD_SIZE, NCCL_HOST_IP and NCCL_PORT). Output lines are
/// prefixed with `[rank] `. When one process fails, the others are stopped and
/// mlx-launch exits with the failing process's code.
#[derive(Debug, Parser)]
#[command(name = "mlx-launch", version, about, long_about)]
struct Cli {
    /// Processes per host (on this machine: how many processes to start).
    #[arg(short = 'n', long = "repeat-hosts", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    n: u32,

    /// Comma-separated hosts to run on (IP addresses for the ring backend);
    /// 127.0.0.1 and localhost run here, others over ssh.
    #[arg(
        long,
        value_name = "HOSTS",
        default_value = "127.0.0.1",
        conflicts_with = "hostfile"
    )]
    hosts: String,

    /// A JSON hostfile in mlx.launch's format: [{"ssh": NAME, "ips": [IP, ...]}, ...],
    /// or {"backend": ..., "envs": ["K=V", ...], "hosts": [...]}.
    #[arg(long, value_name = "FILE")]
    hostfile: Option<PathBuf>,

    /// The backend (default: the hostfile's, else nccl when MLX has a CUDA GPU, else ring).
    #[arg(long, value_enum)]
    backend: Option<LaunchBackend>,

    /// Ring: the first port to listen on, counting up by one per rank and IP; 0 picks free
    /// ports (only when every host is local).
    #[arg(short = 'p', long, value_name = "PORT", default_value_t = 32323)]
    starting_port: u16,

    /// Ring: connections between neighbours per IP.
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    connections_per_ip: u32,

    /// NCCL: the port of rank 0 that the others connect to.
    #[arg(long, value_name = "PORT", default_value_t = 12345)]
    nccl_port: u16,

    /// Sets an environment variable on every process (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// Working directory of every process.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,

    /// Stops every process after this many seconds (exit code 124).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    timeout: Option<f64>,

    /// Prints what is started (and MLX_RING_VERBOSE / NCCL_DEBUG=INFO for MLX).
    #[arg(long)]
    verbose: bool,

    /// The program to run and its arguments (after `--`).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

/// What the ranks are, where they run and what they get.
fn plan(cli: &Cli) -> Result<(Vec<run::Rank>, run::Options)> {
    let (hosts, file_backend, file_envs) = match &cli.hostfile {
        Some(path) => {
            let f = hosts::read_hostfile(path)?;
            (f.hosts, f.backend, f.envs)
        }
        None => (hosts::hosts_from_list(&cli.hosts)?, None, Vec::new()),
    };
    let backend = match (cli.backend, file_backend.as_deref()) {
        (Some(b), _) => b,
        (None, Some("ring")) => LaunchBackend::Ring,
        (None, Some("nccl")) => LaunchBackend::Nccl,
        (None, Some(other)) => bail!(
            "the hostfile asks for the {other:?} backend; mlx-launch starts ring and nccl \
             groups (use mpirun for mpi, Python's mlx.launch for jaccl)"
        ),
        (None, None) => default_backend(),
    };
    let timeout = match cli.timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some(Duration::from_secs_f64(t)),
        Some(t) => bail!("--timeout must be a positive number of seconds, got {t}"),
    };
    let mut env = Vec::new();
    for e in file_envs.iter().chain(&cli.env) {
        env.push(hosts::parse_env(e)?);
    }
    if let Some(d) = &cli.cwd {
        if hosts.iter().all(Host::is_local) && !d.is_dir() {
            bail!("--cwd {} is not a directory", d.display());
        }
    }

    // Each host repeated N times, in order: rank = host index * N + local index.
    let ranks: Vec<Host> = hosts
        .iter()
        .flat_map(|h| std::iter::repeat_n(h.clone(), cli.n as usize))
        .collect();
    let size = ranks.len();
    let mut files = Vec::new();
    match backend {
        LaunchBackend::Ring => {
            if cli.verbose {
                env.push(("MLX_RING_VERBOSE".into(), "1".into()));
            }
            // One process alone is a group of one: MLX_RANK only, as MLX expects.
            if size > 1 {
                let addresses =
                    hosts::ring_addresses(&ranks, cli.starting_port, cli.connections_per_ip)?;
                let json =
                    serde_json::to_string(&addresses).context("cannot write the hostfile")?;
                files.push(("MLX_HOSTFILE".to_string(), json));
            }
        }
        LaunchBackend::Nccl => {
            let Some(master) = hosts[0].ips.first() else {
                bail!(
                    "the nccl backend needs the IP address of rank 0's host ({:?}) that the \
                     other hosts can reach (give an IP in --hosts or \"ips\" in the hostfile)",
                    hosts[0].ssh
                );
            };
            if cli.verbose {
                env.push(("NCCL_DEBUG".into(), "INFO".into()));
            }
            env.push(("NCCL_HOST_IP".into(), master.clone()));
            env.push(("NCCL_PORT".into(), cli.nccl_port.to_string()));
            env.push(("MLX_WORLD_SIZE".into(), size.to_string()));
        }
    }
    let ranks = ranks
        .into_iter()
        .enumerate()
        .map(|(rank, host)| {
            let mut env = env.clone();
            if backend == LaunchBackend::Nccl {
                let gpu = rank % cli.n as usize;
                env.push(("CUDA_VISIBLE_DEVICES".into(), gpu.to_string()));
            }
            run::Rank {
                rank,
                host,
                env,
                files: files.clone(),
            }
        })
        .collect();
    let options = run::Options {
        command: cli.command.clone(),
        cwd: cli.cwd.clone(),
        timeout,
        verbose: cli.verbose,
    };
    Ok((ranks, options))
}

/// As mlx.launch: NCCL when this MLX has a CUDA GPU and NCCL, else ring.
fn default_backend() -> LaunchBackend {
    use mlx_rs::distributed::{is_available, Backend};
    let cuda = mlx_rs::backend() == "cuda";
    if cuda && is_available(Backend::Nccl) {
        LaunchBackend::Nccl
    } else {
        LaunchBackend::Ring
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: clap's message up to its tips and usage block.
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("mlx-launch: error: {message} (see mlx-launch --help)");
            return ExitCode::from(2);
        }
    };
    let (ranks, options) = match plan(&cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mlx-launch: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run::launch(&ranks, &options) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mlx-launch: error: {e:#}");
            let not_found = e
                .downcast_ref::<std::io::Error>()
                .or_else(|| e.root_cause().downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound);
            ExitCode::from(if not_found { 127 } else { 1 })
        }
    }
}
