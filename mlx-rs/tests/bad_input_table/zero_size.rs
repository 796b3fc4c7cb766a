//! Class 2: zero-size arrays. Sorts, scans, linear algebra, permutations, quantized and
//! segmented products and convolutions of zero-size arrays killed the process (SIGFPE,
//! or the reference BLAS exiting); `quantize` with a group size of 0 too. Each op now
//! gives the empty (or all-zero) result NumPy/MLX semantics define, or an `Err`.

use super::Table;
use mlx_rs::fast::{scaled_dot_product_attention, AttentionMask};
use mlx_rs::ops::{self, ConvGeneralOptions, ConvOptions, ConvTransposeOptions, GatherIndices};
use mlx_rs::{linalg, random, with_stream, Array, Dtype, Stream};

type R = mlx_rs::Result<Array>;

fn f32s(shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
    Array::from_slice(&v, shape).unwrap()
}

fn zeros(shape: &[i32]) -> Array {
    ops::zeros(shape, Dtype::Float32).unwrap()
}

/// Evaluates `a` (so that the kernels run) and shows its shape, dtype and values.
fn shown(a: &Array) -> String {
    a.eval().unwrap();
    let v = a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
    match v.first() {
        Some(x) if v.len() > 4 && v.iter().all(|y| y == x) => {
            format!("{:?} {} [{x:?}; {}]", a.shape(), a.dtype(), v.len())
        }
        _ => format!("{:?} {} {v:?}", a.shape(), a.dtype()),
    }
}

/// Checks an `Ok` result of `shape` and `dtype` whose values are all `fill` (none when
/// empty), and records it.
#[track_caller]
fn expect(t: &mut Table, case: &str, call: &str, r: R, shape: &[i32], dtype: Dtype, fill: f32) {
    let a = r.unwrap_or_else(|e| panic!("{call}: {e}"));
    let s = shown(&a);
    assert_eq!(a.shape(), shape, "{call}");
    assert_eq!(a.dtype(), dtype, "{call}");
    let v = a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
    assert!(v.iter().all(|&x| x == fill), "{call}: {v:?}");
    t.row(case, call, &format!("`Ok`: `{s}`"));
}

/// Checks that every output of a multi-output op is `Ok` with the given shapes.
#[track_caller]
fn expect_all(
    t: &mut Table,
    case: &str,
    call: &str,
    r: mlx_rs::Result<Vec<Array>>,
    shapes: &[&[i32]],
) {
    let outs = r.unwrap_or_else(|e| panic!("{call}: {e}"));
    let got: Vec<Vec<i32>> = outs.iter().map(|a| a.shape().to_vec()).collect();
    mlx_rs::eval(&outs).unwrap();
    assert_eq!(
        got,
        shapes.iter().map(|s| s.to_vec()).collect::<Vec<_>>(),
        "{call}"
    );
    t.row(case, call, &format!("`Ok`: shapes `{got:?}`"));
}

