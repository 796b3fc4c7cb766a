//! CMake: the one on `PATH` (or `CMAKE`), else a pinned copy from PyPI.

use crate::{cache, pins, python, Step};
use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Returns the path of a CMake ≥ 3.16 to run.
pub fn locate() -> Step<PathBuf> {
    if let Some(cmake) = env::var_os("CMAKE") {
        let cmake = PathBuf::from(cmake);
        if works(&cmake) {
            return Ok(cmake);
        }
        return crate::fail!(
            "mlx-sys: CMAKE={} does not run; unset it to let mlx-sys find or download CMake",
            cmake.display()
        );
    }
    if works(&PathBuf::from("cmake")) {
        return Ok(PathBuf::from("cmake"));
    }
    let python = python::find()?;
    let name = format!("cmake-{}", pins::CMAKE_PYPI_VERSION);
    let bin_rel = if cfg!(target_os = "macos") {
        "cmake/data/CMake.app/Contents/bin/cmake"
    } else {
        "cmake/data/bin/cmake"
    };
    let dir = cache::provide(&name, bin_rel, |tmp| {
        let spec = format!("cmake=={}", pins::CMAKE_PYPI_VERSION);
        let target = tmp.to_string_lossy();
        python::pip(
            &python,
            &[
                "install",
                "--no-deps",
                "--only-binary=:all:",
                "--no-compile",
                "--target",
                &target,
                &spec,
            ],
            "CMake (no cmake on PATH)",
        )
    })?;
    let bin = dir.join(bin_rel);
    if works(&bin) {
        Ok(bin)
    } else {
        crate::fail!(
            "mlx-sys: the CMake downloaded to {} does not run; install CMake ≥ 3.16 and put it on PATH",
            bin.display()
        )
    }
}

fn works(cmake: &PathBuf) -> bool {
    Command::new(cmake)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
