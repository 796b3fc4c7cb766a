//! Puts MLX's library folder on the run-time path of mlx-rs's own tests, examples and
//! doc tests, and re-publishes it as `DEP_MLX_RS_LIBDIR` for crates that depend on mlx-rs.
fn main() {
    let libdir = std::env::var("DEP_MLX_LIBDIR").expect("mlx-sys publishes DEP_MLX_LIBDIR");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    println!("cargo:libdir={libdir}");
    // The mlx-c headers, for the API coverage test.
    if let Ok(inc) = std::env::var("DEP_MLX_MLXC_INCLUDE") {
        println!("cargo:rustc-env=MLX_RS_MLXC_INCLUDE={inc}");
    }
}