fn sorts_and_scans(t: &mut Table) {
    let e00 = zeros(&[0, 0]);
    let e03 = zeros(&[0, 3]);
    let e203 = zeros(&[2, 0, 3]);
    let u32_ = Dtype::Uint32;
    let f = Dtype::Float32;
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, R, Vec<i32>, Dtype)> = vec![
        ("ops::sort(&[0, 0])", ops::sort(&e00), vec![0], f),
        (
            "ops::sort_axis(&[0, 3], 0)",
            ops::sort_axis(&e03, 0),
            vec![0, 3],
            f,
        ),
        (
            "ops::sort_axis(&[2, 0, 3], 1)",
            ops::sort_axis(&e203, 1),
            vec![2, 0, 3],
            f,
        ),
        ("ops::argsort(&[0, 0])", ops::argsort(&e00), vec![0], u32_),
        (
            "ops::argsort_axis(&[0, 0], -1)",
            ops::argsort_axis(&e00, -1),
            vec![0, 0],
            u32_,
        ),
        (
            "ops::argsort_axis(&[0, 3], 0)",
            ops::argsort_axis(&e03, 0),
            vec![0, 3],
            u32_,
        ),
        (
            "ops::partition_axis(&[0, 3], 1, 1)",
            ops::partition_axis(&e03, 1, 1),
            vec![0, 3],
            f,
        ),
        (
            "ops::argpartition_axis(&[0, 3], 2, 1)",
            ops::argpartition_axis(&e03, 2, 1),
            vec![0, 3],
            u32_,
        ),
        ("ops::topk(&[0, 0], 0)", ops::topk(&e00, 0), vec![0], f),
        (
            "ops::topk_axis(&[0, 3], 0, 0)",
            ops::topk_axis(&e03, 0, 0),
            vec![0, 3],
            f,
        ),
        (
            "ops::cumsum(&[0, 0], …)",
            ops::cumsum(&e00, false, true, None),
            vec![0],
            f,
        ),
        (
            "ops::cumsum_axis(&[0, 3], 0, …)",
            ops::cumsum_axis(&e03, 0, false, true, None),
            vec![0, 3],
            f,
        ),
        (
            "ops::cumsum_axis(&[2, 0, 3], 1, reverse)",
            ops::cumsum_axis(&e203, 1, true, false, None),
            vec![2, 0, 3],
            f,
        ),
        (
            "ops::cumsum(int32 [0])",
            ops::cumsum(&ops::zeros(&[0], Dtype::Int32).unwrap(), false, true, None),
            vec![0],
            Dtype::Int32,
        ),
        (
            "ops::cumsum(bool [0])",
            ops::cumsum(&ops::zeros(&[0], Dtype::Bool).unwrap(), false, true, None),
            vec![0],
            Dtype::Int32,
        ),
        (
            "ops::cumprod(&[0, 0], …)",
            ops::cumprod(&e00, false, true, None),
            vec![0],
            f,
        ),
        (
            "ops::cumprod_axis(&[0, 3], 0, …)",
            ops::cumprod_axis(&e03, 0, false, true, None),
            vec![0, 3],
            f,
        ),
        (
            "ops::cummax(&[0, 0], …)",
            ops::cummax(&e00, false, true),
            vec![0],
            f,
        ),
        (
            "ops::cummax_axis(&[0, 3], 0, …)",
            ops::cummax_axis(&e03, 0, false, true),
            vec![0, 3],
            f,
        ),
        (
            "ops::cummin(&[0, 0], …)",
            ops::cummin(&e00, false, true),
            vec![0],
            f,
        ),
        (
            "ops::cummin_axis(&[0, 3], 0, …)",
            ops::cummin_axis(&e03, 0, false, true),
            vec![0, 3],
            f,
        ),
        (
            "ops::logcumsumexp(&[0, 0], …)",
            ops::logcumsumexp(&e00, false, true),
            vec![0],
            f,
        ),
        (
            "ops::logcumsumexp_axis(&[0, 3], 0, …)",
            ops::logcumsumexp_axis(&e03, 0, false, true),
            vec![0, 3],
            f,
        ),
        (
            "random::permutation_arange(0)",
            random::permutation_arange(0, None),
            vec![0],
            u32_,
        ),
        (
            "random::permutation(&[0], 0)",
            random::permutation(&zeros(&[0]), 0, None),
            vec![0],
            f,
        ),
        (
            "random::permutation(&[0, 3], 0)",
            random::permutation(&e03, 0, None),
            vec![0, 3],
            f,
        ),
    ];
    for (call, r, shape, dtype) in cases {
        let family = if call.contains("random") {
            "permutation"
        } else if call.contains("cum") {
            "scan"
        } else {
            "sort"
        };
        expect(
            t,
            &format!("{family} of an empty array"),
            call,
            r,
            &shape,
            dtype,
            0.0,
        );
    }
    // Sorting along an axis MLX does not check for an empty kth is MLX's own error.
    t.err(
        "partition of an empty axis",
        "ops::partition(&[0, 0], 0)",
        ops::partition(&e00, 0),
    );
    t.err(
        "top-k past an empty axis",
        "ops::topk(&[0], 1)",
        ops::topk(&zeros(&[0]), 1),
    );
}

