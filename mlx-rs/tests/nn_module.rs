//! The module tree of `mlx_rs::nn`: the derive, listing and updating parameters with
//! checks, freezing, train/eval, save/load, dtype casts, gradients and quantization.

use mlx_rs::nn::{
    self, Linear, MaybeQuantized, Module, Param, ParamMap, TrainingFlag, UnaryModule, UpdateMode,
};
use mlx_rs::ops::QuantizeOptions;
use mlx_rs::{io, ops, Array, Dtype, Result};

/// A layer that only keeps a training flag (as dropout does).
#[derive(Module, Default)]
struct Flagged {
    training: TrainingFlag,
    rate: f32,
}

#[derive(Module)]
struct Block {
    proj: Linear,
    drop: Flagged,
}

#[derive(Module)]
struct Tree {
    embed: Param,
    layers: Vec<Block>,
    #[module(rename = "lm_head")]
    head: Linear,
    norm: Option<Linear>,
    missing: Option<Linear>,
    act: Vec<Box<dyn UnaryModule>>,
    #[module(skip)]
    cache: Vec<Array>,
    #[module(skip)]
    constant: Param,
    name: String,
}

fn tree(n_layers: usize) -> Tree {
    Tree {
        embed: Param::new(ops::ones(&[5, 4], Dtype::Float32).unwrap()),
        layers: (0..n_layers)
            .map(|_| Block {
                proj: Linear::new(4, 4, true).unwrap(),
                drop: Flagged::default(),
            })
            .collect(),
        head: Linear::new(4, 2, false).unwrap(),
        norm: Some(Linear::new(2, 2, true).unwrap()),
        missing: None,
        act: vec![Box::new(Linear::new(2, 3, false).unwrap())],
        cache: vec![Array::scalar(1.0f32)],
        constant: Param::new(Array::scalar(3.0f32)),
        name: "tree".into(),
    }
}

fn keys(m: &ParamMap) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

fn values(m: &impl Module) -> Vec<(String, Vec<f32>)> {
    m.parameters()
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap(),
            )
        })
        .collect()
}

#[test]
fn derive_lists_fields_by_name() {
    let t = tree(2);
    let params = t.parameters().unwrap();
    assert_eq!(
        keys(&params),
        [
            "act.0.weight",
            "embed",
            "layers.0.proj.bias",
            "layers.0.proj.weight",
            "layers.1.proj.bias",
            "layers.1.proj.weight",
            "lm_head.weight",
            "norm.bias",
            "norm.weight",
        ]
    );
    assert_eq!(params["lm_head.weight"].shape(), &[2, 4]);
    assert_eq!(t.num_parameters().unwrap(), 20 + 2 * 20 + 8 + 6 + 6);
    let _ = (&t.cache, &t.constant, &t.name, &t.missing);
}

/// Each bad array: what it is, the map given to `update`, the key the error must name.
fn bad_updates(t: &Tree) -> Vec<(&'static str, ParamMap, &'static str)> {
    let full = t.parameters().unwrap();
    let with = |f: &dyn Fn(&mut ParamMap)| {
        let mut m = full.clone();
        f(&mut m);
        m
    };
    vec![
        (
            "unexpected key",
            with(&|m| {
                m.insert(
                    "layers.2.proj.weight".into(),
                    ops::zeros(&[4, 4], Dtype::Float32).unwrap(),
                );
            }),
            "layers.2.proj.weight",
        ),
        (
            "missing key",
            with(&|m| {
                m.remove("norm.bias");
            }),
            "norm.bias",
        ),
        (
            "wrong shape",
            with(&|m| {
                m.insert("embed".into(), ops::zeros(&[4, 5], Dtype::Float32).unwrap());
            }),
            "embed",
        ),
        (
            "wrong dtype",
            with(&|m| {
                m.insert(
                    "lm_head.weight".into(),
                    ops::zeros(&[2, 4], Dtype::Float16).unwrap(),
                );
            }),
            "lm_head.weight",
        ),
        (
            "a skipped field",
            with(&|m| {
                m.insert("constant".into(), Array::scalar(0.0f32));
            }),
            "constant",
        ),
    ]
}

