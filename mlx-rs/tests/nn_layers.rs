//! `mlx_rs::nn` layers, activations and losses against Python's `mlx.nn`
//! (tests/oracle/gen_nn.py → tests/fixtures/nn.json), plus behaviour the oracle cannot
//! show (dropout, frozen quantized parameters, compiled activations on other threads)
//! and bad inputs.
//!
//! Every layer case loads Python's parameters with a strict `Module::update`, so the
//! parameter names are checked against Python's `tree_flatten(layer.parameters())` too.

mod common;

use common::{assert_close, to_array, Case, Tensor};
use mlx_rs::nn::{
    self, BinaryCrossEntropyOptions, Conv1d, Conv2d, CrossEntropyOptions, Dropout, Embedding, Gelu,
    GeluApprox, LayerNorm, LayerNormOptions, LeakyRelu, Linear, MaybeQuantized, Module,
    MultiHeadAttention, ParamMap, QuantizedEmbedding, QuantizedLinear, Reduction, Relu, RmsNorm,
    Rope, Sequential, Sigmoid, Silu, Tanh, UnaryModule, UpdateMode,
};
use mlx_rs::ops::{self, ConvOptions, QuantizationMode, QuantizeOptions};
use mlx_rs::{Array, Dtype, Result};
use std::collections::BTreeMap;

/// float32 results of the same MLX kernels as Python's: identical in practice.
const F32_TOL: (f64, f64) = (1e-5, 1e-6);
/// Results through sines and cosines (RoPE), which may be evaluated in another order.
const TRIG_TOL: (f64, f64) = (1e-5, 1e-5);
/// float16 results.
const F16_TOL: (f64, f64) = (1e-3, 1e-3);

fn fixture() -> Vec<Case> {
    common::load("nn")
}

fn cases_of<'a>(cases: &'a [Case], op: &str) -> Vec<&'a Case> {
    let found: Vec<&Case> = cases.iter().filter(|c| c.op == op).collect();
    assert!(!found.is_empty(), "the fixture has no `{op}` case");
    found
}

/// The arrays stored under `args[key]`, by parameter name.
fn arrays(case: &Case, key: &str) -> ParamMap {
    let tensors: BTreeMap<String, Tensor> = serde_json::from_value(case.args[key].clone())
        .unwrap_or_else(|e| panic!("{}: args.{key}: {e}", case.name));
    tensors
        .iter()
        .map(|(k, t)| (k.clone(), to_array(t)))
        .collect()
}

/// Loads Python's parameters into `layer`, strictly (every name must match).
fn load<M: Module + ?Sized>(layer: &mut M, case: &Case) {
    layer
        .update(&arrays(case, "weights"), UpdateMode::Strict)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
}

/// Compares `got` with output `i` of `case` within `tol` (float16 outputs within
/// [`F16_TOL`] at least).
fn check(case: &Case, i: usize, got: &Array, tol: (f64, f64)) {
    let tol = if case.outputs[i].dtype == "float16" {
        (tol.0.max(F16_TOL.0), tol.1.max(F16_TOL.1))
    } else {
        tol
    };
    assert_close(got, &case.outputs[i], tol.0, tol.1, &case.name);
}

fn arr2<const N: usize>(case: &Case, key: &str) -> [i32; N] {
    case.ints(key)
        .try_into()
        .unwrap_or_else(|_| panic!("{}: {key} is not {N} ints", case.name))
}

fn quant_options(case: &Case) -> QuantizeOptions {
    let mode = match case.str("mode").as_str() {
        "affine" => QuantizationMode::Affine,
        "mxfp4" => QuantizationMode::Mxfp4,
        "mxfp8" => QuantizationMode::Mxfp8,
        "nvfp4" => QuantizationMode::Nvfp4,
        m => panic!("unknown mode {m}"),
    };
    QuantizeOptions {
        group_size: Some(case.int("group_size")),
        bits: Some(case.int("bits")),
        mode,
    }
}

/// Runs `f` on the CPU. The fixtures hold the bits that MLX's CPU quantization packs;
/// MLX 0.32.2's CUDA kernels round the floating-point modes (mxfp4, …) differently, so the
/// bit-for-bit checks quantize on the CPU and run the products on the default device.
fn on_cpu<T>(f: impl FnOnce() -> Result<T>) -> T {
    mlx_rs::with_stream(&mlx_rs::Stream::new(&mlx_rs::Device::cpu()), f).unwrap()
}

