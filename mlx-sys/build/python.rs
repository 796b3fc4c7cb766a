//! Python's pip, the client through which prebuilt MLX and CMake arrive from PyPI.

use crate::{fail, Step};
use std::env;
use std::path::Path;
use std::process::Command;

/// Whether downloads are forbidden (`MLX_SYS_OFFLINE=1` or cargo's `--offline`).
pub fn offline() -> bool {
    let on = |v: &str| matches!(env::var(v).as_deref(), Ok("1" | "true" | "yes"));
    on("MLX_SYS_OFFLINE") || on("CARGO_NET_OFFLINE")
}

/// Finds a Python 3 with pip: `MLX_SYS_PYTHON`, else `python3`, else `python`.
pub fn find() -> Step<String> {
    let candidates: Vec<String> = match env::var("MLX_SYS_PYTHON") {
        Ok(p) => vec![p],
        Err(_) => vec!["python3".into(), "python".into()],
    };
    for py in &candidates {
        let ok = Command::new(py)
            .args(["-m", "pip", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(py.clone());
        }
    }
    fail!(
        "mlx-sys: no Python 3 with pip found (tried {}).\n\
         mlx-sys downloads the prebuilt MLX {} from PyPI with pip. Either install Python 3 \
         with pip (or point MLX_SYS_PYTHON at one), or set MLX_DIR to an existing MLX {} \
         install.",
        candidates.join(", "),
        crate::pins::MLX_VERSION,
        crate::pins::MLX_VERSION
    )
}

/// Runs `python -m pip <args>` quietly, failing with pip's own last lines on error.
pub fn pip(python: &str, args: &[&str], what: &str) -> Step<()> {
    if offline() {
        return fail!(
            "mlx-sys: {what} must be downloaded from PyPI, but downloads are off \
             (MLX_SYS_OFFLINE or cargo --offline). Set MLX_DIR to an MLX {} install, or \
             build once online to fill the cache.",
            crate::pins::MLX_VERSION
        );
    }
    let out = Command::new(python)
        .args(["-m", "pip"])
        .args(args)
        .args(["--disable-pip-version-check", "--no-input", "--quiet"])
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .output()
        .map_err(|e| crate::Failure(format!("mlx-sys: could not run {python}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    fail!(
        "mlx-sys: pip could not fetch {what} from PyPI (no network? set MLX_DIR to an \
         existing MLX {} install to build offline):\n{}",
        crate::pins::MLX_VERSION,
        tail.join("\n")
    )
}

/// Writes a pip requirements file that pins `dist==version` to the given hashes.
pub fn hashed_requirements(dir: &Path, dist: &str, version: &str, sha256: &[&str]) -> Step<String> {
    let mut line = format!("{dist}=={version}");
    for h in sha256 {
        line.push_str(&format!(" --hash=sha256:{h}"));
    }
    let path = dir.join("requirements.txt");
    std::fs::write(&path, line + "\n")?;
    Ok(path.to_string_lossy().into_owned())
}
