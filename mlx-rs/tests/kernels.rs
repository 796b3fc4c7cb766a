//! Custom kernels: a CUDA kernel on a CUDA GPU, a Metal kernel on macOS (each skipped,
//! visibly, elsewhere), and errors — not aborts — where the backend is missing or the
//! launch description is wrong.

use mlx_rs::fast::{KernelBuilder, KernelConfig, TemplateArg};
use mlx_rs::ops;
use mlx_rs::{Array, Device, Dtype, Error};

/// A CUDA GPU is usable: the CUDA build, or (one build serves both) a CUDA `libmlx` loaded
/// at run time on Linux.
fn cuda_available() -> bool {
    mlx_rs::backend() == "cuda" || (cfg!(target_os = "linux") && Device::gpu().is_available())
}

fn metal_available() -> bool {
    cfg!(target_os = "macos") && Device::gpu().is_available()
}

/// Inputs shared by both GPU tests: a (3 × 4) matrix given transposed (not row-contiguous)
/// and a vector.
fn inputs() -> (Array, Array, Vec<f32>, Vec<f32>) {
    let m: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
    let b: Vec<f32> = (0..12).map(|i| 10.0 + i as f32).collect();
    // a_t is the transpose of a (4 × 3) matrix whose row-major data is `m`
    let a = Array::from_slice(&m, &[4, 3]).unwrap();
    let a_t = ops::swapaxes(&a, -1, -2).unwrap();
    // the kernel sees a_t row-contiguous: element i of a_t's row-major order
    let a_t_dense: Vec<f32> = (0..12).map(|i| m[(i % 4) * 3 + i / 4]).collect();
    (a_t, Array::from_slice(&b, &[12]).unwrap(), a_t_dense, b)
}

fn check_outputs(outs: &[Array], a: &[f32], b: &[f32], scale: f32) {
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0].shape(), &[3, 4]);
    assert_eq!(outs[0].dtype(), Dtype::Float32);
    assert_eq!(outs[1].dtype(), Dtype::Int32);
    let y = outs[0].to_vec::<f32>().unwrap();
    let even = outs[1].to_vec::<i32>().unwrap();
    for i in 0..12 {
        assert_eq!(y[i], a[i] * scale + b[i], "y[{i}]");
        // only even threads write the second output; the rest keep the init value
        let want = if i % 2 == 0 { i as i32 } else { -1 };
        assert_eq!(even[i], want, "even[{i}]");
    }
}

fn config(scale: i32) -> KernelConfig {
    KernelConfig::new([12, 1, 1], [4, 1, 1])
        .output(&[3, 4], Dtype::Float32)
        .output(&[12], Dtype::Int32)
        .template("T", TemplateArg::Dtype(Dtype::Float32))
        .template("N", TemplateArg::Int(12))
        .template("SCALE", TemplateArg::Int(scale))
        .template("WRITE_EVEN", TemplateArg::Bool(true))
        .init_value(-1.0)
}

#[test]
fn cuda_kernel_computes_on_gpu() {
    if !cuda_available() {
        eprintln!(
            "skipped: no CUDA GPU (backend {}, GPU available: {})",
            mlx_rs::backend(),
            Device::gpu().is_available()
        );
        return;
    }
    let kernel = KernelBuilder::new(
        "axpb_and_evens",
        "int i = blockIdx.x * blockDim.x + threadIdx.x;
         if (i < N) {
             y[i] = a[i] * static_cast<T>(SCALE) + b[i];
             if (WRITE_EVEN && i % 2 == 0) { even[i] = i; }
         }",
    )
    .input_names(&["a", "b"])
    .output_names(&["y", "even"])
    .build_cuda()
    .expect("CUDA kernel");
    let (a, b, a_dense, b_vals) = inputs();
    let gpu = mlx_rs::Stream::gpu();
    for scale in [3, 5] {
        let outs = mlx_rs::with_stream(&gpu, || kernel.apply(&[&a, &b], &config(scale))).unwrap();
        check_outputs(&outs, &a_dense, &b_vals, scale as f32);
    }
    // a kernel that does not compile is an error at evaluation, not an abort
    let broken = KernelBuilder::new("broken", "this is not CUDA;")
        .input_names(&["a"])
        .output_names(&["y"])
        .build_cuda()
        .unwrap();
    let cfg = KernelConfig::new([4, 1, 1], [4, 1, 1]).output(&[4], Dtype::Float32);
    let r = mlx_rs::with_stream(&gpu, || broken.apply(&[&b], &cfg).and_then(|o| o[0].eval()));
    assert!(r.is_err(), "a kernel that does not compile must fail");
}

