//! mlx_rs::linalg against Python MLX (fixtures from tests/oracle/gen_fft_linalg.py), on
//! the CPU stream where MLX implements the factorisations. Sign-ambiguous factors (QR,
//! SVD, eigenvectors) are checked by reconstruction and orthogonality on the host.

mod common;

use common::Case;
use mlx_rs::{linalg, with_stream, Array, Complex32, Dtype, Stream};

/// A batch of row-major matrices read back to the host.
struct Mats {
    rows: usize,
    cols: usize,
    data: Vec<Vec<f64>>,
}

fn mats(a: &Array) -> Mats {
    let shape = a.shape();
    let (rows, cols) = (
        shape[shape.len() - 2] as usize,
        shape[shape.len() - 1] as usize,
    );
    let flat: Vec<f64> = a
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    Mats {
        rows,
        cols,
        data: flat.chunks(rows * cols).map(|c| c.to_vec()).collect(),
    }
}

fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    out
}

fn assert_all_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn identity(n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect()
}

fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    (0..n * m).map(|i| a[(i % m) * n + i / m]).collect()
}

fn check_qr(case: &Case, a: &Array) {
    let (q, r) = linalg::qr(a).unwrap();
    let (a, q, r) = (mats(a), mats(&q), mats(&r));
    let k = q.cols;
    assert_eq!(
        (q.rows, r.rows, r.cols),
        (a.rows, k, a.cols),
        "{}: reduced shapes",
        case.name
    );
    for b in 0..a.data.len() {
        let qr = matmul(&q.data[b], &r.data[b], a.rows, k, a.cols);
        assert_all_close(&qr, &a.data[b], 1e-4, &format!("{}: Q R", case.name));
        let qtq = matmul(&transpose(&q.data[b], q.rows, k), &q.data[b], k, q.rows, k);
        assert_all_close(&qtq, &identity(k), 1e-4, &format!("{}: QᵀQ", case.name));
        for i in 0..k {
            for j in 0..i.min(r.cols) {
                assert!(
                    r.data[b][i * r.cols + j].abs() < 1e-6,
                    "{}: R not upper",
                    case.name
                );
            }
        }
    }
}

fn check_svd(case: &Case, a: &Array) {
    let parts = linalg::svd(a, true).unwrap();
    assert_eq!(parts.len(), 3, "{}: [U, S, Vt]", case.name);
    case.check(0, &parts[1]);
    let (u, vt, am) = (mats(&parts[0]), mats(&parts[2]), mats(a));
    let s = parts[1].to_vec::<f32>().unwrap();
    let k = am.rows.min(am.cols);
    for b in 0..am.data.len() {
        let mut rec = vec![0.0; am.rows * am.cols];
        for i in 0..am.rows {
            for j in 0..am.cols {
                rec[i * am.cols + j] = (0..k)
                    .map(|p| {
                        u.data[b][i * u.cols + p]
                            * s[b * k + p] as f64
                            * vt.data[b][p * vt.cols + j]
                    })
                    .sum();
            }
        }
        assert_all_close(&rec, &am.data[b], 1e-4, &format!("{}: U S Vt", case.name));
        let utu = matmul(
            &transpose(&u.data[b], u.rows, u.cols),
            &u.data[b],
            u.cols,
            u.rows,
            u.cols,
        );
        assert_all_close(
            &utu,
            &identity(u.cols),
            1e-4,
            &format!("{}: UᵀU", case.name),
        );
    }
}

fn check_eigh(case: &Case, a: &Array) {
    let (w, v) = linalg::eigh(a, &case.str("uplo")).unwrap();
    case.check(0, &w);
    let (am, vm) = (mats(a), mats(&v));
    let w = w.to_vec::<f32>().unwrap();
    let n = am.rows;
    let av = matmul(&am.data[0], &vm.data[0], n, n, n);
    let vw: Vec<f64> = (0..n * n)
        .map(|i| vm.data[0][i] * w[i % n] as f64)
        .collect();
    assert_all_close(&av, &vw, 1e-4, &format!("{}: A V = V diag(w)", case.name));
    let vtv = matmul(&transpose(&vm.data[0], n, n), &vm.data[0], n, n, n);
    assert_all_close(&vtv, &identity(n), 1e-4, &format!("{}: VᵀV", case.name));
}

