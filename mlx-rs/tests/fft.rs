//! mlx_rs::fft against Python MLX (fixtures from tests/oracle/gen_fft_linalg.py), plus
//! round trips and bad inputs.

mod common;

use common::Case;
use mlx_rs::fft::{self, FftNorm};
use mlx_rs::{Array, Complex32, Dtype, Error};

fn norm(case: &Case) -> FftNorm {
    match case.str("norm").as_str() {
        "backward" => FftNorm::Backward,
        "ortho" => FftNorm::Ortho,
        "forward" => FftNorm::Forward,
        other => panic!("{}: unknown norm {other}", case.name),
    }
}

fn opt_int(case: &Case, key: &str) -> Option<i32> {
    case.args[key].as_i64().map(|v| v as i32)
}

fn opt_ints(case: &Case, key: &str) -> Option<Vec<i32>> {
    case.args[key]
        .as_array()
        .map(|v| v.iter().map(|x| x.as_i64().unwrap() as i32).collect())
}

fn run(case: &Case) -> Array {
    let x = || case.input(0);
    let n1 = || opt_int(case, "n");
    let nn = opt_ints(case, "n");
    let axes = opt_ints(case, "axes");
    let (n, ax) = (nn.as_deref(), axes.as_deref());
    let r = match case.op.as_str() {
        "fft" => fft::fft(&x(), n1(), case.int("axis"), norm(case)),
        "ifft" => fft::ifft(&x(), n1(), case.int("axis"), norm(case)),
        "rfft" => fft::rfft(&x(), n1(), case.int("axis"), norm(case)),
        "irfft" => fft::irfft(&x(), n1(), case.int("axis"), norm(case)),
        "fft2" => fft::fft2(&x(), n, ax, norm(case)),
        "ifft2" => fft::ifft2(&x(), n, ax, norm(case)),
        "rfft2" => fft::rfft2(&x(), n, ax, norm(case)),
        "irfft2" => fft::irfft2(&x(), n, ax, norm(case)),
        "fftn" => fft::fftn(&x(), n, ax, norm(case)),
        "ifftn" => fft::ifftn(&x(), n, ax, norm(case)),
        "rfftn" => fft::rfftn(&x(), n, ax, norm(case)),
        "irfftn" => fft::irfftn(&x(), n, ax, norm(case)),
        "fftfreq" => fft::fftfreq(case.int("n"), case.float("d")),
        "rfftfreq" => fft::rfftfreq(case.int("n"), case.float("d")),
        "fftshift" => fft::fftshift(&x(), ax),
        "ifftshift" => fft::ifftshift(&x(), ax),
        op => panic!("{}: unknown op {op}", case.name),
    };
    r.unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

#[test]
fn fft_matches_python() {
    let cases = common::load("fft");
    let mut ops: Vec<&str> = cases.iter().map(|c| c.op.as_str()).collect();
    ops.sort();
    ops.dedup();
    assert_eq!(
        ops.len(),
        16,
        "every fft function has oracle cases: {ops:?}"
    );
    for case in &cases {
        case.check(0, &run(case));
    }
}

#[test]
fn inverse_transforms_round_trip() {
    let x = Array::from_slice(&[0.5f32, -1.0, 2.0, 3.5, 0.0, 1.25, -2.0, 4.0], &[2, 4]).unwrap();
    let back = fft::irfft2(
        &fft::rfft2(&x, None, None, FftNorm::Ortho).unwrap(),
        None,
        None,
        FftNorm::Ortho,
    )
    .unwrap();
    assert_eq!(back.shape(), &[2, 4]);
    for (a, b) in back
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .zip(x.to_vec::<f32>().unwrap())
    {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let c = fft::ifftn(
        &fft::fftn(&x, None, None, FftNorm::Forward).unwrap(),
        None,
        None,
        FftNorm::Forward,
    )
    .unwrap();
    assert_eq!(c.dtype(), Dtype::Complex64);
    for (a, b) in c
        .to_vec::<Complex32>()
        .unwrap()
        .iter()
        .zip(x.to_vec::<f32>().unwrap())
    {
        assert!((a.re - b).abs() < 1e-5 && a.im.abs() < 1e-5, "{a} vs {b}");
    }
    let shifted = fft::ifftshift(&fft::fftshift(&x, None).unwrap(), None).unwrap();
    assert_eq!(shifted.to_vec::<f32>().unwrap(), x.to_vec::<f32>().unwrap());
}

#[test]
fn default_sizes_follow_numpy() {
    let c = Array::from_slice(&[Complex32::new(1.0, 0.0); 5], &[5]).unwrap();
    // irfft of m terms gives 2 * (m - 1) samples.
    assert_eq!(
        fft::irfft(&c, None, -1, FftNorm::Backward).unwrap().shape(),
        &[8]
    );
    let x = Array::from_slice(&[1.0f32; 24], &[2, 3, 4]).unwrap();
    assert_eq!(
        fft::rfft(&x, None, -1, FftNorm::Backward).unwrap().shape(),
        &[2, 3, 3]
    );
    assert_eq!(
        fft::rfftn(&x, None, None, FftNorm::Backward)
            .unwrap()
            .shape(),
        &[2, 3, 3]
    );
    assert_eq!(
        fft::fft2(&x, Some(&[5, 6]), None, FftNorm::Backward)
            .unwrap()
            .shape(),
        &[2, 5, 6]
    );
    assert_eq!(
        fft::fftn(&x, Some(&[7]), None, FftNorm::Backward)
            .unwrap()
            .shape(),
        &[2, 3, 7]
    );
}

fn assert_err_mentions<T: std::fmt::Debug>(r: mlx_rs::Result<T>, words: &[&str]) {
    let e = r.expect_err("expected an error");
    let msg = e.to_string();
    assert!(
        words
            .iter()
            .any(|w| msg.to_lowercase().contains(&w.to_lowercase())),
        "error {msg:?} mentions none of {words:?}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let x = Array::from_slice(&[1.0f32; 8], &[2, 4]).unwrap();
    assert_err_mentions(fft::fft(&x, None, 2, FftNorm::Backward), &["axis"]);
    assert_err_mentions(fft::fft(&x, Some(4), 5, FftNorm::Backward), &["axis"]);
    assert_err_mentions(
        fft::fft(&x, Some(-3), -1, FftNorm::Backward),
        &["size", "-3"],
    );
    assert_err_mentions(
        fft::fft2(&x, Some(&[2]), Some(&[0, 1]), FftNorm::Backward),
        &["sizes", "axes"],
    );
    assert_err_mentions(
        fft::fftn(&x, None, Some(&[1, 1]), FftNorm::Backward),
        &["duplicate"],
    );
    assert_err_mentions(fft::fftfreq(0, 1.0), &["greater than 0", "n"]);
    assert_err_mentions(fft::fftshift(&x, Some(&[4])), &["axis"]);
    let one = Array::from_slice(&[Complex32::new(1.0, 0.0)], &[1]).unwrap();
    assert_err_mentions(
        fft::irfft(&one, None, -1, FftNorm::Backward),
        &["size", "(0)"],
    );
    if let Err(Error::Mlx { location, .. }) = fft::fftfreq(-1, 1.0) {
        assert!(
            location.file().ends_with("fft.rs") && location.file().contains("tests"),
            "{location}"
        );
    } else {
        panic!("fftfreq(-1) must fail in MLX");
    }
}
