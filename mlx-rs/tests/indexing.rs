//! NumPy-style indexing (`Array::index`, `index_put`, `set_index`) against Python MLX's
//! `a[...]` and `a[...] = v` (fixtures from tests/oracle/gen_ops_shape.py), plus the
//! `s!` macro and bad indices.

mod common;

use common::Case;
use mlx_rs::{s, Array, Dtype, Index};

/// Builds the index list of a case; `{"array": i}` refers to input `i`.
fn index_of(case: &Case) -> Vec<Index> {
    case.args["index"]
        .as_array()
        .expect("index list")
        .iter()
        .map(|e| {
            let int = |v: &serde_json::Value| v.as_i64().map(|x| x as i32);
            if let Some(i) = e.get("int") {
                Index::Int(int(i).unwrap())
            } else if let Some(sl) = e.get("slice") {
                Index::Slice {
                    start: int(&sl[0]),
                    stop: int(&sl[1]),
                    step: int(&sl[2]).unwrap_or(1),
                }
            } else if e.get("newaxis").is_some() {
                Index::NewAxis
            } else if e.get("ellipsis").is_some() {
                Index::Ellipsis
            } else {
                Index::Array(case.input(e["array"].as_u64().unwrap() as usize))
            }
        })
        .collect()
}

#[test]
fn oracle_indexing() {
    let cases = common::load("ops_shape_index");
    let (mut gets, mut puts) = (0, 0);
    for case in &cases {
        let idx = index_of(case);
        let a = case.input(0);
        let got = match case.op.as_str() {
            "index" => {
                gets += 1;
                a.index(&idx)
            }
            "index_put" => {
                puts += 1;
                let v = case.input(1);
                let out = a.index_put(&idx, &v);
                // set_index gives the same result and replaces the array.
                let mut b = a.clone();
                b.set_index(&idx, &v)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                case.check(0, &b);
                out
            }
            other => panic!("unknown op {other}"),
        };
        let got = got.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        case.check(0, &got);
    }
    assert!(gets >= 30 && puts >= 15, "{gets} reads, {puts} updates");
}

fn iota(shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    Array::from_slice(&(0..n).collect::<Vec<_>>(), shape).unwrap()
}

fn vals(a: &Array) -> Vec<i32> {
    a.to_vec::<i32>().unwrap()
}

/// The `s!` macro builds the same entries as the explicit constructors.
#[test]
fn macro_forms() {
    let a = iota(&[4, 5]);
    let explicit = [
        Index::Int(1),
        Index::Slice {
            start: None,
            stop: None,
            step: -2,
        },
    ];
    assert_eq!(
        vals(&a.index(&s![1, ..;-2]).unwrap()),
        vals(&a.index(&explicit).unwrap())
    );
    assert_eq!(vals(&a.index(&s![1, ..;-2]).unwrap()), vec![9, 7, 5]);
    // Inclusive ranges, also walking backwards.
    assert_eq!(vals(&a.index(&s![0, 1..=3]).unwrap()), vec![1, 2, 3]);
    assert_eq!(vals(&a.index(&s![0, ..=-2]).unwrap()), vec![0, 1, 2, 3]);
    assert_eq!(vals(&a.index(&s![0, 1..=3;-1]).unwrap()), vec![3, 2, 1]);
    assert_eq!(vals(&a.index(&s![0, ..4;-2]).unwrap()), vec![3, 1]);
    assert_eq!(vals(&a.index(&s![0, -2..;-1]).unwrap()), vec![4, 3]);
    assert_eq!(vals(&a.index(&s![2.., -1]).unwrap()), vec![14, 19]);
    // Arrays by value or by reference; a trailing comma is fine.
    let i = Array::from_slice(&[3i32, 0], &[2]).unwrap();
    assert_eq!(vals(&a.index(&s![&i, 0,]).unwrap()), vec![15, 0]);
    assert_eq!(vals(&a.index(&s![i, 0]).unwrap()), vec![15, 0]);
    assert_eq!(
        a.index(&s![Index::NewAxis, Index::Ellipsis, Index::NewAxis])
            .unwrap()
            .shape(),
        &[1, 4, 5, 1]
    );
    assert_eq!(a.index(&s![..]).unwrap().shape(), &[4, 5]);
    assert_eq!(a.index(&[]).unwrap().shape(), &[4, 5]);
    // Python's `...` and `None`, anywhere in the list, with or without a trailing comma.
    let shape = |idx: &[Index]| a.index(idx).unwrap().shape().to_vec();
    assert_eq!(shape(&s![None, ..., None]), vec![1, 4, 5, 1]);
    assert_eq!(shape(&s![None, ..., None,]), vec![1, 4, 5, 1]);
    assert_eq!(shape(&s![...]), vec![4, 5]);
    assert_eq!(shape(&s![..., -1]), vec![4]);
    assert_eq!(vals(&a.index(&s![..., -1]).unwrap()), vec![4, 9, 14, 19]);
    assert_eq!(shape(&s![.., None, 1..3]), vec![4, 1, 2]);
    assert_eq!(shape(&s![..., 1..;2, None]), vec![4, 2, 1]);
}