#[test]
fn metal_kernel_computes_on_gpu() {
    if !metal_available() {
        eprintln!("skipped: no Metal GPU (not macOS with a Metal backend)");
        return;
    }
    let kernel = KernelBuilder::new(
        "axpb_and_evens",
        "uint i = thread_position_in_grid.x;
         if (i < N) {
             y[i] = a[i] * static_cast<T>(SCALE) + b[i];
             if (WRITE_EVEN && i % 2 == 0) { even[i] = int(i); }
         }",
    )
    .input_names(&["a", "b"])
    .output_names(&["y", "even"])
    .build_metal()
    .expect("Metal kernel");
    let (a, b, a_dense, b_vals) = inputs();
    let gpu = mlx_rs::Stream::gpu();
    for scale in [3, 5] {
        let outs = mlx_rs::with_stream(&gpu, || kernel.apply(&[&a, &b], &config(scale))).unwrap();
        check_outputs(&outs, &a_dense, &b_vals, scale as f32);
    }
}

#[test]
fn kernels_of_a_missing_backend_are_errors() {
    let b = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[4]).unwrap();
    let cfg = KernelConfig::new([4, 1, 1], [4, 1, 1]).output(&[4], Dtype::Float32);
    let builder = KernelBuilder::new("copy", "y[0] = a[0];")
        .input_names(&["a"])
        .output_names(&["y"]);
    if !cuda_available() {
        // MLX refuses to make the kernel at all
        match builder.build_cuda() {
            Err(Error::Mlx { message, .. }) => assert!(message.contains("CUDA"), "{message}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    if !metal_available() {
        // MLX may accept the description; applying or evaluating it must fail
        let result = builder
            .build_metal()
            .and_then(|k| k.apply(&[&b], &cfg))
            .and_then(|o| o[0].eval());
        match result {
            Err(Error::Mlx { message, .. }) => assert!(message.contains("Metal"), "{message}"),
            other => panic!("a Metal kernel ran without Metal: {other:?}"),
        }
    }
    // the process and MLX carry on
    assert_eq!(
        b.square().unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, 9.0, 16.0]
    );
}

#[test]
fn bad_kernel_descriptions_are_errors() {
    let b = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let invalid = |r: mlx_rs::Result<()>, what: &str| match r {
        Err(Error::InvalidArgument(m)) => assert!(!m.is_empty()),
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    };
    let good = KernelBuilder::new("k", "")
        .input_names(&["a"])
        .output_names(&["y"]);
    invalid(
        KernelBuilder::new("", "")
            .output_names(&["y"])
            .build_metal()
            .map(drop),
        "empty name",
    );
    invalid(
        KernelBuilder::new("k", "").build_metal().map(drop),
        "no outputs",
    );
    invalid(
        good.clone().header("a\0b").build_metal().map(drop),
        "NUL in header",
    );
    invalid(
        good.clone().input_names(&["a\0"]).build_metal().map(drop),
        "NUL in a name",
    );
    invalid(
        good.clone().shared_memory(-1).build_cuda().map(drop),
        "negative shared memory",
    );
    if let Ok(k) = good.build_metal() {
        let cfg = KernelConfig::new([2, 1, 1], [2, 1, 1]).output(&[2], Dtype::Float32);
        invalid(
            k.apply(&[&b, &b], &cfg).map(drop),
            "two arrays for one input name",
        );
        invalid(
            k.apply(&[&b], &KernelConfig::new([2, 1, 1], [2, 1, 1]))
                .map(drop),
            "no output shapes",
        );
        invalid(
            k.apply(
                &[&b],
                &KernelConfig::new([0, 1, 1], [2, 1, 1]).output(&[2], Dtype::Float32),
            )
            .map(drop),
            "empty grid",
        );
        invalid(
            k.apply(
                &[&b],
                &KernelConfig::new([2, 1, 1], [2, 1, 1]).output(&[-2], Dtype::Float32),
            )
            .map(drop),
            "negative output shape",
        );
        let nul = cfg.clone().template("T\0", TemplateArg::Int(1));
        invalid(k.apply(&[&b], &nul).map(drop), "NUL in a template name");
        let negative = cfg.clone().template("N", TemplateArg::Int(-2));
        invalid(
            k.apply(&[&b], &negative).map(drop),
            "negative int template argument",
        );
    }
}