#[test]
fn strict_update_errors_name_the_key_and_change_nothing() {
    let mut t = tree(2);
    let zeros: ParamMap = t
        .parameters()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, ops::zeros_like(&v).unwrap()))
        .collect();
    for (what, mut arrays, key) in bad_updates(&t) {
        // make every good array differ, so a partial application would show
        for (k, v) in arrays.iter_mut() {
            if zeros
                .get(k)
                .is_some_and(|z| z.shape() == v.shape() && z.dtype() == v.dtype())
            {
                *v = zeros[k].clone();
            }
        }
        let before = values(&t);
        let err = t
            .update(&arrays, UpdateMode::Strict)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("`{key}`")), "{what}: {err}");
        assert_eq!(values(&t), before, "{what}: the model changed");
    }
    // The full map applies.
    let report = t.update(&zeros, UpdateMode::Strict).unwrap();
    assert!(report.is_complete());
    assert!(values(&t).iter().all(|(_, v)| v.iter().all(|x| *x == 0.0)));
}

#[test]
fn partial_and_lenient_updates() {
    let mut t = tree(1);
    let one = ParamMap::from([(
        "norm.bias".to_string(),
        ops::full(&[2], &Array::scalar(7.0f32), Dtype::Float32).unwrap(),
    )]);
    // Partial: what is given must be right; the rest stays.
    let before = t.parameters().unwrap()["embed"].to_vec::<f32>().unwrap();
    t.update(&one, UpdateMode::Partial).unwrap();
    assert_eq!(
        t.norm
            .as_ref()
            .unwrap()
            .bias
            .as_ref()
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        [7.0, 7.0]
    );
    assert_eq!(
        t.parameters().unwrap()["embed"].to_vec::<f32>().unwrap(),
        before
    );
    for (what, arrays, key) in bad_updates(&t) {
        if what == "missing key" {
            assert!(t.update(&arrays, UpdateMode::Partial).is_ok());
            continue;
        }
        let err = t
            .update(&arrays, UpdateMode::Partial)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("`{key}`")), "{what}: {err}");
    }

    // Lenient: applies what fits and reports the rest.
    let mut arrays = ParamMap::from([
        (
            "embed".to_string(),
            ops::zeros(&[5, 4], Dtype::Float32).unwrap(),
        ),
        (
            "lm_head.weight".to_string(),
            ops::zeros(&[3, 3], Dtype::Float32).unwrap(),
        ),
        ("nope".to_string(), Array::scalar(1.0f32)),
    ]);
    arrays.insert(
        "norm.weight".into(),
        ops::zeros(&[2, 2], Dtype::Int32).unwrap(),
    );
    let head_before = t.head.weight.to_vec::<f32>().unwrap();
    let report = t.update(&arrays, UpdateMode::Lenient).unwrap();
    assert!(!report.is_complete());
    assert_eq!(report.unexpected, ["nope"]);
    assert_eq!(
        report
            .mismatched
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["lm_head.weight", "norm.weight"]
    );
    assert!(
        report.mismatched[0].1.contains("shape"),
        "{:?}",
        report.mismatched
    );
    assert!(
        report.mismatched[1].1.contains("dtype"),
        "{:?}",
        report.mismatched
    );
    assert!(report.missing.contains(&"norm.bias".to_string()));
    assert!(!report.missing.contains(&"embed".to_string()));
    assert_eq!(t.embed.to_vec::<f32>().unwrap(), vec![0.0; 20]);
    assert_eq!(t.head.weight.to_vec::<f32>().unwrap(), head_before);
}

#[test]
fn freeze_by_prefix_is_segment_wise() {
    let mut t = tree(11);
    t.freeze_prefix("layers.1").unwrap();
    let frozen = t.frozen_parameters().unwrap();
    assert_eq!(
        keys(&frozen),
        ["layers.1.proj.bias", "layers.1.proj.weight"]
    );
    let trainable = t.trainable_parameters().unwrap();
    assert!(trainable.contains_key("layers.10.proj.weight"));
    assert_eq!(
        trainable.len() + frozen.len(),
        t.parameters().unwrap().len()
    );

    // a whole key, a leaf, and unknown prefixes
    t.freeze_prefix("embed").unwrap();
    assert!(t.embed.is_frozen());
    for bad in ["layers.1.pro", "layer", "layers.11", "embed.x"] {
        let err = t.freeze_prefix(bad).unwrap_err().to_string();
        assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        assert!(t.unfreeze_prefix(bad).is_err(), "{bad}");
    }
    t.unfreeze_prefix("layers.1.proj.weight").unwrap();
    assert_eq!(
        keys(&t.frozen_parameters().unwrap()),
        ["embed", "layers.1.proj.bias"]
    );
    t.freeze().unwrap();
    assert!(t.trainable_parameters().unwrap().is_empty());
    t.unfreeze().unwrap();
    assert!(t.frozen_parameters().unwrap().is_empty());
    // Freezing survives an update of the value.
    t.freeze_prefix("lm_head").unwrap();
    let w = ParamMap::from([(
        "lm_head.weight".to_string(),
        ops::zeros(&[2, 4], Dtype::Float32).unwrap(),
    )]);
    t.update(&w, UpdateMode::Partial).unwrap();
    assert!(t.head.weight.is_frozen());
}