#[test]
fn macro_forms_model_code_uses() {
    // [B, T, D]
    let h = iota(&[2, 3, 4]);
    // h[:, -1, :]: the last position
    let last = h.index(&s![.., -1, ..]).unwrap();
    assert_eq!(last.shape(), &[2, 4]);
    assert_eq!(vals(&last), vec![8, 9, 10, 11, 20, 21, 22, 23]);
    // h[:, t-1:t, :] with computed bounds keeps the axis
    let t = h.dim(1);
    let kept = h.index(&s![.., t - 1..t, ..]).unwrap();
    assert_eq!(kept.shape(), &[2, 1, 4]);
    assert_eq!(vals(&kept), vals(&last));
    // h[..., ::2] and h[..., 1::2]: even and odd features (steps through the ellipsis)
    assert_eq!(vals(&h.index(&s![..., ..;2]).unwrap())[..4], [0, 2, 4, 6]);
    assert_eq!(vals(&h.index(&s![..., 1..;2]).unwrap())[..4], [1, 3, 5, 7]);
    // h[:, ::-1]: positions reversed
    assert_eq!(vals(&h.index(&s![.., ..;-1]).unwrap())[..4], [8, 9, 10, 11]);
    // h[:, :, None, :]: a new axis between positions and features
    assert_eq!(
        h.index(&s![.., .., None, ..]).unwrap().shape(),
        &[2, 3, 1, 4]
    );
}