/// Asserts that `module`'s parameters are exactly `want` (same names, dtypes, shapes and
/// bits).
fn assert_params_equal<M: Module + ?Sized>(module: &M, want: &ParamMap, what: &str) {
    let got = module.parameters().unwrap();
    let got_keys: Vec<&String> = got.keys().collect();
    let want_keys: Vec<&String> = want.keys().collect();
    assert_eq!(got_keys, want_keys, "{what}: parameter names");
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g.dtype(), w.dtype(), "{what}: {k} dtype");
        assert_eq!(g.shape(), w.shape(), "{what}: {k} shape");
        let equal = ops::array_equal(g, w, false)
            .unwrap()
            .item::<bool>()
            .unwrap();
        assert!(equal, "{what}: {k} differs from Python's");
    }
}

#[test]
fn layers_match_python() {
    let cases = fixture();
    let x0 = |c: &Case| c.input(0);
    for c in cases_of(&cases, "linear") {
        let mut layer = Linear::new(8, 5, c.bool("bias")).unwrap();
        load(&mut layer, c);
        check(c, 0, &layer.forward(&x0(c)).unwrap(), F32_TOL);
    }
    for c in cases_of(&cases, "sequential") {
        let mut seq = Sequential::new()
            .add(Linear::new(6, 8, true).unwrap())
            .add(Relu)
            .add(Linear::new(8, 8, false).unwrap())
            .add(Gelu)
            .add(Linear::new(8, 3, true).unwrap());
        load(&mut seq, c);
        check(c, 0, &seq.forward(&x0(c)).unwrap(), F32_TOL);
    }
    for c in cases_of(&cases, "embedding") {
        let mut emb = Embedding::new(12, 6).unwrap();
        load(&mut emb, c);
        check(c, 0, &emb.forward(&c.input(0)).unwrap(), F32_TOL);
        check(c, 1, &emb.as_linear(&c.input(1)).unwrap(), F32_TOL);
    }
    for c in cases_of(&cases, "rms_norm") {
        let mut layer = RmsNorm::new(16, c.float("eps") as f32).unwrap();
        load(&mut layer, c);
        check(c, 0, &layer.forward(&x0(c)).unwrap(), F32_TOL);
    }
    for c in cases_of(&cases, "layer_norm") {
        let opts = LayerNormOptions {
            eps: c.float("eps") as f32,
            affine: c.bool("affine"),
            bias: c.bool("bias"),
        };
        let mut layer = LayerNorm::with_options(16, opts).unwrap();
        load(&mut layer, c);
        check(c, 0, &layer.forward(&x0(c)).unwrap(), F32_TOL);
    }
    for c in cases_of(&cases, "rope") {
        let rope = Rope {
            traditional: c.bool("traditional"),
            base: c.float("base") as f32,
            scale: c.float("scale") as f32,
            ..Rope::new(c.int("dims")).unwrap()
        };
        assert!(rope.parameters().unwrap().is_empty());
        let offset = c.int("offset");
        check(c, 0, &rope.forward_at(&x0(c), offset).unwrap(), TRIG_TOL);
        let dynamic = rope
            .forward_at_array(&x0(c), &Array::scalar(offset))
            .unwrap();
        check(c, 0, &dynamic, TRIG_TOL);
        if offset == 0 {
            check(c, 0, &rope.forward(&x0(c)).unwrap(), TRIG_TOL);
        }
    }
    for c in cases_of(&cases, "conv1d") {
        let opts = ConvOptions {
            stride: [c.int("stride")],
            padding: [c.int("padding")],
            dilation: [c.int("dilation")],
            groups: c.int("groups"),
        };
        let mut conv = Conv1d::new(
            c.int("in"),
            c.int("out"),
            c.int("kernel"),
            opts,
            c.bool("bias"),
        )
        .unwrap();
        load(&mut conv, c);
        check(c, 0, &conv.forward(&x0(c)).unwrap(), F32_TOL);
    }
    for c in cases_of(&cases, "conv2d") {
        let opts = ConvOptions {
            stride: arr2(c, "stride"),
            padding: arr2(c, "padding"),
            dilation: arr2(c, "dilation"),
            groups: c.int("groups"),
        };
        let mut conv = Conv2d::new(
            c.int("in"),
            c.int("out"),
            arr2(c, "kernel"),
            opts,
            c.bool("bias"),
        )
        .unwrap();
        load(&mut conv, c);
        check(c, 0, &conv.forward(&x0(c)).unwrap(), F32_TOL);
    }
    for c in cases_of(&cases, "mha") {
        let mut mha =
            MultiHeadAttention::new(c.int("dims"), c.int("num_heads"), c.bool("bias")).unwrap();
        load(&mut mha, c);
        let mask = (c.inputs.len() > 3).then(|| c.input(3));
        let y = mha
            .forward(&c.input(0), &c.input(1), &c.input(2), mask.as_ref())
            .unwrap();
        check(c, 0, &y, F32_TOL);
    }
    for c in cases_of(&cases, "causal_mask") {
        let dtype = Dtype::from_name(&c.str("dtype")).unwrap();
        let mask = MultiHeadAttention::create_additive_causal_mask(c.int("n"), dtype).unwrap();
        check(c, 0, &mask, (0.0, 0.0));
    }
}

