//! Puts MLX's library folder (published by mlx-rs as `DEP_MLX_RS_LIBDIR`) on the run-time
//! path of this crate's tests.
fn main() {
    let libdir = std::env::var("DEP_MLX_RS_LIBDIR").expect("mlx-rs publishes DEP_MLX_RS_LIBDIR");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    // The CUDA libmlx needs the driver's libcuda.so.1, resolved at start-up, not at link time.
    if std::env::var("DEP_MLX_RS_BACKEND").as_deref() == Ok("cuda") {
        println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
    }
}
