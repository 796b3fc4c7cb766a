use mlx_rs::{ops, Array, Dtype};
use mlx_rs::ops::*;

fn show(name: &str, r: mlx_rs::Result<Array>) {
    match r {
        Ok(a) => match a.eval() { Ok(()) => println!("{name}: OK {:?} {}", a.shape(), a), Err(e) => println!("{name}: EVAL ERR {e}") },
        Err(e) => println!("{name}: ERR {e}"),
    }
}
fn showv(name: &str, r: mlx_rs::Result<Vec<Array>>) {
    match r {
        Ok(v) => println!("{name}: OK {:?}", v.iter().map(|a| a.shape().to_vec()).collect::<Vec<_>>()),
        Err(e) => println!("{name}: ERR {e}"),
    }
}

#[test]
fn probe() {
    let a = Array::from_slice(&[0i32, 1, 2, 3, 4], &[5]).unwrap();
    let m = Array::from_slice(&(0..12).collect::<Vec<i32>>(), &[3, 4]).unwrap();
    let f = Array::from_slice(&(0..64).map(|x| x as f32).collect::<Vec<_>>(), &[2, 32]).unwrap();
    show("slice neg", slice(&a, &[4], &[-6], &[-1]));
    show("slice neg2", slice(&a, &[-1], &[-100], &[-2]));
    show("slice big", slice(&a, &[1], &[100], &[2]));
    show("slice_update neg", slice_update(&a, &Array::from_slice(&[10i32, 11, 12], &[3]).unwrap(), &[4], &[-6], &[-2]));
    show("slice_update step", slice_update(&a, &Array::from_slice(&[10i32, 11, 12], &[3]).unwrap(), &[0], &[5], &[2]));
    show("slice_update neg1", slice_update(&a, &Array::from_slice(&[10i32, 11, 12,13,14], &[5]).unwrap(), &[4], &[-6], &[-1]));
    show("reshape bad", a.reshape(&[2, 3]));
    show("split_sections unsorted", split_sections(&m, &[3, 1], 1).map(|v| v[0].clone()));
    show("transpose bad", m.transpose_axes(&[0, 0]));
    show("transpose bad2", m.transpose_axes(&[0, 5]));
    show("from_fp8 float", from_fp8(&f, Dtype::Float32));
    show("to_fp8 int", to_fp8(&m));
    show("view bad", view(&a, Dtype::Int64));
    show("view bad2", view(&Array::scalar(1u8), Dtype::Int32));
    show("quantize bad gs", quantize(&f, None, QuantizeOptions { group_size: Some(7), ..Default::default() }).map(|q| q.w));
    show("quantize 1d", quantize(&a.astype(Dtype::Float32).unwrap(), None, QuantizeOptions::default()).map(|q| q.w));
    show("quantize bits", quantize(&f, None, QuantizeOptions { group_size: Some(32), bits: Some(7), ..Default::default() }).map(|q| q.w));
    show("quantize int", quantize(&m, None, QuantizeOptions::default()).map(|q| q.w));
    show("quantize mx", quantize(&f, None, QuantizeOptions::mode(QuantizationMode::Mxfp4)).map(|q| q.scales));
    show("quantize nv", quantize(&f, None, QuantizeOptions::mode(QuantizationMode::Nvfp4)).map(|q| q.scales));
    show("qmm bad", quantized_matmul(&f, &m, &m, None, true, QuantizeOptions::default()));
    show("conv bad", conv1d(&f, &f, ConvOptions::default()));
    let x = ones(&[1, 8, 3], Dtype::Float32).unwrap();
    let w = ones(&[4, 3, 3], Dtype::Float32).unwrap();
    show("conv_general def", conv_general(&x, &w, ConvGeneralOptions::default()));
    show("conv1d groups0", conv1d(&x, &w, ConvOptions { groups: 0, ..Default::default() }));
    show("conv1d stride0", conv1d(&x, &w, ConvOptions { stride: [0], ..Default::default() }));
    show("conv1d dil0", conv1d(&x, &w, ConvOptions { dilation: [0], ..Default::default() }));
    show("conv1d padneg", conv1d(&x, &w, ConvOptions { padding: [-50], ..Default::default() }));
    show("convt outpad", conv_transpose1d(&x, &w, ConvTransposeOptions { output_padding: [-50], ..Default::default() }));
    show("convt stride0", conv_transpose1d(&x, &w, ConvTransposeOptions { stride: [0], ..Default::default() }));
    show("take float", take(&a, &Array::scalar(1.0f32)));
    show("gather bad slice", gather(&m, &[Array::from_slice(&[0i32], &[1]).unwrap()], &[0], &[1]));
    show("gather bad slice2", gather(&m, &[Array::from_slice(&[0i32], &[1]).unwrap()], &[0], &[1, 9]));
    show("tile empty", tile(&m, &[]));
    show("diagonal bad", diagonal(&m, 0, 0, 0));
    show("meshgrid bad", meshgrid(&[&a], false, "zz").map(|v| v[0].clone()));
    show("pad bad mode", pad(&a, &[0], &[1], &[1], &Array::scalar(0i32), "zz"));
    show("pad neg", pad(&a, &[0], &[-1], &[1], &Array::scalar(0i32), "constant"));
    show("pad_sym neg", pad_symmetric(&a, -2, &Array::scalar(0i32), "constant"));
    show("searchsorted bad", searchsorted(&a, &a, "middle"));
    show("topk big", topk(&a, 9));
    show("topk neg", topk(&a, -1));
    show("partition bad", partition(&a, 9));
    show("argpartition neg", argpartition(&a, -1));
    show("unflatten bad", unflatten(&m, 1, &[3, 3]));
    show("roll mismatch", roll_axes(&m, &[1, 2, 3], &[0, 1]));
    show("roll empty", roll(&m, &[]));
    show("noe bad", number_of_elements(&m, &[5], false, Dtype::Int32));
    show("as_strided oob", as_strided(&m, &[3, 5], &[4, 1], 0));
    show("hadamard bad", hadamard_transform(&ones(&[3, 5], Dtype::Float32).unwrap(), None));
    show("bmm bad", block_masked_mm(&f, &f.transpose().unwrap(), 7, None, None, None));
    show("linspace 0", linspace(0.0, 1.0, 0, Dtype::Float32));
    show("linspace 1", linspace(0.0, 1.0, 1, Dtype::Float32));
    show("bcast bad", broadcast_arrays(&[&a, &m]).map(|v| v[0].clone()));
    show("stack empty", stack::<Array>(&[]));
    show("concat empty", concatenate::<Array>(&[]));
    show("concat mism", concatenate_axis(&[&m, &f], 0));
    show("moveaxis bad", moveaxis(&m, 0, 4));
    show("diff big", diff(&a, 9, 0));
    show("diff 0d", diff(&Array::scalar(1i32), 1, 0));
    showv("depends empty", depends::<Array, Array>(&[], &[]));
    show("masked_scatter bad", masked_scatter(&m, &a.astype(Dtype::Bool).unwrap(), &a));
    show("masked_scatter short", masked_scatter(&m, &ones(&[3,4], Dtype::Bool).unwrap(), &a));
    show("take_along bad", take_along_axis(&m, &a, 0));
    show("put_along bad", put_along_axis(&m, &a, &a, 3));
    show("scatter bad rank", scatter(&m, &[&a], &a, &[0]));
    show("scatter_single bad", scatter_single(&m, &a, &a, 0));
    show("slice_dynamic bad", slice_dynamic(&m, &Array::scalar(1i32), &[0, 1], &[1]));
    show("slice_dynamic ok", slice_dynamic(&m, &Array::from_slice(&[1i32], &[1]).unwrap(), &[0], &[2]));
    show("slice_update_dyn bad", slice_update_dynamic(&m, &m, &Array::scalar(1i32), &[0, 1]));
    show("trace_axes bad", trace_axes(&m, 0, 0, 9, Dtype::Int32));
    show("diag 3d", diag(&ones(&[2,2,2], Dtype::Float32).unwrap(), 0));
    show("full bcast bad", full(&[2, 3], &a, Dtype::Int32));
    show("tri neg", tri(-1, 2, 0, Dtype::Float32));
    show("repeat neg", repeat_axis(&m, -1, 0));
    show("repeat axis bad", repeat_axis(&m, 2, 4));
    show("flatten bad", flatten(&m, 1, 0));
    show("squeeze bad", squeeze_axis(&m, 0));
    show("expand bad", expand_dims(&m, 5));
    show("swap bad", swapaxes(&m, 0, 3));
    show("gather_mm bad", gather_mm(&f, &f, GatherIndices::default()));
    show("segmented ok", segmented_mm(&ones(&[2, 4], Dtype::Float32).unwrap(), &ones(&[4, 3], Dtype::Float32).unwrap(), &Array::from_slice(&[0i32, 2, 2, 4], &[2, 2]).unwrap()));
    show("segmented bad", segmented_mm(&ones(&[2, 4], Dtype::Float32).unwrap(), &ones(&[4, 3], Dtype::Float32).unwrap(), &Array::from_slice(&[0i32, 2, 2], &[3]).unwrap()));
    show("eye neg k", ops::eye(3, 3, -5, Dtype::Float32));
    show("window 0", hanning(0));
    show("window 1", hanning(1));
    show("qqmm affine", qqmm(&f, &f, None, None, None, QuantizeOptions::default()));
    show("dequantize bad", dequantize(&m, &m, None, None, None, QuantizeOptions::default()));
}
