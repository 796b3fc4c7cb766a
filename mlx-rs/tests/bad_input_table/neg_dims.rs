//! Class 3: negative dimensions. `reshape(&[-2, -6])`, `unflatten`, dynamic slice sizes
//! and a safetensors header with `"shape": [-2, -3]` made arrays of negative size that
//! later ops crashed on, hung on or read as zeros; a safetensors dimension above
//! `i32::MAX` was truncated and a NUL byte cut a tensor name short. Every place a shape
//! enters now rejects them, naming the dimension.

use super::{scratch, Table};
use mlx_rs::fft::{self, FftNorm};
use mlx_rs::ops::{self, ConvOptions};
use mlx_rs::{io, random, Array, Dtype};
use std::collections::HashMap;

/// A safetensors image with one float32 tensor `name` of `shape` whose data offsets
/// claim `nbytes` bytes (followed by that many zero bytes, capped at 64).
fn safetensors(name: &str, shape: &str, nbytes: u64, metadata: &str) -> Vec<u8> {
    let header = format!(
        "{{{metadata}\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[0,{nbytes}]}}}}"
    );
    let mut image = (header.len() as u64).to_le_bytes().to_vec();
    image.extend_from_slice(header.as_bytes());
    image.extend(std::iter::repeat_n(0u8, nbytes.min(64) as usize));
    image
}

fn ops_and_random(t: &mut Table) {
    let a12 = Array::from_slice(&[0.0f32; 12], &[12]).unwrap();
    let f = Dtype::Float32;
    let cases: Vec<(&str, mlx_rs::Result<Array>)> = vec![
        ("a.reshape(&[-2, -6]) (a: [12])", a12.reshape(&[-2, -6])),
        ("ops::reshape(&a, &[-12])", ops::reshape(&a12, &[-12])),
        ("a.reshape(&[-1, -1, 3])", a12.reshape(&[-1, -1, 3])),
        (
            "ops::unflatten(&a, 0, &[-2, -6])",
            ops::unflatten(&a12, 0, &[-2, -6]),
        ),
        ("a.unflatten(0, &[-1, -1])", a12.unflatten(0, &[-1, -1])),
        (
            "ops::slice_dynamic(&a, &[0], &[0], &[-2])",
            ops::slice_dynamic(&a12, &Array::scalar(0i32), &[0], &[-2]),
        ),
        ("ops::zeros(&[2, -3], Float32)", ops::zeros(&[2, -3], f)),
        ("ops::ones(&[-1], Float32)", ops::ones(&[-1], f)),
        (
            "ops::full(&[-2, -3], &1, Float32)",
            ops::full(&[-2, -3], &Array::scalar(1.0f32), f),
        ),
        (
            "ops::broadcast_to(&a, &[-2, 12])",
            ops::broadcast_to(&a12, &[-2, 12]),
        ),
        (
            "ops::as_strided(&a, &[-3], &[1], 0)",
            ops::as_strided(&a12, &[-3], &[1], 0),
        ),
        (
            "Array::from_slice(&[], &[-2, 0])",
            Array::from_slice::<f32>(&[], &[-2, 0]),
        ),
        (
            "Array::from_bytes(&[0; 24], &[-2, -3], Float32)",
            Array::from_bytes(&[0; 24], &[-2, -3], f),
        ),
        ("ops::eye(-2, 2, 0, Float32)", ops::eye(-2, 2, 0, f)),
        ("ops::tri(2, -2, 0, Float32)", ops::tri(2, -2, 0, f)),
        (
            "ops::linspace(0, 1, -5, Float32)",
            ops::linspace(0.0, 1.0, -5, f),
        ),
        ("ops::tile(&a, &[-2])", ops::tile(&a12, &[-2])),
        ("ops::repeat(&a, -2)", ops::repeat(&a12, -2)),
        (
            "ops::pad(&a, &[0], &[-20], &[0], &0, \"constant\")",
            ops::pad(&a12, &[0], &[-20], &[0], &Array::scalar(0.0f32), "constant"),
        ),
        (
            "ops::conv1d(&[1, 5, 1], &[1, 3, 1], padding -5)",
            ops::conv1d(
                &ops::ones(&[1, 5, 1], f).unwrap(),
                &ops::ones(&[1, 3, 1], f).unwrap(),
                ConvOptions {
                    padding: [-5],
                    ..Default::default()
                },
            ),
        ),
        (
            "fft::fft(&a, Some(-4), 0, …)",
            fft::fft(&a12, Some(-4), 0, FftNorm::Backward),
        ),
        (
            "random::uniform(&0, &1, &[3, -1], Float32, None)",
            random::uniform(
                &Array::scalar(0.0f32),
                &Array::scalar(1.0f32),
                &[3, -1],
                f,
                None,
            ),
        ),
        (
            "random::uniform_range(0.0..1.0, &[-4], None)",
            random::uniform_range(0.0..1.0, &[-4], None),
        ),
        (
            "random::normal(&[-2, -3], Float32, 0, 1, None)",
            random::normal(&[-2, -3], f, 0.0, 1.0, None),
        ),
        (
            "random::standard_normal(&[-1], None)",
            random::standard_normal(&[-1], None),
        ),
        (
            "random::normal_broadcast(&[-2], …)",
            random::normal_broadcast(&[-2], f, None, None, None),
        ),
        (
            "random::randint(&0, &9, &[-2], Int32, None)",
            random::randint(
                &Array::scalar(0i32),
                &Array::scalar(9i32),
                &[-2],
                Dtype::Int32,
                None,
            ),
        ),
        (
            "random::randint_range(0..9, &[-2, -3], None)",
            random::randint_range(0..9, &[-2, -3], None),
        ),
        (
            "random::bernoulli(&0.5, &[-2], None)",
            random::bernoulli(&Array::scalar(0.5f32), &[-2], None),
        ),
        (
            "random::truncated_normal(&-1, &1, &[-2], …)",
            random::truncated_normal(
                &Array::scalar(-1.0f32),
                &Array::scalar(1.0f32),
                &[-2],
                f,
                None,
            ),
        ),
        (
            "random::gumbel(&[-2], Float32, None)",
            random::gumbel(&[-2], f, None),
        ),
        (
            "random::laplace(&[-2], Float32, 0, 1, None)",
            random::laplace(&[-2], f, 0.0, 1.0, None),
        ),
        (
            "random::categorical_shape(&logits, -1, &[-2], None)",
            random::categorical_shape(
                &Array::from_slice(&[0.0f32; 3], &[3]).unwrap(),
                -1,
                &[-2],
                None,
            ),
        ),
        (
            "random::multivariate_normal(&mean, &cov, &[-2], …)",
            random::multivariate_normal(
                &ops::zeros(&[2], f).unwrap(),
                &ops::eye(2, 2, 0, f).unwrap(),
                &[-2],
                f,
                None,
            ),
        ),
        ("random::bits(&[-2], 4, None)", random::bits(&[-2], 4, None)),
        (
            "random::split_num(&key, -3)",
            random::split_num(&random::key(0).unwrap(), -3),
        ),
        (
            "random::categorical_num_samples(&logits, -1, -2, None)",
            random::categorical_num_samples(
                &Array::from_slice(&[0.0f32; 3], &[3]).unwrap(),
                -1,
                -2,
                None,
            ),
        ),
    ];
    for (call, r) in cases {
        t.err("negative dimension", call, r);
    }
}