#[test]
fn quantized_layers_match_python_bit_for_bit() {
    let cases = fixture();
    let qlinear = cases_of(&cases, "quantized_linear");
    // every affine bits value and group size, and every floating-point mode
    let modes: Vec<(String, i32, i32)> = qlinear
        .iter()
        .map(|c| (c.str("mode"), c.int("bits"), c.int("group_size")))
        .collect();
    for bits in [2, 3, 4, 5, 6, 8] {
        assert!(
            modes.iter().any(|m| m.0 == "affine" && m.1 == bits),
            "bits {bits}"
        );
    }
    for group in [32, 64, 128] {
        assert!(
            modes.iter().any(|m| m.0 == "affine" && m.2 == group),
            "group {group}"
        );
    }
    for mode in ["mxfp4", "mxfp8", "nvfp4"] {
        assert!(modes.iter().any(|m| m.0 == mode), "mode {mode}");
    }

    for c in qlinear {
        let x = c.input(0);
        let mut dense = Linear::new(x.shape()[1], 4, c.bool("bias")).unwrap();
        load(&mut dense, c);
        let q = on_cpu(|| QuantizedLinear::from_linear(&dense, &quant_options(c)));
        assert_params_equal(&q, &arrays(c, "quantized"), &c.name);
        assert_eq!(q.input_dims(), x.shape()[1], "{}", c.name);
        check(c, 0, &q.forward(&x).unwrap(), F32_TOL);
        // the quantized parameters are frozen; only the float bias is trained (as Python)
        let trainable: Vec<String> = q.trainable_parameters().unwrap().into_keys().collect();
        let want: Vec<&str> = if c.bool("bias") { vec!["bias"] } else { vec![] };
        assert_eq!(trainable, want, "{}", c.name);
    }

    for c in cases_of(&cases, "quantized_embedding") {
        let mut dense = Embedding::new(5, 64).unwrap();
        load(&mut dense, c);
        let q = on_cpu(|| QuantizedEmbedding::from_embedding(&dense, &quant_options(c)));
        assert_params_equal(&q, &arrays(c, "quantized"), &c.name);
        assert_eq!((q.num_embeddings(), q.dims()), (5, 64));
        check(c, 0, &q.forward(&c.input(0)).unwrap(), F32_TOL);
        check(c, 1, &q.as_linear(&c.input(1)).unwrap(), F32_TOL);
        // loading Python's quantized parameters into a quantized layer works as well
        let mut loaded = q.clone();
        loaded
            .update(&arrays(c, "quantized"), UpdateMode::Strict)
            .unwrap();
        check(c, 0, &loaded.forward(&c.input(0)).unwrap(), F32_TOL);
    }
}

/// The model of the `quantize_model` case: `mlp(norm(embed(ids)))` and the tied head.
#[derive(Module)]
struct Net {
    embed: MaybeQuantized<Embedding>,
    norm: RmsNorm,
    mlp: Sequential,
}

impl Net {
    fn new() -> Result<Net> {
        Ok(Net {
            embed: Embedding::new(8, 32)?.into(),
            norm: RmsNorm::new(32, 1e-5)?,
            mlp: Sequential::new()
                .add(MaybeQuantized::from(Linear::new(32, 32, true)?))
                .add(Relu)
                .add(MaybeQuantized::from(Linear::new(32, 16, false)?)),
        })
    }

    fn forward(&self, ids: &Array) -> Result<(Array, Array)> {
        let h = self.norm.forward(&self.embed.forward(ids)?)?;
        Ok((self.mlp.forward(&h)?, self.embed.as_linear(&h)?))
    }
}