#[derive(Module)]
struct Mlp {
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    fn loss(&self, x: &Array) -> Result<Array> {
        self.l2
            .forward(&self.l1.forward(x)?.tanh()?)?
            .square()?
            .sum(false)
    }
}

#[test]
fn value_and_grad_skips_frozen_parameters_and_restores_the_model() {
    let mut m = Mlp {
        l1: Linear::new(3, 4, true).unwrap(),
        l2: Linear::new(4, 2, true).unwrap(),
    };
    let x = ops::ones(&[5, 3], Dtype::Float32).unwrap();
    let (loss, grads) = nn::value_and_grad(&mut m, |m| m.loss(&x)).unwrap();
    assert_eq!(
        keys(&grads),
        ["l1.bias", "l1.weight", "l2.bias", "l2.weight"]
    );
    assert_eq!(
        loss.item::<f32>().unwrap(),
        m.loss(&x).unwrap().item::<f32>().unwrap()
    );

    m.freeze_prefix("l1").unwrap();
    let (_, partial) = nn::value_and_grad(&mut m, |m| m.loss(&x)).unwrap();
    assert_eq!(keys(&partial), ["l2.bias", "l2.weight"]);
    for k in ["l2.bias", "l2.weight"] {
        assert_eq!(
            partial[k].to_vec::<f32>().unwrap(),
            grads[k].to_vec::<f32>().unwrap()
        );
    }

    // A loss that fails: the error comes back and the parameters are the real ones again.
    let before = values(&m);
    let err = nn::value_and_grad(&mut m, |m| {
        m.l1.forward(&ops::ones(&[2, 7], Dtype::Float32)?)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("Linear"), "{err}");
    assert_eq!(values(&m), before);
    assert_eq!(
        m.loss(&x).unwrap().item::<f32>().unwrap(),
        loss.item::<f32>().unwrap()
    );

    m.freeze().unwrap();
    assert!(nn::value_and_grad(&mut m, |m| m.loss(&x)).is_err());
}

#[test]
fn train_and_eval_set_every_flag() {
    let mut t = tree(3);
    assert!(t.is_training().unwrap());
    t.eval().unwrap();
    assert!(!t.is_training().unwrap());
    assert!(t.layers.iter().all(|b| !b.drop.training.0));
    t.train(true).unwrap();
    assert!(t.layers.iter().all(|b| b.drop.training.0));
    // No flag anywhere: training, as in Python.
    let mlp = Mlp {
        l1: Linear::new(1, 1, false).unwrap(),
        l2: Linear::new(1, 1, false).unwrap(),
    };
    assert!(mlp.is_training().unwrap());
    assert_eq!(t.layers[0].drop.rate, 0.0);
}

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mlx-rs-nn-module-{}-{name}", std::process::id()))
}

