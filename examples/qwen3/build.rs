//! Puts MLX's shared library folder on the run-time path of the qwen3 binary and tests.
fn main() {
    let libdir = std::env::var("DEP_MLX_LIBDIR").expect("mlx-sys publishes DEP_MLX_LIBDIR");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    // The CUDA libmlx needs the driver's libcuda.so.1, resolved at start-up, not at link time.
    if std::env::var("DEP_MLX_BACKEND").as_deref() == Ok("cuda") {
        println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
    }
}