#[test]
fn quantize_swaps_layers_as_python() {
    let cases = fixture();
    let c = cases_of(&cases, "quantize_model")[0];
    let mut net = Net::new().unwrap();
    load(&mut net, c);
    let opts = QuantizeOptions {
        group_size: Some(c.int("group_size")),
        bits: Some(c.int("bits")),
        ..Default::default()
    };
    let n = on_cpu(|| nn::quantize(&mut net, &opts, |_| true));
    assert_eq!(n, 3, "embed and both linears");
    assert_params_equal(&net, &arrays(c, "quantized"), &c.name);
    let (y, logits) = net.forward(&c.input(0)).unwrap();
    check(c, 0, &y, F32_TOL);
    check(c, 1, &logits, F32_TOL);
    // quantizing again changes nothing
    assert_eq!(nn::quantize(&mut net, &opts, |_| true).unwrap(), 0);
}

#[test]
fn activations_match_python() {
    let cases = fixture();
    for c in cases_of(&cases, "activation") {
        let x = c.input(0);
        let name = c.str("fn");
        let got = match name.as_str() {
            "sigmoid" => nn::sigmoid(&x),
            "relu" => nn::relu(&x),
            "softplus" => nn::softplus(&x),
            "silu" => nn::silu(&x),
            "gelu" => nn::gelu(&x),
            "gelu_approx" => nn::gelu_approx(&x),
            "gelu_fast_approx" => nn::gelu_fast_approx(&x),
            "tanh" => nn::tanh(&x),
            "leaky_relu" => nn::leaky_relu(&x, c.float("slope") as f32),
            "swiglu" => nn::swiglu(&x, &c.input(1)),
            f => panic!("unknown activation {f}"),
        }
        .unwrap();
        check(c, 0, &got, F32_TOL);

        let layer: Option<Box<dyn UnaryModule>> = match name.as_str() {
            "relu" => Some(Box::new(Relu)),
            "silu" => Some(Box::new(Silu)),
            "gelu" => Some(Box::new(Gelu)),
            "gelu_approx" => Some(Box::new(GeluApprox)),
            "sigmoid" => Some(Box::new(Sigmoid)),
            "tanh" => Some(Box::new(Tanh)),
            "leaky_relu" => Some(Box::new(LeakyRelu {
                negative_slope: c.float("slope") as f32,
            })),
            _ => None,
        };
        if let Some(layer) = layer {
            check(c, 0, &layer.forward(&x).unwrap(), F32_TOL);
        }
    }
}

fn reduction(c: &Case) -> Reduction {
    match c.str("reduction").as_str() {
        "none" => Reduction::None,
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        r => panic!("unknown reduction {r}"),
    }
}

#[test]
fn losses_match_python() {
    let cases = fixture();
    for c in cases_of(&cases, "loss") {
        let (a, b) = (c.input(0), c.input(1));
        let weights = c.args.get("weights").is_some().then(|| c.input(2));
        let got = match c.str("fn").as_str() {
            "cross_entropy" => nn::cross_entropy(
                &a,
                &b,
                CrossEntropyOptions {
                    weights: weights.as_ref(),
                    axis: c.args.get("axis").map_or(-1, |_| c.int("axis")),
                    label_smoothing: c
                        .args
                        .get("label_smoothing")
                        .map_or(0.0, |_| c.float("label_smoothing") as f32),
                    reduction: reduction(c),
                },
            ),
            "binary_cross_entropy" => nn::binary_cross_entropy(
                &a,
                &b,
                BinaryCrossEntropyOptions {
                    weights: weights.as_ref(),
                    with_logits: c.bool("with_logits"),
                    reduction: reduction(c),
                },
            ),
            "mse_loss" => nn::mse_loss(&a, &b, reduction(c)),
            "l1_loss" => nn::l1_loss(&a, &b, reduction(c)),
            "nll_loss" => nn::nll_loss(&a, &b, -1, reduction(c)),
            f => panic!("unknown loss {f}"),
        }
        .unwrap();
        check(c, 0, &got, F32_TOL);
    }
}

