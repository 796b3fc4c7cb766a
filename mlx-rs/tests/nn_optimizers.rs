//! `mlx_rs::optimizers` against Python MLX (`tests/oracle/gen_optimizers.py`): 20 training
//! steps of a tiny model with every optimizer, schedules and gradient clipping; plus state
//! save/load, compiled steps, and bad input.

mod common;

use common::{assert_close, to_array, Case};
use mlx_rs::nn::{self, Linear, Module, ParamMap, UnaryModule, UpdateMode};
use mlx_rs::optimizers::{
    clip_grad_norm, cosine_decay, exponential_decay, join_schedules, linear_schedule, step_decay,
    Adam, AdamOptions, AdamW, AdamWOptions, LearningRate, Lion, LionOptions, Optimizer, Schedule,
    Sgd, SgdOptions,
};
use mlx_rs::transforms::compile_with_state;
use mlx_rs::{io, ops, Array, Dtype, Result};
use serde_json::Value;
use std::cell::RefCell;

/// Parameters and state after 20 steps, and the losses, float32, against Python on the
/// CPU: the same ops in the same order, so bit-identical in practice (clipping sums the
/// squared norms in another order: ~1e-7 after 20 steps). Tighter than the fixture's
/// stored (1e-4, 1e-5), which leaves room for other backends.
const TRAIN_TOL: (f64, f64) = common::tol::F32;

/// The Python model: `l2(tanh(l1(x)))`.
#[derive(Module, Clone)]
struct Net {
    l1: Linear,
    l2: Linear,
}

impl Net {
    fn new() -> Net {
        Net {
            l1: Linear::new(4, 3, true).unwrap(),
            l2: Linear::new(3, 2, true).unwrap(),
        }
    }
    fn forward(&self, x: &Array) -> Result<Array> {
        self.l2.forward(&self.l1.forward(x)?.tanh()?)
    }
    fn mse(&self, x: &Array, y: &Array) -> Result<Array> {
        self.forward(x)?.subtract(y)?.square()?.mean(false)
    }
}

fn cases(op: &str) -> Vec<Case> {
    let all: Vec<Case> = common::load("optimizers")
        .into_iter()
        .filter(|c| c.op == op)
        .collect();
    assert!(!all.is_empty(), "no {op} cases");
    all
}