#[test]
fn save_and_load_weights() {
    let t = tree(2);
    let path = scratch("round.safetensors");
    t.save_weights(&path).unwrap();
    let mut u = tree(2);
    assert_ne!(values(&t), values(&u));
    u.load_weights(&path, UpdateMode::Strict).unwrap();
    assert_eq!(values(&t), values(&u));
    assert_eq!(
        io::load_safetensors(&path).unwrap().metadata["format"],
        "mlx"
    );

    // Another architecture: strict fails naming the key and changes nothing.
    let mut v = tree(3);
    let before = values(&v);
    let err = v
        .load_weights(&path, UpdateMode::Strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`layers.2.proj.weight`"), "{err}"); // the first missing, in field order
    assert_eq!(values(&v), before);
    let report = v.load_weights(&path, UpdateMode::Lenient).unwrap();
    assert_eq!(
        report.missing,
        ["layers.2.proj.weight", "layers.2.proj.bias"]
    );

    // A missing file and a corrupt one.
    assert!(u
        .load_weights(scratch("nothing-here.safetensors"), UpdateMode::Strict)
        .is_err());
    let bytes = std::fs::read(&path).unwrap();
    let corrupt = scratch("corrupt.safetensors");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let before = values(&u);
    assert!(u.load_weights(&corrupt, UpdateMode::Strict).is_err());
    std::fs::write(&corrupt, b"not a safetensors file at all").unwrap();
    assert!(u.load_weights(&corrupt, UpdateMode::Strict).is_err());
    assert_eq!(values(&u), before);
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&corrupt).unwrap();
}

#[test]
fn set_dtype_casts_floats_only() {
    let mut t = tree(1);
    t.set_dtype(Dtype::Bfloat16).unwrap();
    assert!(t
        .parameters()
        .unwrap()
        .values()
        .all(|v| v.dtype() == Dtype::Bfloat16));
    assert!(t.set_dtype(Dtype::Int32).is_err());
    assert!(t
        .parameters()
        .unwrap()
        .values()
        .all(|v| v.dtype() == Dtype::Bfloat16));

    // A quantized layer keeps its packed uint32 weight.
    let mut q = Quantized {
        proj: Linear::new(64, 8, true).unwrap().into(),
    };
    nn::quantize(&mut q, &opts(), |_| true).unwrap();
    q.set_dtype(Dtype::Float16).unwrap();
    let p = q.parameters().unwrap();
    assert_eq!(p["proj.weight"].dtype(), Dtype::Uint32);
    assert_eq!(p["proj.scales"].dtype(), Dtype::Float16);
    assert_eq!(p["proj.bias"].dtype(), Dtype::Float16);
}

#[derive(Module)]
struct Quantized {
    proj: MaybeQuantized<Linear>,
}

fn opts() -> QuantizeOptions {
    QuantizeOptions {
        bits: Some(4),
        group_size: Some(32),
        ..Default::default()
    }
}

#[test]
fn quantized_weights_stay_frozen() {
    let mut q = Quantized {
        proj: Linear::new(64, 8, true).unwrap().into(),
    };
    let x = ops::ones(&[2, 64], Dtype::Float32).unwrap();
    let dense = q.proj.forward(&x).unwrap();
    assert_eq!(nn::quantize(&mut q, &opts(), |_| true).unwrap(), 1);
    assert_eq!(nn::quantize(&mut q, &opts(), |_| true).unwrap(), 0); // already quantized
    let quantized = q.proj.forward(&x).unwrap();
    let err = dense
        .subtract(&quantized)
        .unwrap()
        .abs()
        .unwrap()
        .max(false)
        .unwrap();
    assert!(err.item::<f32>().unwrap() < 0.5);

    assert_eq!(
        keys(&q.parameters().unwrap()),
        ["proj.bias", "proj.biases", "proj.scales", "proj.weight"]
    );
    // As in Python, the float bias stays trainable; the packed parts never are.
    assert_eq!(keys(&q.trainable_parameters().unwrap()), ["proj.bias"]);
    q.freeze().unwrap();
    assert!(q.trainable_parameters().unwrap().is_empty());
    q.unfreeze().unwrap();
    assert_eq!(keys(&q.trainable_parameters().unwrap()), ["proj.bias"]);
    assert!(q.unfreeze_prefix("proj.scales").is_ok());
    assert_eq!(keys(&q.trainable_parameters().unwrap()), ["proj.bias"]);

    // Only the float bias gets a gradient.
    let (_, grads) = nn::value_and_grad(&mut q, |m| m.proj.forward(&x)?.sum(false)).unwrap();
    assert_eq!(keys(&grads), ["proj.bias"]);

    // Invalid options are an error and leave the layer dense.
    let mut d = Quantized {
        proj: Linear::new(64, 8, true).unwrap().into(),
    };
    let bad = QuantizeOptions {
        bits: Some(7),
        ..Default::default()
    };
    assert!(nn::quantize(&mut d, &bad, |_| true).is_err());
    assert!(matches!(d.proj, MaybeQuantized::Dense(_)));
}
