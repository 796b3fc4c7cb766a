//! Forwards mlx-sys's header location to the xtask binary.
fn main() {
    let inc =
        std::env::var("DEP_MLX_MLXC_INCLUDE").expect("mlx-sys publishes DEP_MLX_MLXC_INCLUDE");
    println!("cargo:rustc-env=XTASK_MLXC_INCLUDE={inc}");
}
