//! The download cache shared by every build of every project on this machine.
//!
//! Provisioned things land in `<cache>/<name>` through a temporary folder renamed into
//! place, so concurrent builds (debug and release at once) never see half an install.

use crate::Step;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The cache root: `MLX_SYS_CACHE_DIR`, else the platform's user cache folder.
pub fn root() -> Step<PathBuf> {
    if let Some(dir) = env::var_os("MLX_SYS_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = if let Some(xdg) = env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(xdg)
    } else if let Some(home) = env::var_os("HOME") {
        let home = PathBuf::from(home);
        if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
            home.join("Library").join("Caches")
        } else {
            home.join(".cache")
        }
    } else {
        return crate::fail!(
            "mlx-sys: no cache folder: set MLX_SYS_CACHE_DIR (or HOME) to a writable folder"
        );
    };
    Ok(base.join("mlx-sys"))
}

/// Returns `<cache>/<name>`, calling `fill(tmp)` to create it first if it is missing.
/// `done` names a file that `fill` leaves behind only when it succeeded.
pub fn provide(name: &str, done: &str, fill: impl FnOnce(&Path) -> Step<()>) -> Step<PathBuf> {
    let root = root()?;
    let dest = root.join(name);
    if dest.join(done).exists() {
        return Ok(dest);
    }
    fs::create_dir_all(&root).map_err(|e| {
        crate::Failure(format!(
            "mlx-sys: cannot create the cache folder {}: {e}; set MLX_SYS_CACHE_DIR to a writable folder",
            root.display()
        ))
    })?;
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let filled = fill(&tmp).and_then(|()| {
        if tmp.join(done).exists() {
            Ok(())
        } else {
            crate::fail!("mlx-sys: provisioning {name} left no {done}")
        }
    });
    if let Err(e) = filled {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dest.exists() && !dest.join(done).exists() {
        // A broken earlier attempt: replace it.
        let _ = fs::remove_dir_all(&dest);
    }
    if fs::rename(&tmp, &dest).is_err() {
        // Another build finished first; keep its copy.
        let _ = fs::remove_dir_all(&tmp);
    }
    if dest.join(done).exists() {
        Ok(dest)
    } else {
        crate::fail!("mlx-sys: could not put {name} into {}", root.display())
    }
}
