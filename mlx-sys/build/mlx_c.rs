//! The mlx-c source: `MLX_C_SRC_DIR`, or the pinned crates.io package that carries it,
//! downloaded by cargo itself and checked against pinned checksums.

use crate::{fail, pins, python, Step};
use sha2::{Digest, Sha256};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Returns the root of an mlx-c 0.7.0 source tree (the folder with `CMakeLists.txt`).
pub fn locate(out_dir: &Path, manifest_dir: &Path) -> Step<PathBuf> {
    if let Some(dir) = env::var_os("MLX_C_SRC_DIR") {
        let dir = PathBuf::from(dir);
        if !dir.join("mlx").join("c").join("mlx.h").exists() || !dir.join("CMakeLists.txt").exists()
        {
            return fail!(
                "mlx-sys: MLX_C_SRC_DIR={} is not an mlx-c checkout (no mlx/c/mlx.h or CMakeLists.txt)",
                dir.display()
            );
        }
        if tree_sha256(&dir)? != pins::MLX_C_TREE_SHA256 {
            println!(
                "cargo:warning=MLX_C_SRC_DIR={} differs from mlx-c {}; the bindings were generated from {}",
                dir.display(),
                pins::MLX_C_VERSION,
                pins::MLX_C_VERSION
            );
        }
        return Ok(dir);
    }
    let src = fetch_with_cargo(out_dir, manifest_dir)?;
    let got = tree_sha256(&src)?;
    if got != pins::MLX_C_TREE_SHA256 {
        return fail!(
            "mlx-sys: the mlx-c source at {} does not match its pinned checksum (got {got}); \
             the cargo registry copy may be damaged: remove that folder and build again",
            src.display()
        );
    }
    Ok(src)
}

/// Has cargo resolve a stub manifest that depends on the pinned crate, which downloads
/// it into cargo's registry (checksum-checked by cargo against the index), honouring
/// offline and vendored-source settings of the project.
fn fetch_with_cargo(out_dir: &Path, manifest_dir: &Path) -> Step<PathBuf> {
    let stub = out_dir.join("mlx-c-fetch");
    fs::create_dir_all(stub.join("src"))?;
    fs::write(
        stub.join("Cargo.toml"),
        format!(
            "[package]\nname = \"mlx-c-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n[lib]\npath = \"src/lib.rs\"\n[dependencies]\n\
             {} = \"={}\"\n[workspace]\n",
            pins::MLX_C_CRATE,
            pins::MLX_C_CRATE_VERSION
        ),
    )?;
    fs::write(stub.join("src").join("lib.rs"), "")?;
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(manifest_dir)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(stub.join("Cargo.toml"));
    if python::offline() {
        cmd.arg("--offline");
    }
    let out = cmd
        .output()
        .map_err(|e| crate::Failure(format!("mlx-sys: could not run cargo ({cargo}): {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return fail!(
            "mlx-sys: cargo could not download the mlx-c {} source (crate {} {}) from \
             crates.io; without network, set MLX_C_SRC_DIR to an mlx-c {} checkout:\n{}",
            pins::MLX_C_VERSION,
            pins::MLX_C_CRATE,
            pins::MLX_C_CRATE_VERSION,
            pins::MLX_C_VERSION,
            err.lines().rev().take(4).collect::<Vec<_>>().join("\n")
        );
    }
    check_lock_checksum(&stub.join("Cargo.lock"))?;
    let meta = String::from_utf8_lossy(&out.stdout);
    let dir_name = format!("{}-{}", pins::MLX_C_CRATE, pins::MLX_C_CRATE_VERSION);
    let crate_dir = meta
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|p| PathBuf::from(p.replace("\\\\", "\\")))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .find(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy() == dir_name)
        })
        .ok_or_else(|| {
            crate::Failure(format!(
                "mlx-sys: cargo resolved the stub but did not report {dir_name}"
            ))
        })?;
    let src = crate_dir.join("src").join("mlx-c");
    if !src.join("CMakeLists.txt").exists() {
        return fail!("mlx-sys: {} holds no mlx-c source", crate_dir.display());
    }
    Ok(src)
}

/// The index checksum cargo recorded must be the pinned one.
fn check_lock_checksum(lock: &Path) -> Step<()> {
    let text = fs::read_to_string(lock)?;
    let wanted_head = format!(
        "name = \"{}\"\nversion = \"{}\"",
        pins::MLX_C_CRATE,
        pins::MLX_C_CRATE_VERSION
    );
    let block = text
        .split("[[package]]")
        .find(|b| b.trim_start().starts_with(&wanted_head))
        .ok_or_else(|| {
            crate::Failure("mlx-sys: the stub's Cargo.lock lacks mlx-c's crate".into())
        })?;
    let checksum = block
        .lines()
        .find_map(|l| l.strip_prefix("checksum = \""))
        .map(|c| c.trim_end_matches('"'))
        .unwrap_or("");
    if checksum != pins::MLX_C_CRATE_SHA256 {
        return fail!(
            "mlx-sys: crates.io reports checksum {checksum:?} for {} {}, not the pinned {}; \
             refusing to build from it",
            pins::MLX_C_CRATE,
            pins::MLX_C_CRATE_VERSION,
            pins::MLX_C_CRATE_SHA256
        );
    }
    Ok(())
}

/// sha256 over every file under `root`: sorted relative paths, each followed by its
/// length and bytes.
pub fn tree_sha256(root: &Path) -> Step<String> {
    let mut files = Vec::new();
    collect(root, root, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for rel in &files {
        let bytes = fs::read(root.join(rel))?;
        h.update(rel.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Step<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .map_err(|e| crate::Failure(e.to_string()))?;
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}
