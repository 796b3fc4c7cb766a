//! The CUDA norm kernels of a decode step (`mlx_lm::kernels::norm`) against MLX's ops on
//! the same GPU: the residual add + RMSNorm (rows of 2,048 as the 2B's residual stream, a
//! batch of three, a row length that is not a multiple of the block), and the gated output
//! norm (rows of 128 per value head, 16 heads, a batch of two, an odd row length). Inputs
//! the kernels do not take are errors, and the `_on` dispatch then uses the ops. The
//! kernel comparisons need a CUDA GPU, so they are ignored by default; on the GPU machine:
//! `lm-<hash> --ignored norm_kernel`.

use crate::common::{cpu, gpu, kernel_rtol};
use mlx_lm::kernels::gated_delta::{ops as gd_ops, StepPath};
use mlx_lm::kernels::norm::{add_rms_norm, add_rms_norm_on, gated_rms_norm, gated_rms_norm_on};
use mlx_rs::{fast, random, Array, Dtype};

fn close(what: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let tol = kernel_rtol(want.dtype());
    let g = got.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
    let w = want
        .astype(Dtype::Float32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let scale = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    for (i, (a, e)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - e).abs() <= tol * scale,
            "{what}: element {i} is {a}, expected {e} (tolerance {})",
            tol * scale
        );
    }
}

fn normal(shape: &[i32], seed: u64, dtype: Dtype) -> Array {
    let key = random::key(seed).unwrap();
    random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(&key))
        .unwrap()
        .astype(dtype)
        .unwrap()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn add_rms_norm_kernel_matches_add_and_rms_norm() {
    gpu(|| {
        for dtype in [Dtype::Float32, Dtype::Bfloat16, Dtype::Float16] {
            for shape in [vec![1, 2048], vec![3, 2048], vec![2, 1, 300]] {
                let d = *shape.last().unwrap();
                let h = normal(&shape, 1, dtype);
                let r = normal(&shape, 2, dtype);
                let w = normal(&[d], 3, dtype);
                let (h2, n) = add_rms_norm(&h, &r, &w, 1e-6).unwrap();
                let want_h = h.add(&r).unwrap();
                let want_n = fast::rms_norm(&want_h, Some(&w), 1e-6).unwrap();
                let what = format!("{dtype:?} {shape:?}");
                close(&format!("h + r, {what}"), &h2, &want_h);
                close(&format!("norm, {what}"), &n, &want_n);
            }
        }
    })
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gated_rms_norm_kernel_matches_the_ops() {
    gpu(|| {
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            for shape in [vec![1, 16, 128], vec![2, 16, 128], vec![3, 36]] {
                let d = *shape.last().unwrap();
                let y = normal(&shape, 4, dtype);
                let z = normal(&shape, 5, dtype);
                let w = normal(&[d], 6, dtype);
                let got = gated_rms_norm(&y, &z, &w, 1e-6).unwrap();
                let want = gd_ops::gated_rms_norm(&y, &z, &w, 1e-6).unwrap();
                close(&format!("gated norm {dtype:?} {shape:?}"), &got, &want);
            }
        }
    })
}

#[test]
fn inputs_the_norm_kernels_refuse_fall_back_to_the_ops() {
    cpu(|| {
        let x = normal(&[2, 64], 7, Dtype::Float32);
        let w = normal(&[64], 8, Dtype::Float32);
        let bad_w = normal(&[32], 9, Dtype::Float32);
        let ints = Array::from_slice(&[1i32; 128], &[2, 64]).unwrap();
        let long = normal(&[1, 9000], 10, Dtype::Float32);
        let long_w = normal(&[9000], 11, Dtype::Float32);
        assert!(add_rms_norm(&x, &x, &bad_w, 1e-6).is_err());
        assert!(add_rms_norm(&ints, &ints, &w, 1e-6).is_err());
        assert!(add_rms_norm(&x, &normal(&[2, 32], 12, Dtype::Float32), &w, 1e-6).is_err());
        assert!(add_rms_norm(&long, &long, &long_w, 1e-6).is_err());
        assert!(gated_rms_norm(&x, &x, &bad_w, 1e-6).is_err());
        assert!(gated_rms_norm(&x, &x.astype(Dtype::Bfloat16).unwrap(), &w, 1e-6).is_err());
        // The dispatch on the CUDA path with a weight the kernel refuses (a longer row
        // than it takes) and on the CPU path: MLX's ops, same values.
        for path in [StepPath::CudaKernel, StepPath::Compiled] {
            let (h, n) = add_rms_norm_on(path, &long, &long, &long_w, 1e-6).unwrap();
            let want_h = long.add(&long).unwrap();
            close("fallback h", &h, &want_h);
            close(
                "fallback norm",
                &n,
                &fast::rms_norm(&want_h, Some(&long_w), 1e-6).unwrap(),
            );
        }
        let got = gated_rms_norm_on(StepPath::Compiled, &x, &x, &w, 1e-6).unwrap();
        close(
            "gated fallback",
            &got,
            &gd_ops::gated_rms_norm(&x, &x, &w, 1e-6).unwrap(),
        );
    })
}