fn linear_algebra(t: &mut Table) {
    with_stream(&Stream::cpu(), || {
        for shape in [[0, 0].as_slice(), &[3, 0, 0]] {
            let a = zeros(shape);
            let s = format!("{shape:?}");
            let batch = &shape[..shape.len() - 2];
            let vec_shape: Vec<i32> = batch.iter().copied().chain([0]).collect();
            // The right-hand side: a vector for one matrix, two columns for a batch.
            let rhs_shape: Vec<i32> = if batch.is_empty() {
                vec![0]
            } else {
                batch.iter().copied().chain([0, 2]).collect()
            };
            let b = zeros(&rhs_shape);
            let singles: Vec<(String, R, Vec<i32>)> = vec![
                (
                    format!("linalg::inv(&{s})"),
                    linalg::inv(&a),
                    shape.to_vec(),
                ),
                (
                    format!("linalg::tri_inv(&{s}, false)"),
                    linalg::tri_inv(&a, false),
                    shape.to_vec(),
                ),
                (
                    format!("linalg::cholesky(&{s}, false)"),
                    linalg::cholesky(&a, false),
                    shape.to_vec(),
                ),
                (
                    format!("linalg::cholesky_inv(&{s}, false)"),
                    linalg::cholesky_inv(&a, false),
                    shape.to_vec(),
                ),
                (
                    format!("linalg::pinv(&{s})"),
                    linalg::pinv(&a),
                    shape.to_vec(),
                ),
                (
                    format!("linalg::eigvalsh(&{s}, \"L\")"),
                    linalg::eigvalsh(&a, "L"),
                    vec_shape.clone(),
                ),
                (
                    format!("linalg::solve(&{s}, &{rhs_shape:?})"),
                    linalg::solve(&a, &b),
                    rhs_shape.clone(),
                ),
                (
                    format!("linalg::solve_triangular(&{s}, &{rhs_shape:?}, false)"),
                    linalg::solve_triangular(&a, &b, false),
                    rhs_shape.clone(),
                ),
            ];
            for (call, r, want) in singles {
                expect(
                    t,
                    "linear algebra of an empty matrix",
                    &call,
                    r,
                    &want,
                    Dtype::Float32,
                    0.0,
                );
            }
            let c = linalg::eigvals(&a).unwrap();
            assert_eq!(c.shape(), vec_shape.as_slice());
            c.eval().unwrap();
            t.row(
                "linear algebra of an empty matrix",
                &format!("linalg::eigvals(&{s})"),
                &format!("`Ok`: `{:?} {}`", c.shape(), c.dtype()),
            );
            let u: Vec<i32> = vec_shape.clone();
            expect_all(
                t,
                "linear algebra of an empty matrix",
                &format!("linalg::lu(&{s})"),
                linalg::lu(&a),
                &[&u, shape, shape],
            );
            let pair = |r: mlx_rs::Result<(Array, Array)>| r.map(|(x, y)| vec![x, y]);
            expect_all(
                t,
                "linear algebra of an empty matrix",
                &format!("linalg::lu_factor(&{s})"),
                pair(linalg::lu_factor(&a)),
                &[shape, &u],
            );
            expect_all(
                t,
                "linear algebra of an empty matrix",
                &format!("linalg::qr(&{s})"),
                pair(linalg::qr(&a)),
                &[shape, shape],
            );
            expect_all(
                t,
                "linear algebra of an empty matrix",
                &format!("linalg::eigh(&{s}, \"L\")"),
                pair(linalg::eigh(&a, "L")),
                &[&u, shape],
            );
            expect_all(
                t,
                "linear algebra of an empty matrix",
                &format!("linalg::eig(&{s})"),
                pair(linalg::eig(&a)),
                &[&u, shape],
            );
            expect_all(
                t,
                "linear algebra of an empty matrix",
                &format!("linalg::svd(&{s}, true)"),
                linalg::svd(&a, true),
                &[shape, &u, shape],
            );
            // The determinant of a 0 × 0 matrix is 1 (the empty product), as in NumPy.
            expect(
                t,
                "determinant of an empty matrix",
                &format!("linalg::det(&{s})"),
                linalg::det(&a),
                batch,
                Dtype::Float32,
                1.0,
            );
        }
    });
}