fn check_eig(case: &Case, a: &Array) {
    let (w, v) = linalg::eig(a).unwrap();
    case.check(0, &w);
    let n = a.shape()[0] as usize;
    let am: Vec<f32> = a.to_vec().unwrap();
    let (w, v) = (
        w.to_vec::<Complex32>().unwrap(),
        v.to_vec::<Complex32>().unwrap(),
    );
    for col in 0..n {
        for row in 0..n {
            let av: Complex32 = (0..n).map(|p| v[p * n + col] * am[row * n + p]).sum();
            let vw = v[row * n + col] * w[col];
            assert!(
                (av - vw).norm() < 1e-4,
                "{}: A v = w v at ({row}, {col})",
                case.name
            );
        }
    }
}

fn check_lu(case: &Case, a: &Array) {
    let parts = linalg::lu(a).unwrap();
    assert_eq!(parts.len(), 3, "{}: [P, L, U]", case.name);
    for (i, p) in parts.iter().enumerate() {
        case.check(i, p);
    }
    let perm = parts[0].to_vec::<u32>().unwrap();
    let (l, u, am) = (mats(&parts[1]), mats(&parts[2]), mats(a));
    let n = am.rows;
    let lu = matmul(&l.data[0], &u.data[0], n, n, n);
    let permuted: Vec<f64> = (0..n * n)
        .map(|i| am.data[0][perm[i / n] as usize * n + i % n])
        .collect();
    assert_all_close(&lu, &permuted, 1e-5, &format!("{}: A[p] = L U", case.name));
}

fn ord(case: &Case) -> f64 {
    match &case.args["ord"] {
        serde_json::Value::String(s) if s == "inf" => f64::INFINITY,
        serde_json::Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        v => v.as_f64().unwrap(),
    }
}

fn axes(case: &Case) -> Option<Vec<i32>> {
    case.args["axis"]
        .as_array()
        .map(|v| v.iter().map(|x| x.as_i64().unwrap() as i32).collect())
}

fn run(case: &Case) {
    let x = case.input(0);
    let y = || case.input(1);
    let check = |r: mlx_rs::Result<Array>| {
        case.check(0, &r.unwrap_or_else(|e| panic!("{}: {e}", case.name)))
    };
    let check2 = |r: mlx_rs::Result<(Array, Array)>| {
        let (a, b) = r.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        case.check(0, &a);
        case.check(1, &b);
    };
    let ax = axes(case);
    match case.op.as_str() {
        "inv" => check(linalg::inv(&x)),
        "solve" => check(linalg::solve(&x, &y())),
        "solve_triangular" => check(linalg::solve_triangular(&x, &y(), case.bool("upper"))),
        "tri_inv" => check(linalg::tri_inv(&x, case.bool("upper"))),
        "cholesky" => check(linalg::cholesky(&x, case.bool("upper"))),
        "cholesky_inv" => check(linalg::cholesky_inv(&x, case.bool("upper"))),
        "qr" => check_qr(case, &x),
        "svd" => check_svd(case, &x),
        "svd_values" => {
            let s = linalg::svd(&x, false).unwrap();
            assert_eq!(s.len(), 1, "{}: only S", case.name);
            case.check(0, &s[0]);
        }
        "eigvalsh" => check(linalg::eigvalsh(&x, &case.str("uplo"))),
        "eigh" => check_eigh(case, &x),
        "eigvals" => check(linalg::eigvals(&x)),
        "eig" => check_eig(case, &x),
        "lu" => check_lu(case, &x),
        "lu_factor" => check2(linalg::lu_factor(&x)),
        "det" => check(linalg::det(&x)),
        "slogdet" => check2(linalg::slogdet(&x)),
        "pinv" => check(linalg::pinv(&x)),
        "norm" => check(linalg::norm(
            &x,
            ord(case),
            ax.as_deref(),
            case.bool("keepdims"),
        )),
        "norm_matrix" => check(linalg::norm_matrix(
            &x,
            &case.str("ord"),
            ax.as_deref(),
            case.bool("keepdims"),
        )),
        "norm_l2" => check(linalg::norm_l2(&x, ax.as_deref(), case.bool("keepdims"))),
        "cross" => check(linalg::cross(&x, &y(), case.int("axis"))),
        op => panic!("{}: unknown op {op}", case.name),
    }
}