fn files(t: &mut Table) {
    let load = |image: Vec<u8>| io::load_safetensors_reader(image).map(|s| s.arrays);
    t.err(
        "safetensors header with a negative dimension",
        "io::load_safetensors_reader(\"shape\": [-2, -3])",
        load(safetensors("x", "[-2,-3]", 24, "")),
    );
    t.err(
        "safetensors header with a dimension above `i32::MAX`",
        "io::load_safetensors_reader(\"shape\": [4294967297])",
        load(safetensors("x", "[4294967297]", 4, "")),
    );
    t.err(
        "safetensors header with a fractional dimension",
        "io::load_safetensors_reader(\"shape\": [2.5])",
        load(safetensors("x", "[2.5]", 8, "")),
    );
    t.err(
        "safetensors tensor name with a NUL byte",
        "io::load_safetensors_reader(\"a\\u0000b\": …)",
        load(safetensors("a\\u0000b", "[1]", 4, "")),
    );
    t.err(
        "safetensors metadata key with a NUL byte",
        "io::load_safetensors_reader(\"__metadata__\": {\"k\\u0000\": …})",
        load(safetensors(
            "x",
            "[1]",
            4,
            "\"__metadata__\":{\"k\\u0000\":\"v\"},",
        )),
    );
    let path = scratch("neg.safetensors");
    std::fs::write(&path, safetensors("x", "[-2,-3]", 24, "")).unwrap();
    t.err(
        "safetensors file with a negative dimension",
        "io::load_safetensors(path) (\"shape\": [-2, -3])",
        io::load_safetensors(&path).map(|s| s.arrays),
    );
    // A good image still loads, and an empty tensor (dimension 0) is fine.
    let ok = load(safetensors("x", "[2,0]", 0, "")).unwrap();
    assert_eq!(ok["x"].shape(), &[2, 0]);
    t.ok(
        "safetensors header with a zero dimension",
        "io::load_safetensors_reader(\"shape\": [2, 0])",
        &ok["x"].shape(),
    );

    // GGUF: the dimensions are unsigned 64-bit; NUL bytes can hide in names.
    let w = Array::from_slice(&[1.0f32; 4], &[4]).unwrap();
    let gguf = scratch("names.gguf");
    io::save_gguf(&gguf, [("w1", &w)], HashMap::<String, io::GgufValue>::new()).unwrap();
    let bytes = std::fs::read(&gguf).unwrap();
    let at = bytes.windows(2).position(|p| p == b"w1").unwrap();
    let mut nul = bytes.clone();
    nul[at + 1] = 0;
    std::fs::write(&gguf, &nul).unwrap();
    t.err(
        "GGUF tensor name with a NUL byte",
        "io::load_gguf(path) (name \"w\\0\")",
        io::load_gguf(&gguf).map(|g| g.arrays),
    );
    // After the name: the number of dimensions (1) and the dimension (4).
    let mut big = bytes.clone();
    let dim = at + 2 + 4;
    assert_eq!(&big[dim..dim + 8], &4u64.to_le_bytes());
    big[dim..dim + 8].copy_from_slice(&4294967297u64.to_le_bytes());
    std::fs::write(&gguf, &big).unwrap();
    t.err(
        "GGUF dimension above `i32::MAX`",
        "io::load_gguf(path) (shape [4294967297])",
        io::load_gguf(&gguf).map(|g| g.arrays),
    );
}

pub(super) fn run(t: &mut Table) {
    t.section(
        "Negative dimensions",
        "Each shape is rejected where it enters, with the offending dimension in the message.",
    );
    ops_and_random(t);
    files(t);
}