fn quantized(t: &mut Table) {
    let w = f32s(&[4, 64]);
    let q = ops::quantize(&w, None, Default::default()).unwrap();
    for (group_size, bits) in [
        (Some(0), None),
        (Some(-32), None),
        (None, Some(0)),
        (None, Some(-4)),
    ] {
        let opts = ops::QuantizeOptions {
            group_size,
            bits,
            ..Default::default()
        };
        let what = match (group_size, bits) {
            (Some(g), _) => format!("group_size: {g}"),
            (_, Some(b)) => format!("bits: {b}"),
            _ => unreachable!(),
        };
        t.err(
            &format!("quantization with {what}"),
            &format!("ops::quantize(&w, None, {{ {what} }})"),
            ops::quantize(&w, None, opts).map(|q| q.w),
        );
        t.err(
            &format!("quantization with {what}"),
            &format!("ops::dequantize(…, {{ {what} }})"),
            ops::dequantize(&q.w, &q.scales, q.biases.as_ref(), None, None, opts),
        );
        t.err(
            &format!("quantization with {what}"),
            &format!("ops::quantized_matmul(…, {{ {what} }})"),
            ops::quantized_matmul(
                &f32s(&[2, 64]),
                &q.w,
                &q.scales,
                q.biases.as_ref(),
                true,
                opts,
            ),
        );
        let idx = Array::from_slice(&[0u32], &[1]).unwrap();
        let w3 = q.w.expand_dims(0).unwrap();
        let s3 = q.scales.expand_dims(0).unwrap();
        let b3 = q.biases.as_ref().unwrap().expand_dims(0).unwrap();
        let ind = GatherIndices {
            rhs: Some(&idx),
            ..Default::default()
        };
        t.err(
            &format!("quantization with {what}"),
            &format!("ops::gather_qmm(…, {{ {what} }})"),
            ops::gather_qmm(&f32s(&[2, 64]), &w3, &s3, Some(&b3), ind, true, opts),
        );
        t.err(
            &format!("quantization with {what}"),
            &format!("ops::gather_qqmm(…, {{ {what} }})"),
            ops::gather_qqmm(&f32s(&[2, 64]), &w3, None, ind, None, None, opts),
        );
        t.err(
            &format!("quantization with {what}"),
            &format!("ops::qqmm(…, {{ {what} }})"),
            ops::qqmm(&f32s(&[2, 64]), &w, None, None, None, opts),
        );
    }
    let empty_q = ops::quantize(&zeros(&[0, 64]), None, Default::default()).unwrap();
    expect(
        t,
        "quantized product with an empty input",
        "ops::quantized_matmul(&[0, 64], w [4, 64], …)",
        ops::quantized_matmul(
            &zeros(&[0, 64]),
            &q.w,
            &q.scales,
            q.biases.as_ref(),
            true,
            Default::default(),
        ),
        &[0, 4],
        Dtype::Float32,
        0.0,
    );
    expect(
        t,
        "quantized product with an empty weight",
        "ops::quantized_matmul(&[2, 64], w [0, 64], …)",
        ops::quantized_matmul(
            &f32s(&[2, 64]),
            &empty_q.w,
            &empty_q.scales,
            empty_q.biases.as_ref(),
            true,
            Default::default(),
        ),
        &[2, 0],
        Dtype::Float32,
        0.0,
    );
    expect(
        t,
        "segmented product with no rows",
        "ops::segmented_mm(&[0, 4], &[4, 3], &[[0, 2]])",
        ops::segmented_mm(
            &zeros(&[0, 4]),
            &f32s(&[4, 3]),
            &Array::from_slice(&[0u32, 2], &[1, 2]).unwrap(),
        ),
        &[1, 0, 3],
        Dtype::Float32,
        0.0,
    );
    expect(
        t,
        "segmented product with an empty inner axis",
        "ops::segmented_mm(&[2, 0], &[0, 3], &[[0, 0]])",
        ops::segmented_mm(
            &zeros(&[2, 0]),
            &zeros(&[0, 3]),
            &Array::from_slice(&[0u32, 0], &[1, 2]).unwrap(),
        ),
        &[1, 2, 3],
        Dtype::Float32,
        0.0,
    );
}

