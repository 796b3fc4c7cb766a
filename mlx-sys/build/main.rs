//! Build script of `mlx-sys`.
//!
//! 1. Finds MLX 0.32.2 (`MLX_DIR`) or provisions the prebuilt PyPI wheel for the target
//!    (`mlx-cpu`, `mlx-cuda-13` with the `cuda` feature, `mlx-metal` on macOS) into a cache.
//! 2. Finds the mlx-c 0.7.0 source (`MLX_C_SRC_DIR`) or has cargo download it from
//!    crates.io, then checks it against a pinned checksum.
//! 3. Builds mlx-c as a static library with CMake (provisioning CMake from PyPI when none
//!    is on `PATH`), always optimised.
//! 4. Links mlx-c statically and MLX dynamically, and publishes `DEP_MLX_*` metadata.
//! 5. Compiles `src/shim.cpp` and, on Linux, names MLX's bundled BLAS/LAPACK to the
//!    linker so that the shim's `xerbla_` replaces their exiting one (see `native.rs`).
//!
//! Every failure ends the build with one `cargo::error` line that says what to do.

mod cache;
mod cmake_tool;
mod mlx;
mod mlx_c;
mod native;
mod pins;
mod python;

use std::env;
use std::path::{Path, PathBuf};

/// A build failure: one message, written for the person running `cargo build`.
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Shorthand for fallible build steps.
pub type Step<T> = Result<T, Failure>;

/// Makes a `Failure` from a formatted message.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { Err($crate::Failure(format!($($arg)*))) };
}

fn main() {
    if let Err(Failure(msg)) = run() {
        // One line per message line, so cargo shows all of it as the error.
        for line in msg.lines() {
            println!("cargo::error={line}");
        }
        std::process::exit(1);
    }
}

fn run() -> Step<()> {
    for var in [
        "MLX_DIR",
        "MLX_C_SRC_DIR",
        "MLX_SYS_CACHE_DIR",
        "MLX_SYS_PYTHON",
        "MLX_SYS_OFFLINE",
        "CMAKE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=src/format_shim.h");
    println!("cargo:rerun-if-changed=src/shim.cpp");

    let target = Target::from_env()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);

    let mlx = mlx::locate(&target)?;
    let mlx_c_src = mlx_c::locate(&out_dir, &manifest_dir)?;
    let cmake = cmake_tool::locate()?;
    let mlx_c_lib = build_mlx_c(&target, &cmake, &mlx, &mlx_c_src, &manifest_dir)?;

    emit_link(&target, &mlx, &mlx_c_lib);
    native::build_shim(&target, &mlx, &manifest_dir, &out_dir)?;
    let blas = native::blas_interposition(&target, &mlx, &out_dir)?;
    println!("cargo:rustc-env=MLX_SYS_BLAS_HOOKED={}", blas.len());
    println!("cargo:libdir={}", mlx.runtime_lib_dir.display());
    println!("cargo:include={}", mlx.include_dir().display());
    println!("cargo:mlxc_include={}", mlx_c_src.display());
    println!("cargo:version={}", pins::MLX_VERSION);
    println!("cargo:mlxc_version={}", pins::MLX_C_VERSION);
    println!("cargo:backend={}", mlx.backend);
    println!(
        "cargo:rustc-env=MLX_SYS_LIBDIR={}",
        mlx.runtime_lib_dir.display()
    );
    println!(
        "cargo:rustc-env=MLX_SYS_INCLUDE={}",
        mlx.include_dir().display()
    );
    println!("cargo:rustc-env=MLX_SYS_BACKEND={}", mlx.backend);
    println!("cargo:rustc-env=MLX_SYS_MLXC_SRC={}", mlx_c_src.display());
    Ok(())
}

/// What the build script needs to know about the compilation target.
pub struct Target {
    /// `linux`, `macos`, …
    pub os: String,
    /// `x86_64`, `aarch64`, …
    pub arch: String,
    /// Whether the `cuda` feature is on.
    pub cuda: bool,
}

impl Target {
    fn from_env() -> Step<Self> {
        Ok(Target {
            os: env::var("CARGO_CFG_TARGET_OS")?,
            arch: env::var("CARGO_CFG_TARGET_ARCH")?,
            cuda: env::var_os("CARGO_FEATURE_CUDA").is_some(),
        })
    }
}

fn build_mlx_c(
    target: &Target,
    cmake: &Path,
    mlx: &mlx::Mlx,
    src: &Path,
    manifest_dir: &Path,
) -> Step<PathBuf> {
    // The `cmake` crate runs whatever `CMAKE` names; the build script is single-threaded.
    env::set_var("CMAKE", cmake);

    let shim = manifest_dir.join("src").join("format_shim.h");
    let mut cfg = cmake::Config::new(src);
    cfg.define("MLX_C_BUILD_EXAMPLES", "OFF")
        .define("MLX_C_USE_SYSTEM_MLX", "ON")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("CMAKE_INSTALL_LIBDIR", "lib")
        .define("MLX_DIR", mlx.cmake_dir())
        .define("CMAKE_PREFIX_PATH", &mlx.header_prefix)
        // mlx-c is the hot path of every op: optimise it whatever cargo's profile.
        .profile("Release")
        .very_verbose(false);
    if target.os != "windows" {
        cfg.cxxflag(format!("-include {}", shim.display()));
    }
    let dst = cfg.build();
    let lib_dir = dst.join("lib");
    if !lib_dir.join(static_lib_name(target)).exists() {
        return fail!(
            "mlx-sys: CMake finished but {} is missing from {}",
            static_lib_name(target),
            lib_dir.display()
        );
    }
    Ok(lib_dir)
}

fn static_lib_name(target: &Target) -> &'static str {
    if target.os == "windows" {
        "mlxc.lib"
    } else {
        "libmlxc.a"
    }
}

fn emit_link(target: &Target, mlx: &mlx::Mlx, mlx_c_lib: &Path) {
    println!("cargo:rustc-link-search=native={}", mlx_c_lib.display());
    println!("cargo:rustc-link-lib=static=mlxc");
    println!(
        "cargo:rustc-link-search=native={}",
        mlx.runtime_lib_dir.display()
    );
    println!("cargo:rustc-link-lib=dylib=mlx");
    match target.os.as_str() {
        "macos" | "ios" => println!("cargo:rustc-link-lib=dylib=c++"),
        _ => println!("cargo:rustc-link-lib=dylib=stdc++"),
    }
    if mlx.backend == "cuda" {
        // The CUDA libmlx needs the driver's libcuda.so.1, which only machines with an
        // NVIDIA driver have; it is resolved when the program starts, not at link time.
        println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
    }
    // Lets mlx-sys's own tests and examples find libmlx at run time. Dependents add the
    // same line from `DEP_MLX_LIBDIR` (see the crate docs): link args do not propagate.
    println!(
        "cargo:rustc-link-arg=-Wl,-rpath,{}",
        mlx.runtime_lib_dir.display()
    );
}