fn schedule_from(spec: &Value) -> Schedule {
    let f = |k: &str| spec[k].as_f64().unwrap();
    let n = |k: &str| spec[k].as_u64().unwrap();
    match spec["kind"].as_str().unwrap() {
        "cosine_decay" => cosine_decay(f("init"), n("decay_steps"), f("end")),
        "linear_schedule" => linear_schedule(f("init"), f("end"), n("steps")),
        "step_decay" => step_decay(f("init"), f("decay_rate"), n("step_size")),
        "exponential_decay" => exponential_decay(f("init"), f("decay_rate")),
        "join_schedules" => {
            let parts = spec["schedules"].as_array().unwrap();
            let bounds: Vec<u64> = spec["boundaries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap())
                .collect();
            join_schedules(parts.iter().map(schedule_from).collect(), &bounds)
        }
        other => panic!("unknown schedule {other}"),
    }
    .unwrap()
}

fn optimizer_from(args: &Value) -> Box<dyn Optimizer> {
    let lr: LearningRate = match &args["learning_rate"] {
        Value::Number(n) => n.as_f64().unwrap().into(),
        spec => schedule_from(spec).into(),
    };
    let o = &args["options"];
    let num = |k: &str, d: f64| o.get(k).map_or(d, |v| v.as_f64().unwrap());
    let flag = |k: &str| o.get(k).is_some_and(|v| v.as_bool().unwrap());
    let betas = |d: (f64, f64)| {
        o.get("betas")
            .map_or(d, |b| (b[0].as_f64().unwrap(), b[1].as_f64().unwrap()))
    };
    match args["optimizer"].as_str().unwrap() {
        "sgd" => Box::new(
            Sgd::with_options(
                lr,
                SgdOptions {
                    momentum: num("momentum", 0.0),
                    weight_decay: num("weight_decay", 0.0),
                    dampening: num("dampening", 0.0),
                    nesterov: flag("nesterov"),
                },
            )
            .unwrap(),
        ),
        "adam" => Box::new(
            Adam::with_options(
                lr,
                AdamOptions {
                    betas: betas((0.9, 0.999)),
                    eps: num("eps", 1e-8),
                    bias_correction: flag("bias_correction"),
                },
            )
            .unwrap(),
        ),
        "adamw" => Box::new(
            AdamW::with_options(
                lr,
                AdamWOptions {
                    betas: betas((0.9, 0.999)),
                    eps: num("eps", 1e-8),
                    weight_decay: num("weight_decay", 0.01),
                    bias_correction: flag("bias_correction"),
                },
            )
            .unwrap(),
        ),
        "lion" => Box::new(
            Lion::with_options(
                lr,
                LionOptions {
                    betas: betas((0.9, 0.99)),
                    weight_decay: num("weight_decay", 0.0),
                },
            )
            .unwrap(),
        ),
        other => panic!("unknown optimizer {other}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn zip(keys: &[String], values: &[Array]) -> ParamMap {
    keys.iter().cloned().zip(values.iter().cloned()).collect()
}

/// One training step as the Python oracle runs it; returns the loss.
fn train_step(
    model: &mut Net,
    opt: &mut dyn Optimizer,
    x: &Array,
    y: &Array,
    clip: Option<f64>,
) -> Result<Array> {
    let (loss, grads) = nn::value_and_grad(model, |m| m.mse(x, y))?;
    let grads = match clip {
        Some(max_norm) => clip_grad_norm(&grads, max_norm)?.0,
        None => grads,
    };
    opt.update(model, &grads)?;
    let mut all: Vec<Array> = model.parameters()?.into_values().collect();
    all.extend(opt.state().into_values());
    mlx_rs::eval(&all)?;
    Ok(loss)
}

/// Largest |got − want| over `got` and the stored tensor.
fn max_dev(got: &Array, want: &common::Tensor) -> f64 {
    let g = got.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
    let w = to_array(want).astype(Dtype::Float32).unwrap();
    let w = w.to_vec::<f32>().unwrap();
    g.iter()
        .zip(&w)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max)
}

#[test]
fn training_matches_python() {
    for case in cases("train") {
        let params = strings(&case.args["params"]);
        let state_keys = strings(&case.args["state"]);
        let steps = case.int("steps") as usize;
        let clip = case.args["clip"].as_f64();
        let (x, y) = (case.input(0), case.input(1));
        let initial: Vec<Array> = (0..params.len()).map(|i| case.input(2 + i)).collect();
        let mut model = Net::new();
        model
            .update(&zip(&params, &initial), UpdateMode::Strict)
            .unwrap();
        let mut opt = optimizer_from(&case.args);
        let losses: Vec<Array> = (0..steps)
            .map(|_| train_step(&mut model, opt.as_mut(), &x, &y, clip).unwrap())
            .collect();
        let losses = ops::stack(&losses).unwrap();
        let (rtol, atol) = TRAIN_TOL;
        let what = |k: &str| format!("{}: {k}", case.name);
        assert_close(&losses, &case.outputs[0], rtol, atol, &what("losses"));
        let got = model.parameters().unwrap();
        let mut worst = 0.0f64;
        for (i, k) in params.iter().enumerate() {
            assert_close(&got[k], &case.outputs[1 + i], rtol, atol, &what(k));
            worst = worst.max(max_dev(&got[k], &case.outputs[1 + i]));
        }
        let state = opt.state();
        let keys: Vec<&String> = state.keys().collect();
        assert_eq!(keys, state_keys.iter().collect::<Vec<_>>(), "{}", case.name);
        for (i, k) in state_keys.iter().enumerate() {
            let want = &case.outputs[1 + params.len() + i];
            assert_close(&state[k], want, rtol, atol, &what(k));
        }
        println!(
            "{}: max |param − python| after {steps} steps = {worst:.2e}",
            case.name
        );
    }
}

#[test]
fn schedules_match_python() {
    for case in cases("schedule") {
        let schedule = schedule_from(&case.args["schedule"]);
        let values: Vec<Array> = (0..case.outputs[0].shape[0] as u64)
            .map(|s| schedule.at(&Array::scalar(s)).unwrap())
            .collect();
        case.check(0, &ops::stack(&values).unwrap());
    }
}

#[test]
fn clip_grad_norm_matches_python() {
    for case in cases("clip_grad_norm") {
        let keys = strings(&case.args["keys"]);
        let grads: Vec<Array> = (0..keys.len()).map(|i| case.input(i)).collect();
        let (clipped, norm) = clip_grad_norm(&zip(&keys, &grads), case.float("max_norm")).unwrap();
        for (i, k) in keys.iter().enumerate() {
            case.check(i, &clipped[k]);
        }
        case.check(keys.len(), &norm);
    }
}

/// A batch and a model with the oracle's shapes (values of its first case).
fn fixture_setup() -> (Net, Array, Array) {
    let case = &cases("train")[0];
    let params = strings(&case.args["params"]);
    let initial: Vec<Array> = (0..params.len()).map(|i| case.input(2 + i)).collect();
    let mut model = Net::new();
    model
        .update(&zip(&params, &initial), UpdateMode::Strict)
        .unwrap();
    (model, case.input(0), case.input(1))
}

type MakeOptimizer = fn() -> Box<dyn Optimizer>;

fn warmup_cosine() -> Schedule {
    join_schedules(
        vec![
            linear_schedule(0.0, 0.02, 4).unwrap(),
            cosine_decay(0.02, 16, 0.001).unwrap(),
        ],
        &[4],
    )
    .unwrap()
}

/// Optimizers of every family, constant and scheduled.
const MAKERS: &[(&str, MakeOptimizer)] = &[
    ("sgd_nesterov", || {
        Box::new(
            Sgd::with_options(
                0.05,
                SgdOptions {
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 0.01,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    }),
    ("adam_schedule", || {
        Box::new(
            Adam::with_options(
                warmup_cosine(),
                AdamOptions {
                    bias_correction: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    }),
    ("adamw", || Box::new(AdamW::new(0.01).unwrap())),
    ("lion_step_decay", || {
        Box::new(Lion::new(step_decay(0.003, 0.5, 3).unwrap()).unwrap())
    }),
];

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mlx-rs-optim-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn save_load_resume_equals_uninterrupted_run() {
    for (name, make) in MAKERS {
        let (start, x, y) = fixture_setup();
        let mut straight = start.clone();
        let mut opt = make();
        for _ in 0..20 {
            train_step(&mut straight, opt.as_mut(), &x, &y, Some(1.0)).unwrap();
        }

        let mut first = start.clone();
        let mut opt = make();
        for _ in 0..10 {
            train_step(&mut first, opt.as_mut(), &x, &y, Some(1.0)).unwrap();
        }
        let dir = scratch(name);
        first.save_weights(dir.join("model.safetensors")).unwrap();
        let state_file = dir.join("optimizer.safetensors");
        io::save_safetensors(&state_file, &opt.state(), [("format", "mlx")]).unwrap();
        drop((first, opt));

        let mut resumed = Net::new();
        resumed
            .load_weights(dir.join("model.safetensors"), UpdateMode::Strict)
            .unwrap();
        let mut opt = make();
        let loaded: ParamMap = io::load_safetensors(&state_file)
            .unwrap()
            .arrays
            .into_iter()
            .collect();
        assert_eq!(loaded["step"].dtype(), Dtype::Uint64);
        opt.set_state(&loaded).unwrap();
        for _ in 0..10 {
            train_step(&mut resumed, opt.as_mut(), &x, &y, Some(1.0)).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();

        let (a, b) = (
            straight.parameters().unwrap(),
            resumed.parameters().unwrap(),
        );
        for (k, v) in &a {
            assert_eq!(
                v.to_vec::<f32>().unwrap(),
                b[k].to_vec::<f32>().unwrap(),
                "{name}: {k} differs after resuming"
            );
        }
        assert_eq!(opt.state()["step"].item::<u64>().unwrap(), 20);
    }
}

#[test]
fn compiled_step_equals_uncompiled() {
    // Compiling fuses element-wise ops, which may round differently in the last bit.
    const COMPILE_TOL: f32 = 1e-6;
    for (name, make) in MAKERS {
        let (start, x, y) = fixture_setup();
        let mut plain = start.clone();
        let mut opt = make();
        let mut plain_losses = Vec::new();
        for _ in 0..12 {
            let loss = train_step(&mut plain, opt.as_mut(), &x, &y, Some(0.5)).unwrap();
            plain_losses.push(loss.item::<f32>().unwrap());
        }

        let model = RefCell::new(start.clone());
        let compiled_opt = RefCell::new(make());
        compiled_opt
            .borrow_mut()
            .init(&start.trainable_parameters().unwrap())
            .unwrap();
        let pkeys: Vec<String> = start.parameters().unwrap().into_keys().collect();
        let skeys: Vec<String> = compiled_opt.borrow().state().into_keys().collect();
        let np = pkeys.len();
        let step = compile_with_state(
            |state: &[Array], inputs: &[Array]| {
                let (m, o) = (&mut *model.borrow_mut(), &mut *compiled_opt.borrow_mut());
                m.update(&zip(&pkeys, &state[..np]), UpdateMode::Strict)?;
                o.set_state(&zip(&skeys, &state[np..]))?;
                let (x, y) = (&inputs[0], &inputs[1]);
                let (loss, grads) = nn::value_and_grad(m, |m| m.mse(x, y))?;
                o.update(m, &clip_grad_norm(&grads, 0.5)?.0)?;
                let mut out = vec![loss];
                out.extend(m.parameters()?.into_values());
                out.extend(o.state().into_values());
                Ok(out)
            },
            false,
        )
        .unwrap();
        let mut state: Vec<Array> = start.parameters().unwrap().into_values().collect();
        state.extend(compiled_opt.borrow().state().into_values());
        for (i, want) in plain_losses.iter().enumerate() {
            let mut out = step.call(&state, &[&x, &y]).unwrap();
            state = out.split_off(1);
            let got = out[0].item::<f32>().unwrap();
            assert!(
                (got - want).abs() <= COMPILE_TOL,
                "{name}: loss {i}: {got} vs {want}"
            );
        }
        let want = plain.parameters().unwrap();
        for (k, v) in zip(&pkeys, &state[..np]) {
            let (g, w) = (
                v.to_vec::<f32>().unwrap(),
                want[&k].to_vec::<f32>().unwrap(),
            );
            for (a, b) in g.iter().zip(&w) {
                assert!((a - b).abs() <= COMPILE_TOL, "{name}: {k}: {a} vs {b}");
            }
        }
        let got_state = zip(&skeys, &state[np..]);
        assert_eq!(got_state["step"].item::<u64>().unwrap(), 12, "{name}");
        let lr_plain = opt.learning_rate().unwrap().item::<f32>().unwrap();
        let lr_compiled = got_state["learning_rate"].item::<f32>().unwrap();
        assert!((lr_plain - lr_compiled).abs() <= COMPILE_TOL, "{name}: lr");
    }
}

#[test]
fn state_is_made_at_the_first_update() {
    let (mut model, x, y) = fixture_setup();
    let mut opt = Adam::new(1e-2).unwrap();
    let keys: Vec<String> = opt.state().into_keys().collect();
    assert_eq!(keys, ["learning_rate", "step"]);
    train_step(&mut model, &mut opt, &x, &y, None).unwrap();
    let state = opt.state();
    assert_eq!(state.len(), 2 + 2 * 4);
    assert_eq!(state["l1.weight.v"].shape(), &[3, 4]);
    assert_eq!(state["step"].item::<u64>().unwrap(), 1);
    assert_eq!(state["learning_rate"].dtype(), Dtype::Float32);

    // A parameter unfrozen later gets its state at the first update that sees it; a
    // frozen one is neither updated nor given state.
    let mut model = fixture_setup().0;
    model.freeze_prefix("l2").unwrap();
    let mut opt = Sgd::with_options(
        0.1,
        SgdOptions {
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    let before = model.l2.weight.value().to_vec::<f32>().unwrap();
    train_step(&mut model, &mut opt, &x, &y, None).unwrap();
    assert_eq!(model.l2.weight.value().to_vec::<f32>().unwrap(), before);
    assert!(!opt.state().contains_key("l2.weight.v"));
    model.unfreeze().unwrap();
    train_step(&mut model, &mut opt, &x, &y, None).unwrap();
    assert!(opt.state().contains_key("l2.weight.v"));
    assert_ne!(model.l2.weight.value().to_vec::<f32>().unwrap(), before);
}

#[test]
fn learning_rate_follows_its_schedule() {
    let schedule = warmup_cosine();
    let mut opt = AdamW::new(schedule.clone()).unwrap();
    let (mut model, x, y) = fixture_setup();
    assert_eq!(opt.learning_rate().unwrap().item::<f32>().unwrap(), 0.0);
    for step in 0..8u64 {
        train_step(&mut model, &mut opt, &x, &y, None).unwrap();
        let lr = opt.learning_rate().unwrap().item::<f32>().unwrap();
        // the update at step `step` used the schedule's value at `step`
        assert_eq!(lr, schedule.value(step).unwrap(), "step {step}");
    }
    let custom = Schedule::from_fn(|step| step.astype(Dtype::Float32)?.multiply_scalar(0.5));
    assert_eq!(custom.value(3).unwrap(), 1.5);
}

/// What a bad-input case does to the gradients of the fixture model.
type Corrupt = fn(&mut ParamMap);

#[test]
fn bad_gradients_are_errors_that_change_nothing() {
    let cases: &[(&str, Corrupt, &str)] = &[
        (
            "missing key",
            |g| {
                g.remove("l2.bias");
            },
            "l2.bias",
        ),
        (
            "extra key",
            |g| {
                g.insert("l3.weight".into(), Array::scalar(1.0f32));
            },
            "l3.weight",
        ),
        (
            "wrong shape",
            |g| {
                g.insert(
                    "l1.weight".into(),
                    ops::zeros(&[4, 3], Dtype::Float32).unwrap(),
                );
            },
            "l1.weight",
        ),
        (
            "wrong dtype",
            |g| {
                let w = g["l1.bias"].astype(Dtype::Float16).unwrap();
                g.insert("l1.bias".into(), w);
            },
            "l1.bias",
        ),
        (
            "typo",
            |g| {
                let w = g.remove("l1.weight").unwrap();
                g.insert("l1.weights".into(), w);
            },
            "l1.weights",
        ),
    ];
    for (what, corrupt, key) in cases {
        for (name, make) in MAKERS {
            let (mut model, x, y) = fixture_setup();
            let mut opt = make();
            train_step(&mut model, opt.as_mut(), &x, &y, None).unwrap();
            let params_before = model.parameters().unwrap();
            let state_before = opt.state();
            let (_, mut grads) = nn::value_and_grad(&mut model, |m| m.mse(&x, &y)).unwrap();
            corrupt(&mut grads);
            let err = opt.update(&mut model, &grads).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{what}/{name}: {err}");
            let params_after = model.parameters().unwrap();
            for (k, v) in &params_before {
                assert_eq!(
                    v.to_vec::<f32>().unwrap(),
                    params_after[k].to_vec::<f32>().unwrap(),
                    "{what}/{name}: {k} changed"
                );
            }
            let state_after = opt.state();
            assert_eq!(state_after.len(), state_before.len(), "{what}/{name}");
            assert_eq!(
                state_after["step"].item::<u64>().unwrap(),
                1,
                "{what}/{name}"
            );
        }
    }

    // A gradient for a frozen parameter is not one of the parameters being updated.
    let (mut model, x, y) = fixture_setup();
    let (_, grads) = nn::value_and_grad(&mut model, |m| m.mse(&x, &y)).unwrap();
    model.freeze_prefix("l1").unwrap();
    let mut opt = Sgd::new(0.1).unwrap();
    let err = opt.update(&mut model, &grads).unwrap_err().to_string();
    assert!(err.contains("`l1.bias`") && err.contains("frozen"), "{err}");
}

#[test]
fn invalid_hyper_parameters_are_errors() {
    // (momentum, weight decay, dampening, nesterov)
    let sgd = |(momentum, weight_decay, dampening, nesterov)| {
        let o = SgdOptions {
            momentum,
            weight_decay,
            dampening,
            nesterov,
        };
        Sgd::with_options(0.1, o).map(|_| ())
    };
    let adam = |betas, eps| {
        let o = AdamOptions {
            betas,
            eps,
            bias_correction: false,
        };
        Adam::with_options(1e-3, o).map(|_| ())
    };
    let adamw = |betas, weight_decay| {
        let o = AdamWOptions {
            betas,
            weight_decay,
            ..Default::default()
        };
        AdamW::with_options(1e-3, o).map(|_| ())
    };
    let lion = |betas, weight_decay| {
        Lion::with_options(
            1e-3,
            LionOptions {
                betas,
                weight_decay,
            },
        )
        .map(|_| ())
    };
    let ok = (0.9, 0.999);
    let negative_schedule = cosine_decay(-1.0, 10, 0.0).unwrap();
    let cases: Vec<(&str, Result<()>, &str)> = vec![
        ("negative lr", Sgd::new(-0.1).map(|_| ()), "learning rate"),
        ("NaN lr", Adam::new(f64::NAN).map(|_| ()), "learning rate"),
        (
            "negative schedule",
            Adam::new(negative_schedule).map(|_| ()),
            "schedule",
        ),
        (
            "negative momentum",
            sgd((-0.5, 0.0, 0.0, false)),
            "momentum",
        ),
        (
            "nesterov, no momentum",
            sgd((0.0, 0.0, 0.0, true)),
            "Nesterov",
        ),
        (
            "nesterov, dampening",
            sgd((0.9, 0.0, 0.1, true)),
            "Nesterov",
        ),
        ("dampening > 1", sgd((0.9, 0.0, 1.5, false)), "dampening"),
        (
            "negative weight decay",
            sgd((0.0, -1.0, 0.0, false)),
            "weight decay",
        ),
        ("beta1 = 1", adam((1.0, 0.999), 1e-8), "beta1"),
        ("beta2 < 0", adam((0.9, -0.1), 1e-8), "beta2"),
        ("negative eps", adam(ok, -1e-8), "eps"),
        ("AdamW beta", adamw((0.9, 1.5), 0.01), "beta2"),
        ("AdamW decay", adamw(ok, -0.01), "weight decay"),
        ("Lion beta", lion((1.0, 0.99), 0.0), "beta1"),
        ("Lion decay", lion(ok, f64::INFINITY), "weight decay"),
        (
            "cosine 0 steps",
            cosine_decay(0.1, 0, 0.0).map(|_| ()),
            "decay_steps",
        ),
        (
            "step_decay 0",
            step_decay(0.1, 0.9, 0).map(|_| ()),
            "step_size",
        ),
        (
            "linear 0 steps",
            linear_schedule(0.0, 0.1, 0).map(|_| ()),
            "steps",
        ),
        (
            "exponential NaN",
            exponential_decay(f64::NAN, 0.9).map(|_| ()),
            "init",
        ),
        (
            "join nothing",
            join_schedules(vec![], &[]).map(|_| ()),
            "at least one",
        ),
        (
            "join boundaries",
            join_schedules(vec![one_part()], &[3]).map(|_| ()),
            "boundaries",
        ),
        (
            "clip negative",
            clip_grad_norm(&ParamMap::new(), -1.0).map(|_| ()),
            "max_norm",
        ),
    ];
    for (what, result, needle) in cases {
        let err = result.expect_err(what).to_string();
        assert!(err.contains(needle), "{what}: {err}");
    }
    // The valid edges.
    assert!(Sgd::new(0.0).is_ok());
    assert!(sgd((0.9, 0.0, 1.0, false)).is_ok());
    assert!(adam((0.0, 0.0), 0.0).is_ok());
}

fn one_part() -> Schedule {
    linear_schedule(0.0, 1.0, 2).unwrap()
}

#[test]
fn bad_state_is_rejected_and_changes_nothing() {
    let (mut model, x, y) = fixture_setup();
    let mut opt = Adam::new(1e-2).unwrap();
    train_step(&mut model, &mut opt, &x, &y, None).unwrap();
    let good = opt.state();
    // A copy of the good state with `key` removed (None) or replaced.
    let with = |key: &str, value: Option<Array>| {
        let mut s = good.clone();
        match value {
            Some(v) => s.insert(key.into(), v),
            None => s.remove(key),
        };
        s
    };
    let scalar = || Some(Array::scalar(1.0f32));
    let cases: Vec<(&str, ParamMap, &str)> = vec![
        ("no step", with("step", None), "`step`"),
        (
            "no learning rate",
            with("learning_rate", None),
            "`learning_rate`",
        ),
        ("float step", with("step", scalar()), "`step`"),
        (
            "vector lr",
            with("learning_rate", ops::zeros(&[2], Dtype::Float32).ok()),
            "`learning_rate`",
        ),
        (
            "unknown slot",
            with("l1.weight.q", scalar()),
            "`l1.weight.q`",
        ),
        ("no dot", with("momentum", scalar()), "`momentum`"),
        ("half a parameter", with("l2.bias.v", None), "`l2.bias.v`"),
    ];
    for (what, state, needle) in cases {
        let err = opt.set_state(&state).unwrap_err().to_string();
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(opt.state().len(), good.len(), "{what}");
    }
    // A state array of the wrong shape is found at the next update, which then fails.
    opt.set_state(&with("l1.bias.m", ops::zeros(&[7], Dtype::Float32).ok()))
        .unwrap();
    let before = model.parameters().unwrap();
    let (_, grads) = nn::value_and_grad(&mut model, |m| m.mse(&x, &y)).unwrap();
    let err = opt.update(&mut model, &grads).unwrap_err().to_string();
    assert!(err.contains("`l1.bias.m`"), "{err}");
    let bias = model.parameters().unwrap()["l1.bias"]
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(before["l1.bias"].to_vec::<f32>().unwrap(), bias);
    // Only step and learning rate: the per-parameter state is made again.
    let mut fresh = good.clone();
    fresh.retain(|k, _| k == "step" || k == "learning_rate");
    opt.set_state(&fresh).unwrap();
    opt.update(&mut model, &grads).unwrap();
    assert_eq!(opt.state().len(), good.len());
    assert_eq!(opt.state()["step"].item::<u64>().unwrap(), 2);
}
