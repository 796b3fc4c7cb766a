//! Class 4: index values of the gathered and segmented matrix products. MLX read
//! matrices (or inner-axis ranges) outside the operands for out-of-range values; they are
//! now bounded lazily like every other index array: negative values count from the end,
//! values past either end are clamped (reads), segment bounds are clamped to `[0, K]`.

use super::Table;
use mlx_rs::ops::{self, GatherIndices};
use mlx_rs::{Array, Dtype};

fn f32s(shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    Array::from_slice(&v, shape).unwrap()
}

fn vals(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn idx<T: mlx_rs::Element>(v: &[T]) -> Array {
    Array::from_slice(v, &[v.len() as i32]).unwrap()
}

pub(super) fn run(t: &mut Table) {
    t.section(
        "Gathered and segmented matrix products: index values",
        "Each result is compared with the same op given the bounded indices.",
    );
    let a = f32s(&[3, 2, 2]);
    let b = f32s(&[3, 2, 2]).add_scalar(1.0f32).unwrap();
    let gm = |lhs: Option<&Array>, rhs: Option<&Array>| {
        ops::gather_mm(
            &a,
            &b,
            GatherIndices {
                lhs,
                rhs,
                sorted: false,
            },
        )
    };
    let cases: Vec<(&str, Array, Array, bool)> = vec![
        (
            "lhs [-1, 7, -9] (int32)",
            idx(&[-1i32, 7, -9]),
            idx(&[2i32, 2, 0]),
            true,
        ),
        (
            "lhs [3, 100000000, 0] (uint32)",
            idx(&[3u32, 100_000_000, 0]),
            idx(&[2u32, 2, 0]),
            true,
        ),
        (
            "rhs [-4, 3, 1] (int64)",
            idx(&[-4i64, 3, 1]),
            idx(&[0i64, 2, 1]),
            false,
        ),
        (
            "rhs [-128, 127, 0] (int8)",
            idx(&[-128i8, 127, 0]),
            idx(&[0i8, 2, 0]),
            false,
        ),
    ];
    for (case, given, bounded, lhs) in cases {
        let (got, want) = if lhs {
            (gm(Some(&given), None), gm(Some(&bounded), None))
        } else {
            (gm(None, Some(&given)), gm(None, Some(&bounded)))
        };
        let (got, want) = (vals(&got.unwrap()), vals(&want.unwrap()));
        assert_eq!(got, want, "gather_mm {case}");
        t.row(
            "`gather_mm` index outside the batch of 3",
            &format!("ops::gather_mm(a [3, 2, 2], b [3, 2, 2], {case})"),
            &format!("clamped: as with `{:?}`", bounded_text(&bounded)),
        );
    }
    // The bounded indices themselves pick the matrices a plain matmul would.
    let direct = ops::take_axis(&a, &idx(&[2i32, 2, 0]), 0)
        .unwrap()
        .matmul(&b)
        .unwrap();
    assert_eq!(
        vals(&gm(Some(&idx(&[-1i32, 7, -9])), None).unwrap()),
        vals(&direct)
    );
    let empty = ops::zeros(&[0, 2, 2], Dtype::Float32).unwrap();
    t.err(
        "`gather_mm` index into an empty batch",
        "ops::gather_mm(a [0, 2, 2], b [3, 2, 2], lhs [0])",
        ops::gather_mm(
            &empty,
            &b,
            GatherIndices {
                lhs: Some(&idx(&[0u32])),
                ..Default::default()
            },
        ),
    );

    // Quantized weights: a batch of 3 matrices [4, 64].
    let w = f32s(&[3, 4, 64]);
    let q = ops::quantize(&w, None, Default::default()).unwrap();
    let x = f32s(&[2, 64]);
    let gq = |rhs: &Array| {
        let ind = GatherIndices {
            rhs: Some(rhs),
            ..Default::default()
        };
        ops::gather_qmm(
            &x,
            &q.w,
            &q.scales,
            q.biases.as_ref(),
            ind,
            true,
            Default::default(),
        )
        .unwrap()
    };
    let got = vals(&gq(&idx(&[-1i32, 9, -7])));
    let want = vals(&gq(&idx(&[2i32, 2, 0])));
    assert_eq!(got, want);
    t.row(
        "`gather_qmm` index outside the batch of 3",
        "ops::gather_qmm(x [2, 64], w [3, 4, 64] (4-bit), rhs [-1, 9, -7])",
        "clamped: as with `[2, 2, 0]`",
    );
    let xb = f32s(&[3, 2, 64]);
    let ind = GatherIndices {
        lhs: Some(&idx(&[5u32])),
        rhs: Some(&idx(&[0u32])),
        sorted: false,
    };
    let got = ops::gather_qmm(
        &xb,
        &q.w,
        &q.scales,
        q.biases.as_ref(),
        ind,
        true,
        Default::default(),
    )
    .unwrap();
    let ind = GatherIndices {
        lhs: Some(&idx(&[2u32])),
        rhs: Some(&idx(&[0u32])),
        sorted: false,
    };
    let want = ops::gather_qmm(
        &xb,
        &q.w,
        &q.scales,
        q.biases.as_ref(),
        ind,
        true,
        Default::default(),
    )
    .unwrap();
    assert_eq!(vals(&got), vals(&want));
    t.row(
        "`gather_qmm` index outside the batch of 3",
        "ops::gather_qmm(x [3, 2, 64], w [3, 4, 64], lhs [5], rhs [0])",
        "clamped: as with lhs `[2]`",
    );

    // Segments of the inner axis (K = 4).
    let a = f32s(&[2, 4]);
    let b = f32s(&[4, 3]);
    let seg = |v: &[i32]| Array::from_slice(v, &[v.len() as i32 / 2, 2]).unwrap();
    let cases: [(&[i32], &[i32]); 3] = [
        (&[0, 100, 1, 3], &[0, 4, 1, 3]),
        (&[-5, 2, 2, 9], &[0, 2, 2, 4]),
        (&[3, 1, 4, 4], &[3, 1, 4, 4]),
    ];
    for (given, bounded) in cases {
        let got = vals(&ops::segmented_mm(&a, &b, &seg(given)).unwrap());
        let want = vals(&ops::segmented_mm(&a, &b, &seg(bounded)).unwrap());
        assert_eq!(got, want, "segmented_mm {given:?}");
        t.row(
            "`segmented_mm` segment outside the inner axis (K = 4)",
            &format!("ops::segmented_mm(a [2, 4], b [4, 3], {given:?})"),
            &format!("clamped to [0, K]: as with `{bounded:?}`"),
        );
    }
    let useg = Array::from_slice(&[0u32, u32::MAX], &[1, 2]).unwrap();
    let got = vals(&ops::segmented_mm(&a, &b, &useg).unwrap());
    let want = vals(&ops::segmented_mm(&a, &b, &seg(&[0, 4])).unwrap());
    assert_eq!(got, want);
    t.row(
        "`segmented_mm` segment outside the inner axis (K = 4)",
        "ops::segmented_mm(a [2, 4], b [4, 3], [0, u32::MAX] (uint32))",
        "clamped to [0, K]: as with `[0, 4]`",
    );
}

fn bounded_text(a: &Array) -> Vec<i64> {
    a.astype(Dtype::Int64).unwrap().to_vec::<i64>().unwrap()
}