/// Results are lazy views/gathers of the input: indexing does not change the original,
/// and `index_put` leaves its input unchanged while `set_index` replaces it.
#[test]
fn updates_are_functional() {
    let a = iota(&[2, 3]);
    let b = a.index_put(&s![.., 1], &Array::from(-1i32)).unwrap();
    assert_eq!(vals(&a), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(vals(&b), vec![0, -1, 2, 3, -1, 5]);
    let mut c = a.clone();
    c.set_index(
        &s![1, ..;-1],
        &Array::from_slice(&[7i32, 8, 9], &[3]).unwrap(),
    )
    .unwrap();
    assert_eq!(vals(&c), vec![0, 1, 2, 9, 8, 7]);
    assert_eq!(vals(&a), vec![0, 1, 2, 3, 4, 5]);
    // A failed update leaves the array as it was.
    assert!(c.set_index(&s![5], &Array::from(0i32)).is_err());
    assert_eq!(vals(&c), vec![0, 1, 2, 9, 8, 7]);
    // Values keep the array's dtype.
    let f = c.index_put(&s![0], &Array::from(2.9f32)).unwrap();
    assert_eq!(f.dtype(), Dtype::Int32);
    assert_eq!(vals(&f), vec![2, 2, 2, 9, 8, 7]);
}

/// Boolean masks select in row-major order (like NumPy) and update in place.
#[test]
fn boolean_masks() {
    let a = iota(&[2, 3]);
    let mask = Array::from_slice(&[true, false, true, false, true, false], &[2, 3]).unwrap();
    assert_eq!(vals(&a.index(&s![&mask]).unwrap()), vec![0, 2, 4]);
    let rows = Array::from_slice(&[false, true], &[2]).unwrap();
    assert_eq!(a.index(&s![&rows]).unwrap().shape(), &[1, 3]);
    let none = Array::from_slice(&[false; 6], &[2, 3]).unwrap();
    assert_eq!(a.index(&s![&none]).unwrap().shape(), &[0]);
    let b = a
        .index_put(
            &s![&mask],
            &Array::from_slice(&[10i32, 20, 30], &[3]).unwrap(),
        )
        .unwrap();
    assert_eq!(vals(&b), vec![10, 1, 20, 3, 30, 5]);
}

/// Empty selections and zero-sized arrays work.
#[test]
fn empty_selections() {
    let a = iota(&[3, 4]);
    assert_eq!(a.index(&s![2..2]).unwrap().shape(), &[0, 4]);
    assert_eq!(a.index(&s![.., 4..]).unwrap().shape(), &[3, 0]);
    let b = a.index_put(&s![2..2], &Array::from(5i32)).unwrap();
    assert_eq!(vals(&b), vals(&a));
    let e = Array::from_slice::<i32>(&[], &[0, 2]).unwrap();
    assert_eq!(e.index(&s![.., 1]).unwrap().shape(), &[0]);
    let empty_idx = Array::from_slice::<i32>(&[], &[0]).unwrap();
    assert_eq!(a.index(&s![&empty_idx]).unwrap().shape(), &[0, 4]);
}

fn expect_err(what: &str, r: mlx_rs::Result<Array>, needle: &str) {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(needle),
                "{what}: message {msg:?} lacks {needle:?}"
            );
        }
    }
}

#[test]
fn bad_indices_are_errors() {
    let a = iota(&[3, 4]);
    expect_err(
        "int past the end",
        a.index(&s![3]),
        "out of bounds for axis 0 with size 3",
    );
    expect_err(
        "int before the start",
        a.index(&s![.., -5]),
        "out of bounds for axis 1",
    );
    expect_err("huge int", a.index(&s![i32::MAX]), "out of bounds");
    expect_err("too many", a.index(&s![0, 0, 0]), "too many indices");
    expect_err(
        "scalar",
        Array::from(1i32).index(&s![0]),
        "too many indices",
    );
    expect_err(
        "two ellipses",
        a.index(&s![Index::Ellipsis, Index::Ellipsis]),
        "one ellipsis",
    );
    expect_err("zero step", a.index(&s![..;0]), "step cannot be zero");
    let f = Array::from_slice(&[0.0f32, 1.0], &[2]).unwrap();
    expect_err(
        "float index array",
        a.index(&s![&f]),
        "integers or booleans",
    );
    let m = Array::from_slice(&[true, false], &[2]).unwrap();
    expect_err("mask shape", a.index(&s![&m]), "does not match");
    expect_err(
        "0-d mask",
        a.index(&s![Array::from(true)]),
        "at least one dimension",
    );
    let i = Array::from_slice(&[0i32, 1, 2], &[3]).unwrap();
    let j = Array::from_slice(&[0i32, 1], &[2]).unwrap();
    expect_err(
        "arrays that do not broadcast",
        a.index(&s![&i, &j]),
        "broadcast",
    );
    // Updates
    expect_err(
        "put out of range",
        a.index_put(&s![7], &Array::from(0i32)),
        "out of bounds",
    );
    let v = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    expect_err("put shape", a.index_put(&s![0], &v), "broadcast");
    expect_err("put array shape", a.index_put(&s![&j], &v), "broadcast");
}