#[test]
fn dropout_scales_in_training_and_is_the_identity_in_eval() {
    let x = ops::ones(&[4000], Dtype::Float32).unwrap();
    let mut drop = Dropout::new(0.25).unwrap();
    assert!(drop.is_training().unwrap());
    let y = drop.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!(
        (2700..3300).contains(&kept),
        "kept {kept} of 4000 at p = 0.25"
    );

    // a module holding it switches it
    #[derive(Module)]
    struct Block {
        drop: Dropout,
        proj: Linear,
    }
    let mut block = Block {
        drop,
        proj: Linear::new(2, 2, false).unwrap(),
    };
    block.eval().unwrap();
    assert!(!block.drop.training.0);
    assert_eq!(
        block.drop.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        vec![1.0; 4000]
    );
    assert_eq!(
        block.parameters().unwrap().len(),
        1,
        "a training flag is no parameter"
    );

    drop = Dropout::new(0.0).unwrap();
    assert_eq!(
        drop.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        vec![1.0; 4000]
    );
    let half = x.astype(Dtype::Bfloat16).unwrap();
    assert_eq!(
        Dropout::new(0.5).unwrap().forward(&half).unwrap().dtype(),
        Dtype::Bfloat16
    );
}

#[test]
fn compiled_activations_work_on_many_threads() {
    let x = Array::from_slice(&[-2.0f32, -0.5, 0.0, 0.5, 2.0], &[5]).unwrap();
    let want = nn::silu(&x).unwrap().to_vec::<f32>().unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let want = want.clone();
            std::thread::spawn(move || {
                // each thread compiles its own copy, used for several shapes (shapeless)
                for n in 1..=3 {
                    let x = Array::from_slice(&[-2.0f32, -0.5, 0.0, 0.5, 2.0], &[5]).unwrap();
                    let y = nn::silu(&x).unwrap().to_vec::<f32>().unwrap();
                    assert_eq!(y, want, "thread {i}");
                    let wide = ops::ones(&[n, 7], Dtype::Float32).unwrap();
                    assert_eq!(nn::gelu(&wide).unwrap().shape(), &[n, 7]);
                    let g = nn::swiglu(&wide, &wide).unwrap();
                    assert_eq!(g.shape(), &[n, 7]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // ... and the compiled functions go through transforms
    let grad = mlx_rs::transforms::grad(|a: &[Array]| Ok(vec![nn::silu(&a[0])?.sum(false)?]), &[0])
        .unwrap();
    let g = grad
        .call(&[Array::from_slice(&[0.0f32], &[1]).unwrap()])
        .unwrap();
    assert_eq!(g[0].to_vec::<f32>().unwrap(), vec![0.5]); // silu'(0) = 1/2
}

#[test]
fn gradients_flow_through_layers() {
    let mut model = Sequential::new()
        .add(Linear::new(4, 8, true).unwrap())
        .add(Silu)
        .add(LayerNorm::new(8).unwrap())
        .add(Linear::new(8, 3, true).unwrap());
    let x = ops::ones(&[5, 4], Dtype::Float32).unwrap();
    let targets = Array::from_slice(&[0i32, 1, 2, 1, 0], &[5]).unwrap();
    let (loss, grads) = nn::value_and_grad(&mut model, |m| {
        let opts = CrossEntropyOptions {
            reduction: Reduction::Mean,
            ..Default::default()
        };
        nn::cross_entropy(&m.forward(&x)?, &targets, opts)
    })
    .unwrap();
    assert_eq!(loss.ndim(), 0);
    let keys: Vec<&str> = grads.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.2.bias",
            "layers.2.weight",
            "layers.3.bias",
            "layers.3.weight"
        ]
    );
}

/// Runs `f`, which must fail (not panic, not succeed) with an error that mentions `says`.
fn expect_err<T>(name: &str, says: &str, f: impl FnOnce() -> Result<T>) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Err(_) => panic!("{name}: panicked"),
        Ok(Ok(_)) => panic!("{name}: accepted"),
        Ok(Err(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains(says),
                "{name}: the error should mention `{says}`: {msg}"
            );
        }
    }
}

/// `name, what the error mentions => expression returning Result;` (one line each, in
/// braces so that the table stays a table).
macro_rules! bad_inputs {
    ($($name:literal, $says:literal => $body:expr;)*) => {
        $(expect_err($name, $says, || $body);)*
    };
}

#[derive(Module)]
struct Q {
    proj: MaybeQuantized<Linear>,
}

fn f32s(shape: &[i32]) -> Array {
    ops::ones(shape, Dtype::Float32).unwrap()
}

