//! Native pieces besides mlx-c that mlx-rs needs from MLX:
//!
//! - `src/shim.cpp`, compiled against the MLX headers into a static library: BLAS/LAPACK
//!   error handlers that throw instead of exiting, and the release of the worker thread
//!   MLX keeps for a stream (see that file).
//! - On Linux, the BLAS/LAPACK libraries bundled next to `libmlx` are named to the linker
//!   (as-needed, so they never become a dependency of their own). The reference BLAS and
//!   LAPACK report an illegal argument by calling `xerbla_`, which prints and *exits the
//!   process*; the shim defines its own `xerbla_`, which fails the evaluation instead. The
//!   bundled libraries call `xerbla_` through the dynamic linker, so a definition in the
//!   executable takes precedence, but only if the executable exports it: a linker exports
//!   a symbol of the executable that a shared library in the link also defines, and rust's
//!   default linker (lld) does not look at libmlx's own dependencies. Naming them here
//!   makes every binary that links mlx-sys export the shim's `xerbla_`.

use crate::mlx::Mlx;
use crate::{fail, Step, Target};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles the shim and has it linked.
pub fn build_shim(target: &Target, mlx: &Mlx, manifest_dir: &Path, out_dir: &Path) -> Step<()> {
    let src = manifest_dir.join("src").join("shim.cpp");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=CXX");
    println!("cargo:rerun-if-env-changed=AR");
    let cxx = env::var("CXX").unwrap_or_else(|_| "c++".into());
    let obj = out_dir.join("shim.o");
    let mut cmd = Command::new(&cxx);
    cmd.args(["-std=c++20", "-O2", "-fPIC", "-fvisibility=hidden", "-c"])
        .arg("-I")
        .arg(mlx.include_dir())
        .arg(&src)
        .arg("-o")
        .arg(&obj);
    if target.os == "macos" {
        cmd.arg("-mmacosx-version-min=14.0");
    }
    run(&mut cmd, &format!("compiling {} with {cxx}", src.display()))?;
    let lib = out_dir.join("libmlx_rs_shim.a");
    let _ = fs::remove_file(&lib);
    let ar = env::var("AR").unwrap_or_else(|_| "ar".into());
    run(
        Command::new(&ar).arg("crs").arg(&lib).arg(&obj),
        &format!("archiving {} with {ar}", obj.display()),
    )?;
    println!("cargo:rustc-link-search=native={}", out_dir.display());
    println!("cargo:rustc-link-lib=static=mlx_rs_shim");
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Step<()> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => fail!(
            "mlx-sys: {what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => fail!("mlx-sys: {what}: {e} (set CXX / AR to your C++ compiler / archiver)"),
    }
}

/// On Linux, names the BLAS/LAPACK libraries bundled with MLX to the linker through an
/// as-needed linker script, so that binaries export the shim's `xerbla_` (module docs).
/// Returns the libraries found (none: MLX brings no BLAS of its own, e.g. macOS).
pub fn blas_interposition(target: &Target, mlx: &Mlx, out_dir: &Path) -> Step<Vec<PathBuf>> {
    if target.os != "linux" {
        return Ok(Vec::new());
    }
    let libs = bundled_blas(&mlx.runtime_lib_dir);
    if libs.is_empty() {
        return Ok(libs);
    }
    let names: Vec<String> = libs
        .iter()
        .map(|p| {
            let s = p.display().to_string();
            if s.contains(|c: char| c.is_whitespace() || c == ')' || c == '"') {
                format!("\"{s}\"")
            } else {
                s
            }
        })
        .collect();
    let dir = out_dir.join("blas-hooks");
    fs::create_dir_all(&dir)?;
    // A linker script: the libraries are read for their symbols and dropped unless
    // something needs them (libmlx already does, at run time).
    fs::write(
        dir.join("libmlx_rs_blas_hooks.so"),
        format!("INPUT(AS_NEEDED({}))\n", names.join(" ")),
    )?;
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=mlx_rs_blas_hooks");
    Ok(libs)
}

/// Shared BLAS/LAPACK libraries shipped with MLX: in the lib folder itself or in a
/// wheel's `<dist>.libs` folder beside the `mlx` package.
fn bundled_blas(lib_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![lib_dir.to_path_buf()];
    if let Some(site) = lib_dir.parent().and_then(Path::parent) {
        if let Ok(entries) = fs::read_dir(site) {
            dirs.extend(
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir() && p.extension().is_some_and(|x| x == "libs")),
            );
        }
    }
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let blas = [
                "libblas",
                "libcblas",
                "liblapack",
                "libopenblas",
                "libflexiblas",
            ]
            .iter()
            .any(|p| name.starts_with(p));
            if blas && name.contains(".so") && path.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