fn convolutions(t: &mut Table) {
    let c1 = ConvOptions::<1>::default();
    let c2 = ConvOptions::<2>::default();
    let c3 = ConvOptions::<3>::default();
    let f = Dtype::Float32;
    let cases: Vec<(&str, &str, R, Vec<i32>)> = vec![
        (
            "no input channels",
            "ops::conv1d(&[1, 5, 0], &[2, 3, 0])",
            ops::conv1d(&zeros(&[1, 5, 0]), &zeros(&[2, 3, 0]), c1),
            vec![1, 3, 2],
        ),
        (
            "no input channels",
            "ops::conv2d(&[1, 5, 5, 0], &[2, 3, 3, 0])",
            ops::conv2d(&zeros(&[1, 5, 5, 0]), &zeros(&[2, 3, 3, 0]), c2),
            vec![1, 3, 3, 2],
        ),
        (
            "no input channels",
            "ops::conv3d(&[1, 4, 4, 4, 0], &[2, 3, 3, 3, 0])",
            ops::conv3d(&zeros(&[1, 4, 4, 4, 0]), &zeros(&[2, 3, 3, 3, 0]), c3),
            vec![1, 2, 2, 2, 2],
        ),
        (
            "no input channels, 2 groups",
            "ops::conv1d(&[1, 5, 0], &[2, 3, 0], groups 2)",
            ops::conv1d(
                &zeros(&[1, 5, 0]),
                &zeros(&[2, 3, 0]),
                ConvOptions { groups: 2, ..c1 },
            ),
            vec![1, 3, 2],
        ),
        (
            "no input channels",
            "ops::conv_general(&[1, 5, 0], &[2, 3, 0])",
            ops::conv_general(
                &zeros(&[1, 5, 0]),
                &zeros(&[2, 3, 0]),
                ConvGeneralOptions::default(),
            ),
            vec![1, 3, 2],
        ),
        (
            "no input channels",
            "ops::conv_transpose1d(&[1, 5, 0], &[2, 3, 0])",
            ops::conv_transpose1d(
                &zeros(&[1, 5, 0]),
                &zeros(&[2, 3, 0]),
                ConvTransposeOptions::default(),
            ),
            vec![1, 7, 2],
        ),
        (
            "no input channels",
            "ops::conv_transpose2d(&[1, 5, 5, 0], &[2, 3, 3, 0])",
            ops::conv_transpose2d(
                &zeros(&[1, 5, 5, 0]),
                &zeros(&[2, 3, 3, 0]),
                ConvTransposeOptions::default(),
            ),
            vec![1, 7, 7, 2],
        ),
        (
            "no input channels",
            "ops::conv_transpose3d(&[1, 2, 2, 2, 0], &[2, 3, 3, 3, 0])",
            ops::conv_transpose3d(
                &zeros(&[1, 2, 2, 2, 0]),
                &zeros(&[2, 3, 3, 3, 0]),
                ConvTransposeOptions::default(),
            ),
            vec![1, 4, 4, 4, 2],
        ),
        (
            "no output channels",
            "ops::conv1d(&[1, 5, 2], &[0, 3, 2])",
            ops::conv1d(&f32s(&[1, 5, 2]), &zeros(&[0, 3, 2]), c1),
            vec![1, 3, 0],
        ),
        (
            "no output channels",
            "ops::conv2d(&[1, 5, 5, 2], &[0, 3, 3, 2])",
            ops::conv2d(&f32s(&[1, 5, 5, 2]), &zeros(&[0, 3, 3, 2]), c2),
            vec![1, 3, 3, 0],
        ),
        (
            "no output channels",
            "ops::conv_general(&[1, 5, 2], &[0, 3, 2])",
            ops::conv_general(
                &f32s(&[1, 5, 2]),
                &zeros(&[0, 3, 2]),
                ConvGeneralOptions::default(),
            ),
            vec![1, 3, 0],
        ),
        (
            "no output channels",
            "ops::conv_transpose1d(&[1, 5, 2], &[0, 3, 2])",
            ops::conv_transpose1d(
                &f32s(&[1, 5, 2]),
                &zeros(&[0, 3, 2]),
                ConvTransposeOptions::default(),
            ),
            vec![1, 7, 0],
        ),
        (
            "empty batch",
            "ops::conv1d(&[0, 5, 2], &[2, 3, 2])",
            ops::conv1d(&zeros(&[0, 5, 2]), &f32s(&[2, 3, 2]), c1),
            vec![0, 3, 2],
        ),
        (
            "empty input, padded",
            "ops::conv1d(&[1, 0, 2], &[2, 1, 2], padding 1)",
            ops::conv1d(
                &zeros(&[1, 0, 2]),
                &f32s(&[2, 1, 2]),
                ConvOptions { padding: [1], ..c1 },
            ),
            vec![1, 2, 2],
        ),
    ];
    for (case, call, r, shape) in cases {
        expect(t, &format!("convolution: {case}"), call, r, &shape, f, 0.0);
    }
    t.err(
        "convolution: kernel of size 0",
        "ops::conv1d(&[1, 5, 2], &[2, 0, 2])",
        ops::conv1d(&f32s(&[1, 5, 2]), &zeros(&[2, 0, 2]), c1),
    );
    t.err(
        "convolution: kernel of size 0",
        "ops::conv2d(&[1, 5, 5, 2], &[2, 0, 3, 2])",
        ops::conv2d(&f32s(&[1, 5, 5, 2]), &zeros(&[2, 0, 3, 2]), c2),
    );
    t.err(
        "convolution: kernel of size 0",
        "ops::conv_transpose1d(&[1, 5, 2], &[2, 0, 2])",
        ops::conv_transpose1d(
            &f32s(&[1, 5, 2]),
            &zeros(&[2, 0, 2]),
            ConvTransposeOptions::default(),
        ),
    );
}