fn q4(group_size: i32, bits: i32) -> QuantizeOptions {
    QuantizeOptions {
        group_size: Some(group_size),
        bits: Some(bits),
        ..Default::default()
    }
}

fn conv1(groups: i32) -> ConvOptions<1> {
    ConvOptions {
        groups,
        ..Default::default()
    }
}

fn quantize_linear(input_dims: i32, options: QuantizeOptions) -> Result<usize> {
    let mut m = Q {
        proj: Linear::new(input_dims, 8, true)?.into(),
    };
    nn::quantize(&mut m, &options, |_| true)
}

fn mha(q: &[i32], k: &[i32], v: &[i32]) -> Result<Array> {
    MultiHeadAttention::new(8, 2, false)?.forward(&f32s(q), &f32s(k), &f32s(v), None)
}

fn class_targets() -> Array {
    Array::from_slice(&[0i32; 4], &[4]).unwrap()
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let x45 = f32s(&[4, 5]);
    let ce = |t: &Array, o: CrossEntropyOptions| nn::cross_entropy(&x45, t, o);
    let q_embed = || QuantizedEmbedding::from_embedding(&Embedding::new(4, 64)?, &q4(64, 4));
    let mxfp4_8 = QuantizeOptions {
        bits: Some(8),
        ..QuantizeOptions::mode(QuantizationMode::Mxfp4)
    };
    let w5 = f32s(&[5]);
    bad_inputs! {
        "linear wrong last dim", "Linear" => Linear::new(3, 2, true)?.forward(&f32s(&[4, 5]));
        "linear zero dims", "Linear" => Linear::new(0, 2, true);
        "embedding float ids", "Embedding" => Embedding::new(4, 2)?.forward(&f32s(&[2]));
        "embedding as_linear wrong dim", "Embedding::as_linear" => Embedding::new(4, 2)?.as_linear(&f32s(&[3, 3]));
        "embedding 1-d weight", "Embedding" => Embedding::from_weights(f32s(&[4]));
        "quantized embedding float ids", "QuantizedEmbedding" => q_embed()?.forward(&f32s(&[2]));
        "quantized embedding as_linear", "QuantizedEmbedding" => q_embed()?.as_linear(&f32s(&[2, 32]));
        "rms norm wrong last dim", "RmsNorm" => RmsNorm::new(4, 1e-5)?.forward(&f32s(&[2, 3]));
        "rms norm zero eps", "RmsNorm" => RmsNorm::new(4, 0.0);
        "layer norm wrong last dim", "LayerNorm" => LayerNorm::new(4)?.forward(&f32s(&[2, 5]));
        "layer norm negative eps", "LayerNorm" => LayerNorm::with_options(4, LayerNormOptions { eps: -1.0, ..Default::default() });
        "rope odd dims", "Rope" => Rope::new(5);
        "rope dims past the last axis", "rope" => Rope::new(16)?.forward(&f32s(&[1, 2, 3, 8]));
        "rope 2-d input", "rope" => Rope::new(8)?.forward(&f32s(&[3, 8]));
        "conv1d groups not dividing in", "Conv1d" => Conv1d::new(4, 6, 3, conv1(3), true);
        "conv1d groups not dividing out", "Conv1d" => Conv1d::new(4, 6, 3, conv1(4), true);
        "conv1d zero groups", "Conv1d" => Conv1d::new(4, 6, 3, conv1(0), true);
        "conv1d zero kernel", "Conv1d" => Conv1d::new(4, 6, 0, conv1(1), true);
        "conv1d zero stride", "Conv1d" => Conv1d::new(4, 6, 3, ConvOptions { stride: [0], ..conv1(1) }, true);
        "conv1d negative padding", "Conv1d" => Conv1d::new(4, 6, 3, ConvOptions { padding: [-1], ..conv1(1) }, true);
        "conv1d wrong channels", "Conv1d" => Conv1d::new(4, 6, 3, conv1(2), true)?.forward(&f32s(&[1, 8, 3]));
        "conv1d 2-d input", "Conv1d" => Conv1d::new(4, 6, 3, conv1(1), true)?.forward(&f32s(&[8, 4]));
        "conv1d input shorter than the kernel", "conv" => Conv1d::new(4, 6, 5, conv1(1), true)?.forward(&f32s(&[1, 2, 4]));
        "conv2d 3-d input", "Conv2d" => Conv2d::new(3, 6, [3, 3], ConvOptions::default(), true)?.forward(&f32s(&[5, 5, 3]));
        "conv2d groups", "Conv2d" => Conv2d::new(3, 6, [3, 3], ConvOptions { groups: 2, ..Default::default() }, true);
        "dropout p = 1", "Dropout" => Dropout::new(1.0);
        "dropout p < 0", "Dropout" => Dropout::new(-0.1);
        "dropout p NaN", "Dropout" => Dropout::new(f32::NAN);
        "mha heads not dividing dims", "MultiHeadAttention" => MultiHeadAttention::new(10, 4, false);
        "mha zero heads", "MultiHeadAttention" => MultiHeadAttention::new(8, 0, false);
        "mha 2-d queries", "MultiHeadAttention" => mha(&[3, 8], &[3, 8], &[3, 8]);
        "mha keys and values differ", "MultiHeadAttention" => mha(&[1, 3, 8], &[1, 4, 8], &[1, 5, 8]);
        "mha wrong features", "Linear" => mha(&[1, 3, 6], &[1, 3, 6], &[1, 3, 6]);
        "causal mask of ints", "create_additive_causal_mask" => MultiHeadAttention::create_additive_causal_mask(3, Dtype::Int32);
        "sequential of mismatched layers", "Linear" => Sequential::new().add(Linear::new(4, 8, true)?).add(Linear::new(6, 2, true)?).forward(&f32s(&[2, 4]));
        "quantize 7 bits", "7 bits" => quantize_linear(64, q4(64, 7));
        "quantize group 48", "group size 48" => quantize_linear(96, q4(48, 4));
        "quantize mxfp4 with 8 bits", "mxfp4" => quantize_linear(64, mxfp4_8);
        "quantized linear 7 bits", "quantize" => QuantizedLinear::from_linear(&Linear::new(64, 8, true)?, &q4(64, 7));
        "quantized embedding dims 40, group 32", "quantize" => QuantizedEmbedding::from_embedding(&Embedding::new(4, 40)?, &q4(32, 4));
        "load a wrong shape", "layers.0.weight" => {
            let mut s = Sequential::new().add(Linear::new(4, 8, true)?);
            let mut p = s.parameters()?;
            p.insert("layers.0.weight".into(), f32s(&[8, 5]));
            s.update(&p, UpdateMode::Strict)
        };
        "cross entropy float class targets", "cross_entropy" => ce(&f32s(&[4]), Default::default());
        "cross entropy wrong targets shape", "cross_entropy" => ce(&class_targets().reshape(&[2, 2])?, Default::default());
        "cross entropy smoothing 1", "cross_entropy" => ce(&class_targets(), CrossEntropyOptions { label_smoothing: 1.0, ..Default::default() });
        "cross entropy axis out of range", "cross_entropy" => ce(&class_targets(), CrossEntropyOptions { axis: 2, ..Default::default() });
        "cross entropy weights' shape", "cross_entropy" => ce(&class_targets(), CrossEntropyOptions { weights: Some(&w5), ..Default::default() });
        "bce shapes differ", "binary_cross_entropy" => nn::binary_cross_entropy(&f32s(&[3]), &f32s(&[4]), Default::default());
        "mse shapes differ", "mse_loss" => nn::mse_loss(&f32s(&[3]), &f32s(&[3, 1]), Reduction::Mean);
        "l1 shapes differ", "l1_loss" => nn::l1_loss(&f32s(&[3]), &f32s(&[2]), Reduction::Sum);
        "nll float targets", "nll_loss" => nn::nll_loss(&x45, &f32s(&[4]), -1, Reduction::None);
    }

    // out-of-range ids read the nearest row (negative ones count from the end)
    let emb = Embedding::from_weights(Array::from_slice(&[0.0f32, 1.0, 2.0], &[3, 1]).unwrap());
    let far = Array::from_slice(&[-1i32, 7, -9], &[3]).unwrap();
    let rows = emb.unwrap().forward(&far).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(rows, vec![2.0, 2.0, 0.0]);

    // a layer that cannot be quantized with the options is left dense (see the report on
    // nn::quantize: Python 0.32.2 raises here instead)
    let mut m = Q {
        proj: Linear::new(40, 8, true).unwrap().into(),
    };
    assert_eq!(nn::quantize(&mut m, &q4(32, 4), |_| true).unwrap(), 0);
    assert!(matches!(m.proj, MaybeQuantized::Dense(_)));
}
