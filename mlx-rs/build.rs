//! Puts MLX's library folder on the run-time path of mlx-rs's own tests, examples and
//! doc tests, and re-publishes it as `DEP_MLX_RS_LIBDIR` for crates that depend on mlx-rs.
fn main() {
    let libdir = std::env::var("DEP_MLX_LIBDIR").expect("mlx-sys publishes DEP_MLX_LIBDIR");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    // The CUDA libmlx needs the driver's libcuda.so.1, resolved at start-up, not at link time.
    if std::env::var("DEP_MLX_BACKEND").as_deref() == Ok("cuda") {
        println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
    }
    println!("cargo:libdir={libdir}");
    println!(
        "cargo:backend={}",
        std::env::var("DEP_MLX_BACKEND").unwrap_or_default()
    );
    // The mlx-c headers, for the API coverage test.
    if let Ok(inc) = std::env::var("DEP_MLX_MLXC_INCLUDE") {
        println!("cargo:rustc-env=MLX_RS_MLXC_INCLUDE={inc}");
    }
}