fn masked_and_attention(t: &mut Table) {
    let a = f32s(&[4]);
    let mask = Array::from_slice(&[true, false, true, true], &[4]).unwrap();
    let cases: Vec<(&str, &str, Array, Array, Vec<f32>)> = vec![
        (
            "empty source",
            "ops::masked_scatter(&[1, 2, 3, 4], &[T, F, T, T], &[])",
            mask.clone(),
            zeros(&[0]),
            vec![1.0, 2.0, 3.0, 4.0],
        ),
        (
            "source too short",
            "ops::masked_scatter(&[1, 2, 3, 4], &[T, F, T, T], &[9, 8])",
            mask.clone(),
            Array::from_slice(&[9.0f32, 8.0], &[2]).unwrap(),
            vec![9.0, 2.0, 8.0, 4.0],
        ),
        (
            "source long enough",
            "ops::masked_scatter(&[1, 2, 3, 4], &[T, F, T, T], &[9, 8, 7])",
            mask.clone(),
            Array::from_slice(&[9.0f32, 8.0, 7.0], &[3]).unwrap(),
            vec![9.0, 2.0, 8.0, 7.0],
        ),
        (
            "scalar source (broadcast)",
            "ops::masked_scatter(&[1, 2, 3, 4], &[T, F, T, T], &5)",
            mask.clone(),
            Array::scalar(5.0f32),
            vec![5.0, 2.0, 5.0, 5.0],
        ),
    ];
    for (case, call, m, src, want) in cases {
        let out = ops::masked_scatter(&a, &m, &src)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(out, want, "{call}");
        t.ok(&format!("masked scatter: {case}"), call, &out);
    }
    // Rows of a [3, 2] array under a [3] mask, with one source row for two true entries.
    let rows = f32s(&[3, 2]);
    let m = Array::from_slice(&[true, true, false], &[3]).unwrap();
    let src = Array::from_slice(&[9.0f32, 9.0], &[1, 2]).unwrap();
    let out = ops::masked_scatter(&rows, &m, &src)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(out, vec![9.0, 9.0, 3.0, 4.0, 5.0, 6.0]);
    t.ok(
        "masked scatter: one source row for two rows",
        "ops::masked_scatter(&[3, 2], &[T, T, F], &[[9, 9]])",
        &out,
    );

    let q = f32s(&[1, 2, 2, 4]);
    let kv = zeros(&[1, 0, 2, 4]);
    t.err(
        "attention with no key/value heads",
        "fast::scaled_dot_product_attention(q [1, 2, 2, 4], k [1, 0, 2, 4], …)",
        scaled_dot_product_attention(&q, &kv, &kv, 1.0, AttentionMask::None),
    );
    let q0 = zeros(&[1, 0, 2, 4]);
    t.err(
        "attention with no heads at all",
        "fast::scaled_dot_product_attention(q [1, 0, 2, 4], k [1, 0, 2, 4], …)",
        scaled_dot_product_attention(&q0, &kv, &kv, 1.0, AttentionMask::None),
    );
    t.err(
        "unflatten inferring a -1 next to a 0",
        "ops::unflatten(&[6], 0, &[0, -1])",
        ops::unflatten(&zeros(&[6]), 0, &[0, -1]),
    );
    t.err(
        "reshape inferring a -1 next to a 0",
        "a.reshape(&[0, -1]) (a: [6])",
        zeros(&[6]).reshape(&[0, -1]),
    );
}

pub(super) fn run(t: &mut Table) {
    t.section(
        "Zero-size arrays",
        "Each case is evaluated; the results have no elements or are all zeros (sums over \
         nothing), except where noted.",
    );
    sorts_and_scans(t);
    linear_algebra(t);
    quantized(t);
    convolutions(t);
    masked_and_attention(t);
}
