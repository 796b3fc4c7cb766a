//! `mlx_lm::linear`: a linear layer's product on the CPU kernels against the layer's own
//! forward in MLX (dense, quantized, with a bias, LoRA), the weight storage for the CPU,
//! and gradients through it (the kernels step aside inside a transform).

use crate::close::assert_close;
use crate::common::{cpu, normal};
use mlx_lm::kernels::cpu_gemm::{self, CpuProducts};
use mlx_lm::kernels::{cpu_quantized, cpu_rows};
use mlx_lm::linear;
use mlx_lm::tuner::{AdaptableLinear, LoraLinear};
use mlx_rs::nn::{self, MaybeQuantized, Module, Quantizable, UnaryModule};
use mlx_rs::ops::QuantizeOptions;
use mlx_rs::{Array, Dtype};

/// The GEMM's sums run in another order than MLX's BLAS: float32 rounding only.
const GEMM_ATOL: f32 = 1e-5;
/// Relative part of the same tolerance.
const GEMM_RTOL: f32 = 1e-5;

const ON: Option<CpuProducts> = Some(CpuProducts {
    gemm: true,
    threads: 2,
});

fn floats(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn dense(bias: bool) -> AdaptableLinear {
    let w = normal(&[48, 64], 1, Dtype::Float32);
    let b = bias.then(|| normal(&[48], 2, Dtype::Float32));
    nn::Linear::from_weights(w, b).unwrap().into()
}

/// Checks `linear::forward` against the layer's forward for 1, 3 and 40 rows, and that
/// the kernel took the products of `rows_taken` rows (counted by `count`).
fn check(what: &str, layer: &AdaptableLinear, count: fn() -> usize, rows_taken: &[i32]) {
    for rows in [1, 3, 40] {
        let x = normal(&[rows, 64], 10 + rows as u64, Dtype::Float32);
        let expected = floats(&layer.forward(&x).unwrap());
        let before = count();
        let y = linear::forward(layer, &x, ON).unwrap();
        assert_eq!(y.shape(), &[rows, 48]);
        let what = format!("{what}, {rows} rows");
        assert_close(&what, &floats(&y), &expected, GEMM_ATOL, GEMM_RTOL);
        let taken = count() > before;
        assert_eq!(taken, rows_taken.contains(&rows), "{what}: kernel taken");
        // Off: exactly the layer's forward.
        let off = floats(&linear::forward(layer, &x, None).unwrap());
        assert_eq!(off, expected, "{what}: without CPU products");
    }
}

#[test]
fn dense_products_run_in_the_cpu_kernels() {
    cpu(|| {
        for bias in [false, true] {
            let layer = dense(bias);
            let what = format!("dense, bias {bias}");
            check(&what, &layer, cpu_gemm::products, &[1, 3, 40]);
            // A few rows in the row kernel, many in the GEMM.
            check(&what, &layer, cpu_rows::products, &[1, 3]);
        }
    })
}

#[test]
fn stored_for_the_cpu_the_weight_keeps_its_values_and_products() {
    cpu(|| {
        let mut layer = dense(true);
        let x = normal(&[5, 64], 3, Dtype::Float32);
        let before = floats(&layer.forward(&x).unwrap());
        let params = layer.parameters().unwrap();
        assert_eq!(linear::store_for_cpu(&mut layer).unwrap(), 1);
        // Stored once: a second call changes nothing.
        assert_eq!(linear::store_for_cpu(&mut layer).unwrap(), 0);
        let MaybeQuantized::Dense(l) = layer.base() else {
            unreachable!()
        };
        let w = l.weight.value().clone();
        assert_eq!(w.shape(), &[48, 64]);
        assert!(w.is_col_contiguous() && !w.is_row_contiguous());
        let after = layer.parameters().unwrap();
        for (k, v) in &params {
            assert_eq!(floats(v), floats(&after[k]), "{k}");
        }
        // MLX's product through the row-major transpose: the same values.
        assert_close(
            "stored, MLX",
            &floats(&layer.forward(&x).unwrap()),
            &before,
            GEMM_ATOL,
            GEMM_RTOL,
        );
        check(
            "dense stored for the CPU",
            &layer,
            cpu_gemm::products,
            &[1, 3, 40],
        );
        check(
            "dense stored for the CPU",
            &layer,
            cpu_rows::products,
            &[1, 3],
        );
    })
}

#[test]
fn quantized_products_run_in_the_cpu_kernels() {
    cpu(|| {
        let base = nn::Linear::from_weights(normal(&[48, 64], 4, Dtype::Float32), None).unwrap();
        for bits in [4, 8] {
            let options = QuantizeOptions {
                group_size: Some(32),
                bits: Some(bits),
                ..Default::default()
            };
            let q = base.to_quantized(&options).unwrap();
            let layer = AdaptableLinear::Base(MaybeQuantized::Quantized(q));
            let what = format!("{bits}-bit");
            check(&what, &layer, cpu_quantized::products, &[1, 3, 40]);
        }
    })
}

#[test]
fn lora_layers_add_their_update_to_the_cpu_product() {
    cpu(|| {
        let AdaptableLinear::Base(base) = dense(false) else {
            unreachable!()
        };
        let mut lora = LoraLinear::from_base(base, 4, 0.0, 2.0).unwrap();
        lora.lora_b = nn::Param::new(normal(&[4, 48], 5, Dtype::Float32));
        let layer = AdaptableLinear::Lora(lora);
        check("LoRA", &layer, cpu_gemm::products, &[1, 3, 40]);
    })
}

/// Inside a gradient the kernels step aside (their results would carry no derivative):
/// the gradients with CPU products on equal MLX's.
#[test]
fn gradients_pass_through_with_cpu_products_on() {
    cpu(|| {
        let x = normal(&[6, 64], 6, Dtype::Float32);
        let w = normal(&[48, 64], 7, Dtype::Float32);
        let grads = |cpu: Option<CpuProducts>| {
            let loss = move |a: &[Array]| {
                let layer: AdaptableLinear =
                    nn::Linear::from_weights(a[0].clone(), None).unwrap().into();
                let y = linear::forward(&layer, &a[1], cpu).unwrap();
                Ok(vec![mlx_rs::ops::sum(&y.square()?, false)?])
            };
            let vg = mlx_rs::transforms::value_and_grad(loss, &[0, 1]).unwrap();
            let before = cpu_gemm::products();
            let (_, g) = vg.call(&[&w, &x]).unwrap();
            assert_eq!(
                cpu_gemm::products(),
                before,
                "the GEMM ran inside the gradient"
            );
            (floats(&g[0]), floats(&g[1]))
        };
        let (gw, gx) = grads(None);
        let (gw_on, gx_on) = grads(ON);
        assert!(gx.iter().any(|&v| v != 0.0));
        assert_eq!(gw_on, gw);
        assert_eq!(gx_on, gx);
    })
}

/// A dense bfloat16 layer with float32 input: every product (one row too) in `cpu_bf16`,
/// against the layer's own forward (MLX promotes the product to float32, converting the
/// weight).
#[test]
fn bfloat16_weights_with_float32_input_run_in_the_bf16_kernel() {
    cpu(|| {
        for bias in [false, true] {
            let w = normal(&[48, 64], 1, Dtype::Float32)
                .astype(Dtype::Bfloat16)
                .unwrap();
            let b = bias.then(|| normal(&[48], 2, Dtype::Float32));
            let layer: AdaptableLinear = nn::Linear::from_weights(w, b).unwrap().into();
            check(
                &format!("bfloat16, bias {bias}"),
                &layer,
                mlx_lm::kernels::cpu_bf16::products,
                &[1, 3, 40],
            );
        }
    })
}

/// `FloatDtype::Float32Activations`: a dense checkpoint keeps its bfloat16 weight matrices
/// and gets every other float tensor in float32; a quantized one gets all in float32.
/// Where MLX does the products it becomes `Float32IfQuantized` (a dense one as stored).
#[test]
fn float32_activations_keep_bfloat16_matrices_only() {
    use mlx_lm::load::FloatDtype;
    cpu(|| {
        let t = |shape: &[i32], dtype| normal(shape, 3, Dtype::Float32).astype(dtype).unwrap();
        let weights = || {
            let mut m = nn::ParamMap::new();
            m.insert("l.weight".into(), t(&[8, 4], Dtype::Bfloat16));
            m.insert("l.bias".into(), t(&[8], Dtype::Bfloat16));
            m.insert("norm.weight".into(), t(&[4], Dtype::Bfloat16));
            m.insert("h.weight".into(), t(&[8, 4], Dtype::Float16));
            m.insert("conv.weight".into(), t(&[8, 4, 1], Dtype::Bfloat16));
            m.insert("q.scales".into(), t(&[8, 4], Dtype::Bfloat16));
            m.insert("q.weight".into(), t(&[8, 4], Dtype::Uint32));
            m
        };
        let dense = FloatDtype::Float32Activations
            .apply(weights(), false)
            .unwrap();
        let dtype = |m: &nn::ParamMap, k: &str| m[k].dtype();
        assert_eq!(dtype(&dense, "l.weight"), Dtype::Bfloat16);
        for k in [
            "l.bias",
            "norm.weight",
            "h.weight",
            "conv.weight",
            "q.scales",
        ] {
            assert_eq!(dtype(&dense, k), Dtype::Float32, "{k}");
        }
        assert_eq!(dtype(&dense, "q.weight"), Dtype::Uint32);
        let quantized = FloatDtype::Float32Activations
            .apply(weights(), true)
            .unwrap();
        assert_eq!(dtype(&quantized, "l.weight"), Dtype::Float32);
        assert_eq!(dtype(&quantized, "q.weight"), Dtype::Uint32);
        // Where MLX does the products: float32 for a quantized checkpoint only.
        let mlx = FloatDtype::Float32Activations.for_products(false);
        assert_eq!(mlx, FloatDtype::Float32IfQuantized);
        assert_eq!(FloatDtype::Stored.for_products(false), FloatDtype::Stored);
        let dense = mlx.apply(weights(), false).unwrap();
        for k in ["l.weight", "l.bias", "norm.weight"] {
            assert_eq!(dtype(&dense, k), Dtype::Bfloat16, "{k}");
        }
        let quantized = mlx.apply(weights(), true).unwrap();
        assert_eq!(dtype(&quantized, "norm.weight"), Dtype::Float32);
    })
}