#[test]
fn linalg_matches_python_on_cpu() {
    let cases = common::load("linalg");
    let mut ops: Vec<&str> = cases.iter().map(|c| c.op.as_str()).collect();
    ops.sort();
    ops.dedup();
    // 21 functions plus the compute_uv = false form of svd.
    assert_eq!(
        ops.len(),
        22,
        "every linalg function has oracle cases: {ops:?}"
    );
    let cpu = Stream::cpu();
    with_stream(&cpu, || cases.iter().for_each(run));
}

#[test]
fn inverse_times_matrix_is_identity() {
    let a = Array::from_slice(&[2.0f32, 1.0, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0, 4.0], &[3, 3]).unwrap();
    let inv = with_stream(&Stream::cpu(), || linalg::inv(&a)).unwrap();
    // Multiply on the CPU too: a GPU matmul may use TF32.
    let id = with_stream(&Stream::cpu(), || a.matmul(&inv))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want = identity(3);
    for (g, w) in id.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-5);
    }
    // float64 works too on the CPU.
    let a64 = with_stream(&Stream::cpu(), || a.astype(Dtype::Float64)).unwrap();
    let det = with_stream(&Stream::cpu(), || linalg::det(&a64)).unwrap();
    assert_eq!(det.dtype(), Dtype::Float64);
    assert!((det.item::<f64>().unwrap() - 18.0).abs() < 1e-9);
}

fn assert_err_mentions<T: std::fmt::Debug>(r: mlx_rs::Result<T>, words: &[&str]) {
    let msg = r.expect_err("expected an error").to_string().to_lowercase();
    assert!(
        words.iter().any(|w| msg.contains(&w.to_lowercase())),
        "{msg:?} mentions none of {words:?}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    with_stream(&Stream::cpu(), || {
        let rect = Array::from_slice(&[1.0f32; 6], &[2, 3]).unwrap();
        let sq = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        assert_err_mentions(linalg::inv(&rect), &["square"]);
        assert_err_mentions(linalg::cholesky(&rect, false), &["square"]);
        assert_err_mentions(linalg::eigh(&sq, "X"), &["uplo"]);
        assert_err_mentions(linalg::eigh(&sq, "L\0"), &["uplo"]);
        assert_err_mentions(
            linalg::solve(&sq, &Array::from_slice(&[1.0f32; 3], &[3]).unwrap()),
            &["shape", "dimension"],
        );
        assert_err_mentions(
            linalg::norm_matrix(&sq, "bogus", None, false),
            &["bogus", "ord"],
        );
        assert_err_mentions(
            linalg::norm(
                &Array::from_slice(&[1.0f32; 8], &[2, 2, 2]).unwrap(),
                2.0,
                None,
                false,
            ),
            &["axes"],
        );
        let four = Array::from_slice(&[1.0f32; 4], &[4]).unwrap();
        assert_err_mentions(linalg::cross(&four, &four, -1), &["size 2 or 3"]);
        assert_err_mentions(linalg::cross(&sq, &sq, 3), &["out of bounds"]);
        let half = sq.astype(Dtype::Float16).unwrap();
        assert_err_mentions(linalg::inv(&half), &["float32"]);
        // A singular matrix fails when evaluated, as an Err.
        let singular = Array::from_slice(&[1.0f32, 2.0, 2.0, 4.0], &[2, 2]).unwrap();
        let r = linalg::inv(&singular).and_then(|i| i.to_vec::<f32>());
        if let Ok(v) = &r {
            // Some LAPACK builds return inf/nan instead of failing: never a silent finite answer.
            assert!(
                v.iter().any(|x| !x.is_finite()),
                "inverse of a singular matrix: {v:?}"
            );
        } else {
            assert_err_mentions(r, &["factorization", "singular"]);
        }
    });
}
