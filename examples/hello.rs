//! Prints the MLX version, the backend and default device, and checks one computation.
//!
//! ```text
//! cargo run --release --example hello
//! ```

use mlx_rs::{Array, Device, Dtype};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> mlx_rs::Result<()> {
    println!(
        "MLX {} ({} backend, linked: {})",
        mlx_rs::version(),
        mlx_rs::backend(),
        mlx_rs::linked_backend()
    );
    println!("default device: {}", Device::default_device()?);
    if Device::gpu().is_available() {
        println!("GPU available: {}", Device::gpu());
    }

    // (A + I) @ B for known matrices, checked against the hand-computed product.
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    let b = Array::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
    let i = mlx_rs::ops::eye(2, 3, 0, Dtype::Float32)?;
    let c = a.add(&i)?.matmul(&b)?;
    println!("(A + I) @ B =\n{c}");
    let got = c.to_vec::<f32>()?;
    let want = [5.0f32, 5.0, 10.0, 12.0];
    if got != want {
        return Err(mlx_rs::Error::InvalidArgument(format!(
            "wrong result {got:?}, expected {want:?}"
        )));
    }
    println!("check: ok");
    Ok(())
}
