//! Finding MLX: an install named by `MLX_DIR`, or the pinned prebuilt wheel from PyPI.

use crate::pins::{self, Wheel};
use crate::{cache, fail, python, Step, Target};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the MLX that mlx-c is compiled and linked against lives.
pub struct Mlx {
    /// Install prefix whose `include/` and `share/cmake/MLX/` mlx-c compiles against.
    pub header_prefix: PathBuf,
    /// Folder holding the `libmlx` loaded at run time (and linked at build time).
    pub runtime_lib_dir: PathBuf,
    /// `cpu`, `cuda`, `metal`, or `custom` (from `MLX_DIR`).
    pub backend: &'static str,
}

impl Mlx {
    /// `<prefix>/include`.
    pub fn include_dir(&self) -> PathBuf {
        self.header_prefix.join("include")
    }
    /// `<prefix>/share/cmake/MLX`.
    pub fn cmake_dir(&self) -> PathBuf {
        self.header_prefix.join("share").join("cmake").join("MLX")
    }
}

/// Finds or provisions MLX for `target`, and checks its version.
pub fn locate(target: &Target) -> Step<Mlx> {
    if let Some(dir) = env::var_os("MLX_DIR") {
        let prefix = prefix_of(Path::new(&dir))?;
        check_version(&prefix)?;
        let lib = prefix.join("lib");
        return Ok(Mlx {
            header_prefix: prefix,
            runtime_lib_dir: lib,
            backend: "custom",
        });
    }
    let host_arch = env::var("HOST")
        .unwrap_or_default()
        .split('-')
        .next()
        .unwrap_or_default()
        .to_string();
    if host_arch != target.arch {
        return fail!(
            "mlx-sys: cross-compiling ({host_arch} → {}) cannot use the PyPI wheels: set \
             MLX_DIR to an MLX {} install for the target",
            target.arch,
            pins::MLX_VERSION
        );
    }
    let (headers, runtime) = match (target.os.as_str(), target.arch.as_str(), target.cuda) {
        ("macos", "aarch64", false) => (&pins::MLX_METAL, None),
        ("macos", "aarch64", true) => {
            return fail!("mlx-sys: the `cuda` feature is for Linux; on macOS MLX uses Metal")
        }
        ("linux", "x86_64" | "aarch64", false) => (&pins::MLX_CPU, None),
        ("linux", "x86_64" | "aarch64", true) => (&pins::MLX_CPU, Some(&pins::MLX_CUDA)),
        (os, arch, _) => {
            return fail!(
                "mlx-sys: no prebuilt MLX {} for {arch}-{os} (PyPI has Linux x86_64/aarch64 \
                 and macOS arm64). Build MLX {} yourself and set MLX_DIR to its install prefix.",
                pins::MLX_VERSION,
                pins::MLX_VERSION
            )
        }
    };
    let header_site = provision(headers, false)?;
    let header_prefix = header_site.join("mlx");
    check_version(&header_prefix)?;
    let (runtime_lib_dir, backend) = match runtime {
        None => (
            header_prefix.join("lib"),
            if target.os == "macos" { "metal" } else { "cpu" },
        ),
        Some(wheel) => (provision(wheel, true)?.join("mlx").join("lib"), "cuda"),
    };
    Ok(Mlx {
        header_prefix,
        runtime_lib_dir,
        backend,
    })
}

/// Accepts an install prefix, its `share/cmake/MLX` folder, or a Python `mlx` package.
fn prefix_of(dir: &Path) -> Step<PathBuf> {
    let dir = dir
        .canonicalize()
        .map_err(|e| crate::Failure(format!("mlx-sys: MLX_DIR={}: {e}", dir.display())))?;
    if dir.join("MLXConfig.cmake").exists() {
        if let Some(prefix) = dir.ancestors().nth(3) {
            return Ok(prefix.to_path_buf());
        }
    }
    if dir.join("include").join("mlx").join("mlx.h").exists() {
        return Ok(dir);
    }
    if dir
        .join("mlx")
        .join("include")
        .join("mlx")
        .join("mlx.h")
        .exists()
    {
        return Ok(dir.join("mlx"));
    }
    fail!(
        "mlx-sys: MLX_DIR={} is not an MLX install: expected include/mlx/mlx.h and lib/ under \
         it (or its share/cmake/MLX folder)",
        dir.display()
    )
}

/// Refuses any MLX but the pinned one: mlx-c 0.7.0 does not compile against others, and
/// the library loaded at run time must match the headers.
fn check_version(prefix: &Path) -> Step<()> {
    let header = prefix.join("include").join("mlx").join("version.h");
    let text = fs::read_to_string(&header).map_err(|e| {
        crate::Failure(format!(
            "mlx-sys: cannot read {} ({e}): not an MLX install",
            header.display()
        ))
    })?;
    let part = |name: &str| -> Option<String> {
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("#define MLX_VERSION_{name} "))
            })
            .map(|v| v.trim().to_string())
    };
    let found = match (part("MAJOR"), part("MINOR"), part("PATCH")) {
        (Some(a), Some(b), Some(c)) => format!("{a}.{b}.{c}"),
        _ => return fail!("mlx-sys: {} has no MLX version", header.display()),
    };
    if found != pins::MLX_VERSION {
        return fail!(
            "mlx-sys: the MLX at {} is version {found}, but mlx-sys needs exactly MLX {} \
             (mlx-c {} does not build against other versions). Point MLX_DIR at an MLX {} \
             install, or unset MLX_DIR to let mlx-sys download it.",
            prefix.display(),
            pins::MLX_VERSION,
            pins::MLX_C_VERSION,
            pins::MLX_VERSION
        );
    }
    Ok(())
}

/// Installs the pinned wheel (hash-checked) into the cache; returns its site folder.
fn provision(wheel: &Wheel, with_deps: bool) -> Step<PathBuf> {
    let name = format!("{}-{}", wheel.dist, pins::MLX_VERSION);
    let lib = if cfg!(target_os = "macos") {
        "mlx/lib/libmlx.dylib"
    } else {
        "mlx/lib/libmlx.so"
    };
    cache::provide(&name, lib, |tmp| {
        let python = python::find()?;
        let what = format!("{}=={}", wheel.dist, pins::MLX_VERSION);
        let dl = tmp.join("download");
        fs::create_dir_all(&dl)?;
        let req = python::hashed_requirements(&dl, wheel.dist, pins::MLX_VERSION, wheel.sha256)?;
        let dl_s = dl.to_string_lossy().into_owned();
        // Download with the hashes enforced, then install the verified file.
        python::pip(
            &python,
            &[
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--require-hashes",
                "-r",
                &req,
                "-d",
                &dl_s,
            ],
            &what,
        )?;
        let whl = fs::read_dir(&dl)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| crate::Failure(format!("mlx-sys: pip left no wheel for {what}")))?;
        let whl_s = whl.to_string_lossy().into_owned();
        let target = tmp.to_string_lossy().into_owned();
        let mut args = vec![
            "install",
            "--only-binary=:all:",
            "--no-compile",
            "--target",
            &target,
            &whl_s,
        ];
        if !with_deps {
            args.insert(1, "--no-deps");
        }
        python::pip(&python, &args, &what)?;
        fs::remove_dir_all(&dl)?;
        Ok(())
    })
}
