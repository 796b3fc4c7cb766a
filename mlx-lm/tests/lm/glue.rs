//! The glue kernels (`mlx_lm::kernels::glue`): bad inputs are errors (here), and on a CUDA
//! GPU their outputs against MLX's ops (ignored by default; on the GPU machine:
//! `lm-<hash> --ignored glue`).

use crate::common::{assert_kernel_close, gpu, normal};
use mlx_lm::kernels::glue::{add_rms_norm, swiglu};
use mlx_lm::kernels::gpu::GpuBackend;
use mlx_rs::{fast, ops, Array, Dtype};

fn to_f32(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

#[test]
fn bad_add_norm_inputs_are_errors() {
    let bf = Dtype::Bfloat16;
    let x = normal(&[2, 64], 1, bf);
    let w = normal(&[64], 2, bf);
    let cases: [(&str, Array, Array, Array, f32); 6] = [
        (
            "r of another shape",
            x.clone(),
            normal(&[2, 32], 3, bf),
            w.clone(),
            1e-6,
        ),
        (
            "a weight of another length",
            x.clone(),
            x.clone(),
            normal(&[32], 4, bf),
            1e-6,
        ),
        (
            "rows of three axes",
            x.reshape(&[2, 1, 64]).unwrap(),
            x.reshape(&[2, 1, 64]).unwrap(),
            w.clone(),
            1e-6,
        ),
        (
            "mixed dtypes",
            x.clone(),
            x.astype(Dtype::Float32).unwrap(),
            w.clone(),
            1e-6,
        ),
        (
            "integer rows",
            x.astype(Dtype::Int32).unwrap(),
            x.astype(Dtype::Int32).unwrap(),
            w.astype(Dtype::Int32).unwrap(),
            1e-6,
        ),
        ("a NaN eps", x.clone(), x.clone(), w.clone(), f32::NAN),
    ];
    for (why, x, r, w, eps) in cases {
        let err = add_rms_norm(&x, &r, &w, eps)
            .err()
            .unwrap_or_else(|| panic!("accepted {why}"));
        assert!(
            err.to_string().contains("add + RMSNorm kernel: "),
            "{why}: {err}"
        );
    }
}

/// On a CUDA GPU: h equals MLX's add bit for bit; n is within `kernel_rtol` of MLX's
/// `fast::rms_norm` (the sum of squares in another order), for the 2B's width, an odd
/// width and several rows, float32 and bfloat16.
#[test]
#[ignore = "needs a CUDA GPU: lm --ignored glue"]
fn add_norm_kernel_matches_mlx() {
    if GpuBackend::available() != Some(GpuBackend::Cuda) {
        println!("skipped: no CUDA GPU");
        return;
    }
    gpu(|| {
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            for (b, d) in [(1, 2048), (3, 1000), (16, 4096), (2, 40)] {
                let x = normal(&[b, d], 5, dtype);
                let r = normal(&[b, d], 6, dtype);
                let w = normal(&[d], 7, dtype);
                let (h, n) = add_rms_norm(&x, &r, &w, 1e-6).unwrap();
                let h_ref = x.add(&r).unwrap();
                let n_ref = fast::rms_norm(&h_ref, Some(&w), 1e-6).unwrap();
                assert_eq!((h.dtype(), n.dtype()), (dtype, dtype));
                assert_eq!(to_f32(&h), to_f32(&h_ref), "{dtype:?} [{b}, {d}]: h");
                assert_kernel_close(&format!("{dtype:?} [{b}, {d}]: n"), &n, &n_ref);
            }
        }
    });
    println!("add + RMSNorm kernel: all cases match MLX's ops");
}

#[test]
fn bad_swiglu_inputs_are_errors() {
    let bf = Dtype::Bfloat16;
    for (why, gu) in [
        ("an odd width", normal(&[2, 63], 1, bf)),
        ("three axes", normal(&[2, 1, 64], 1, bf)),
        (
            "integers",
            normal(&[2, 64], 1, bf).astype(Dtype::Int32).unwrap(),
        ),
        ("no rows", normal(&[0, 64], 1, bf)),
    ] {
        let err = swiglu(&gu)
            .err()
            .unwrap_or_else(|| panic!("accepted {why}"));
        assert!(err.to_string().contains("SwiGLU kernel: "), "{why}: {err}");
    }
}

/// On a CUDA GPU: the SwiGLU kernel equals MLX's `silu(g) · u` on the split halves within
/// `kernel_rtol` (the same roundings; the sigmoid's `exp` may differ in its last bit),
/// float32 and bfloat16, for the 2B's inner width and an odd one.
#[test]
#[ignore = "needs a CUDA GPU: lm --ignored glue"]
fn swiglu_kernel_matches_mlx() {
    if GpuBackend::available() != Some(GpuBackend::Cuda) {
        println!("skipped: no CUDA GPU");
        return;
    }
    gpu(|| {
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            for (b, i) in [(1, 6144), (5, 333)] {
                let gu = normal(&[b, 2 * i], 9, dtype);
                let parts = ops::split_sections(&gu, &[i], -1).unwrap();
                let (g, u) = (&parts[0], &parts[1]);
                let want = g
                    .multiply(&ops::sigmoid(g).unwrap())
                    .unwrap()
                    .multiply(u)
                    .unwrap();
                let got = swiglu(&gu).unwrap();
                assert_eq!(got.shape(), [b, i]);
                assert_kernel_close(&format!("{dtype:?} [{b}, {i}]"), &got, &want);
            }
        }
    });
    println!("SwiGLU kernel: all cases match MLX's ops");
}