/// Index arrays of different integer dtypes (and plain integers) combine.
#[test]
fn mixed_index_dtypes() {
    let a = iota(&[3, 4]);
    let u = Array::from_slice(&[3u32, 1], &[2]).unwrap();
    let l = Array::from_slice(&[2i64, 0], &[2]).unwrap();
    assert_eq!(vals(&a.index(&s![1, &u]).unwrap()), vec![7, 5]);
    assert_eq!(vals(&a.index(&s![&l, &u]).unwrap()), vec![11, 1]);
    let b = a.index_put(&s![&l, &u], &Array::from(-1i32)).unwrap();
    assert_eq!(vals(&b), vec![0, -1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -1]);
}

/// `gather_mm` of plain matrices (the right one read through a transposed view) with an
/// index on either side or both gives `matmul`'s values and shape; on CUDA MLX 0.32 would
/// fail such a right operand unless it is passed as a batch of one, which mlx-rs does.
#[test]
fn gather_mm_of_matrices_matches_matmul() {
    use mlx_rs::ops::{self, GatherIndices};
    let a = Array::from_slice(
        &(0..12).map(|v| v as f32 * 0.5).collect::<Vec<_>>(),
        &[3, 4],
    )
    .unwrap();
    let w = Array::from_slice(
        &(0..20).map(|v| 1.0 - v as f32 * 0.25).collect::<Vec<_>>(),
        &[5, 4],
    )
    .unwrap();
    let wt = w.transpose().unwrap();
    let want = ops::matmul(&a, &wt).unwrap();
    let zero = Array::from_slice(&[0u32], &[]).unwrap();
    for (lhs, rhs) in [
        (Some(&zero), None),
        (None, Some(&zero)),
        (Some(&zero), Some(&zero)),
    ] {
        let indices = GatherIndices {
            lhs,
            rhs,
            sorted: false,
        };
        let got = ops::gather_mm(&a, &wt, indices).unwrap();
        assert_eq!(
            got.shape(),
            want.shape(),
            "lhs {:?}, rhs {:?}",
            lhs.is_some(),
            rhs.is_some()
        );
        assert_eq!(got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    }
}

/// An index array whose values are already known (made from host data) and in range goes
/// to MLX's gather as it is, with no bounding ops; a lazy index, or a known one with a
/// value to bound, gets them (and the same values as before).
#[test]
fn known_in_range_indices_add_no_ops() {
    use mlx_rs::ops;
    // Whether the graph of `x` holds the op that bounds unsigned indices (`Minimum`).
    let bounded = |x: &Array| {
        mlx_rs::graph::count_primitives_by_kind(&[x])
            .unwrap()
            .iter()
            .any(|(kind, _)| kind == "Minimum")
    };
    let a = Array::from_slice(&[10f32, 11., 12., 13.], &[4]).unwrap();
    let known = Array::from_slice(&[3u32, 0, 2], &[3]).unwrap();
    let taken = ops::take(&a, &known).unwrap();
    assert!(!bounded(&taken), "a known in-range index is not bounded");
    assert_eq!(taken.to_vec::<f32>().unwrap(), vec![13., 10., 12.]);

    // The same values computed lazily.
    let lazy = known
        .add(&Array::from_slice(&[0u32], &[]).unwrap())
        .unwrap();
    let taken = ops::take(&a, &lazy).unwrap();
    assert!(bounded(&taken), "a lazy index is bounded");
    assert_eq!(taken.to_vec::<f32>().unwrap(), vec![13., 10., 12.]);

    let past = Array::from_slice(&[7u32, 1], &[2]).unwrap();
    let taken = ops::take(&a, &past).unwrap();
    assert!(bounded(&taken), "a value past the end is bounded");
    assert_eq!(taken.to_vec::<f32>().unwrap(), vec![13., 11.]);
}
