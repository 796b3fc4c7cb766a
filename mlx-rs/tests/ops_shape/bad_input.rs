//! Bad inputs to the creation, shape, indexing, sort, conv and quantized ops are errors.

use super::*;

fn expect_err(what: &str, r: mlx_rs::Result<impl std::fmt::Debug>, needle: &str) {
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
fn bad_inputs_are_errors() {
    let a = Array::from_slice(&[0i32, 1, 2, 3, 4, 5], &[2, 3]).unwrap();
    let f = ones(&[2, 64], Dtype::Float32).unwrap();
    expect_err("reshape", a.reshape(&[4, 2]), "Cannot reshape");
    expect_err(
        "zeros negative",
        zeros(&[2, -1], Dtype::Float32),
        "negative dimension",
    );
    expect_err(
        "broadcast_to negative",
        a.broadcast_to(&[-2, 3]),
        "negative dimension",
    );
    expect_err("transpose repeat", a.transpose_axes(&[0, 0]), "Repeat axes");
    expect_err("bad axis", a.squeeze_axis(5), "");
    expect_err("bad axis", a.expand_dims(4), "out of bounds");
    expect_err("swapaxes", a.swapaxes(0, 2), "Invalid axis");
    expect_err("concatenate", concatenate_axis(&[&a, &f], 0), "must match");
    expect_err("concatenate empty", concatenate::<Array>(&[]), "No arrays");
    expect_err("stack shapes", stack(&[&a, &f]), "");
    expect_err("split zero", a.split(0, 0), "must be positive");
    expect_err("split uneven", a.split(4, 1), "");
    expect_err("tile", tile(&a, &[-1]), "non-negative");
    expect_err("repeat", repeat(&a, -2), "non-negative");
    expect_err(
        "pad mode",
        pad(&a, &[0], &[1], &[1], &Array::from(0i32), "wrap"),
        "padding mode",
    );
    expect_err(
        "pad sizes",
        pad(&a, &[0, 1], &[1], &[1, 1], &Array::from(0i32), "constant"),
        "pad sizes",
    );
    expect_err(
        "pad nul",
        pad_symmetric(&a, 1, &Array::from(0i32), "con\0stant"),
        "NUL",
    );
    expect_err("as_strided", as_strided(&a, &[2, 4], &[3, 1], 0), "outside");
    expect_err(
        "as_strided lengths",
        as_strided(&a, &[2], &[3, 1], 0),
        "differ in length",
    );
    expect_err(
        "view",
        Array::from_slice(&[1u8, 2, 3], &[3])
            .unwrap()
            .view(Dtype::Int32),
        "multiple",
    );
    expect_err(
        "number_of_elements",
        number_of_elements(&a, &[2], false, Dtype::Int32),
        "out of range",
    );
    expect_err("depends", depends::<Array, Array>(&[], &[]), "at least one");
    expect_err("from_fp8", from_fp8(&f, Dtype::Float32), "uint8");
    expect_err("eye", eye(-1, 2, 0, Dtype::Float32), "non-negative");
    expect_err(
        "linspace",
        linspace(0.0, 1.0, -3, Dtype::Float32),
        "non-negative",
    );
    expect_err("hanning", hanning(-1), "non-negative");
    expect_err("meshgrid", meshgrid(&[&a], false, "yx"), "indexing");
    expect_err(
        "diag",
        diag(&ones(&[2, 2, 2], Dtype::Float32).unwrap(), 0),
        "1-D or 2-D",
    );
    expect_err("diagonal", a.diagonal(0, 1, 1), "same axis");
    // indexing ops
    expect_err("take float", a.take(&Array::from(1.0f32)), "integral");
    expect_err(
        "gather counts",
        gather(&a, &[&a], &[0, 1], &[1, 1]),
        "index arrays need",
    );
    expect_err(
        "gather sizes",
        gather_single(&a, &Array::from(0i32), 0, &[1, 9]),
        "Slice sizes",
    );
    expect_err("scatter", scatter(&a, &[&a], &a, &[]), "index arrays need");
    expect_err(
        "slice lengths",
        slice(&a, &[0], &[1, 1], &[1, 1]),
        "starts, stops",
    );
    expect_err(
        "slice zero step",
        slice(&a, &[0, 0], &[1, 1], &[1, 0]),
        "non-zero",
    );
    expect_err(
        "slice_update",
        slice_update(&a, &f, &[0, 0], &[1, 1], &[1, 1]),
        "",
    );
    expect_err(
        "put_along_axis",
        put_along_axis(&a, &a, &a, 3),
        "out of bounds",
    );
    // sort
    expect_err("topk", topk(&a, 9), "invalid k");
    expect_err("partition", partition_axis(&a, 5, 1), "kth");
    expect_err("searchsorted", searchsorted(&a, &a, "middle"), "side");
    // conv
    let x = ones(&[1, 8, 3], Dtype::Float32).unwrap();
    let w = ones(&[4, 3, 3], Dtype::Float32).unwrap();
    expect_err(
        "conv groups",
        conv1d(
            &x,
            &w,
            ConvOptions {
                groups: 0,
                ..Default::default()
            },
        ),
        "groups",
    );
    expect_err(
        "conv stride",
        conv2d(
            &x,
            &w,
            ConvOptions {
                stride: [1, 0],
                ..Default::default()
            },
        ),
        "stride",
    );
    expect_err(
        "conv dilation",
        conv_transpose1d(
            &x,
            &w,
            ConvTransposeOptions {
                dilation: [0],
                ..Default::default()
            },
        ),
        "dilation",
    );
    expect_err(
        "conv_general stride",
        conv_general(
            &x,
            &w,
            ConvGeneralOptions {
                stride: &[0],
                ..Default::default()
            },
        ),
        "stride",
    );
    expect_err(
        "conv channels",
        conv1d(
            &x,
            &ones(&[4, 3, 2], Dtype::Float32).unwrap(),
            ConvOptions::default(),
        ),
        "",
    );
    expect_err(
        "conv rank",
        conv1d(&f, &f, ConvOptions::default()),
        "spatial",
    );
    // quantized
    let q = |o| quantize(&f, None, o).map(|q| q.w);
    expect_err(
        "quantize group",
        q(QuantizeOptions {
            group_size: Some(48),
            ..Default::default()
        }),
        "group size",
    );
    expect_err(
        "quantize bits",
        q(QuantizeOptions {
            bits: Some(7),
            ..Default::default()
        }),
        "bits",
    );
    expect_err(
        "quantize 1-D",
        quantize(
            &ones(&[64], Dtype::Float32).unwrap(),
            None,
            QuantizeOptions::default(),
        )
        .map(|q| q.w),
        "at least 2",
    );
    expect_err(
        "quantize int",
        quantize(&a, None, QuantizeOptions::default()).map(|q| q.w),
        "floating",
    );
    let qa = quantize(&f, None, QuantizeOptions::default()).unwrap();
    expect_err(
        "dequantize biases",
        dequantize(
            &qa.w,
            &qa.scales,
            None,
            None,
            None,
            QuantizeOptions::default(),
        ),
        "Biases",
    );
    expect_err(
        "qmm shapes",
        quantized_matmul(
            &a.astype(Dtype::Float32).unwrap(),
            &qa.w,
            &qa.scales,
            qa.biases.as_ref(),
            true,
            QuantizeOptions::default(),
        ),
        "",
    );
    expect_err(
        "segmented_mm",
        segmented_mm(
            &f,
            &f.transpose().unwrap(),
            &Array::from_slice(&[0i32, 1, 2], &[3]).unwrap(),
        ),
        "segments",
    );
}

/// Errors name the Rust call site (the `#[track_caller]` chain reaches the test).
#[test]
fn errors_carry_the_call_site() {
    let a = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    match a.reshape(&[3]) {
        Err(Error::Mlx { location, .. }) => assert!(location.file().ends_with("bad_input.rs")),
        other => panic!("expected an MLX error, got {other:?}"),
    }
}
