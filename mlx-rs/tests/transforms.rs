//! Transforms: gradients against Python MLX and finite differences, vmap against a loop,
//! compiled against uncompiled, custom derivatives, and failures inside closures (panics
//! and errors come back to the caller; nothing leaks).

mod common;

use mlx_rs::export::{export_function, export_function_kwargs, FunctionExporter, ImportedFunction};
use mlx_rs::ops;
use mlx_rs::transforms::{
    self, checkpoint, compile, compile_with_state, custom_vjp, grad, jvp, value_and_grad, vjp,
    vmap, Closure, CustomFunction,
};
use mlx_rs::{Array, Dtype, Error, Result, Stream};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// Tests share the process's MLX allocator; the leak test needs it to itself.
static ALLOCATOR: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    ALLOCATOR.read().unwrap_or_else(|p| p.into_inner())
}

fn f32s(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

fn arr(data: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(data, shape).unwrap()
}

fn one() -> Array {
    Array::scalar(1.0f32)
}

// -------------------------------------------------------------------------------------
// The functions of tests/oracle/gen_transforms.py, written with mlx-rs.
// -------------------------------------------------------------------------------------

fn sin_sq(a: &[Array]) -> Result<Vec<Array>> {
    let x = &a[0];
    Ok(vec![ops::sum(
        &ops::sin(x)?.multiply(x)?.multiply(x)?,
        false,
    )?])
}

fn mse(a: &[Array]) -> Result<Vec<Array>> {
    let (w, x, y) = (&a[0], &a[1], &a[2]);
    Ok(vec![ops::mean(
        &x.matmul(w)?.subtract(y)?.square()?,
        false,
    )?])
}

fn exp_tanh(a: &[Array]) -> Result<Vec<Array>> {
    let (x, y) = (&a[0], &a[1]);
    let main = ops::sum(&ops::exp(x)?.multiply(&ops::tanh(y)?)?, false)?;
    Ok(vec![main, x.add(y)?])
}

fn softplus(a: &[Array]) -> Result<Vec<Array>> {
    let one = Array::scalar(1.0f32).astype(a[0].dtype())?;
    Ok(vec![ops::sum(
        &ops::log(&one.add(&ops::exp(&a[0])?)?)?,
        false,
    )?])
}

fn pair(a: &[Array]) -> Result<Vec<Array>> {
    let (x, y) = (&a[0], &a[1]);
    Ok(vec![x.multiply(y)?, ops::sin(x)?.add(y)?])
}

fn logistic(a: &[Array]) -> Result<Vec<Array>> {
    let (w, b, x, t) = (&a[0], &a[1], &a[2], &a[3]);
    let one = Array::scalar(1.0f32).astype(w.dtype())?;
    let margin = t.negative()?.multiply(&x.matmul(w)?.add(b)?)?;
    Ok(vec![ops::mean(
        &ops::log(&one.add(&ops::exp(&margin)?)?)?,
        false,
    )?])
}

type Function = fn(&[Array]) -> Result<Vec<Array>>;

fn function(name: &str) -> Function {
    match name {
        "sin_sq" => sin_sq,
        "mse" => mse,
        "exp_tanh" => exp_tanh,
        "softplus" => softplus,
        "pair" => pair,
        "logistic" => logistic,
        other => panic!("no test function {other}"),
    }
}

// -------------------------------------------------------------------------------------
// Python MLX oracle
// -------------------------------------------------------------------------------------

#[test]
fn gradients_match_python_mlx() {
    let _g = shared();
    let cases = common::load("transforms");
    assert!(cases.len() >= 15, "fixture has {} cases", cases.len());
    for case in cases.iter().filter(|c| !c.op.starts_with("imported")) {
        let inputs: Vec<Array> = (0..case.inputs.len()).map(|i| case.input(i)).collect();
        let f = function(&case.str("function"));
        let got: Vec<Array> = match case.op.as_str() {
            "value_and_grad" => {
                let vg = value_and_grad(f, &case.ints("argnums")).unwrap();
                let (values, grads) = vg.call(&inputs).unwrap();
                assert_eq!(values.len() as i32, case.int("n_values"), "{}", case.name);
                values.into_iter().chain(grads).collect()
            }
            "vjp" => {
                let n = case.int("n_primals") as usize;
                let (outs, vjps) = vjp(f, &inputs[..n], &inputs[n..]).unwrap();
                outs.into_iter().chain(vjps).collect()
            }
            "jvp" => {
                let n = case.int("n_primals") as usize;
                let (outs, jvps) = jvp(f, &inputs[..n], &inputs[n..]).unwrap();
                outs.into_iter().chain(jvps).collect()
            }
            "grad_grad" => {
                // d/dx sum(f'(x)) = f''(x) elementwise for an elementwise f
                let first = grad(f, &[0]).unwrap();
                let summed = move |x: &[Array]| -> Result<Vec<Array>> {
                    Ok(vec![ops::sum(&first.call(x)?[0], false)?])
                };
                grad(summed, &[0]).unwrap().call(&inputs).unwrap()
            }
            "vmap" => {
                let in_axes: Vec<Option<i32>> =
                    case.ints("in_axes").into_iter().map(Some).collect();
                let vf = vmap(f, &in_axes, &case.ints("out_axes")).unwrap();
                vf.call(&inputs).unwrap()
            }
            other => panic!("unknown op {other}"),
        };
        assert_eq!(
            got.len(),
            case.outputs.len(),
            "{}: number of outputs",
            case.name
        );
        for (i, g) in got.iter().enumerate() {
            case.check(i, g);
        }
    }
}

// -------------------------------------------------------------------------------------
// Finite differences (float64 on the CPU, central differences)
// -------------------------------------------------------------------------------------

fn scalar_value(f: Function, args: &[Array]) -> f64 {
    f(args).unwrap()[0].to_vec::<f64>().unwrap()[0]
}

/// Checks every partial derivative of `f`'s first output at `args` (all float64).
fn check_finite_differences(name: &str, f: Function, args: &[Array], argnums: &[i32]) {
    let grads = grad(f, argnums).unwrap().call(args).unwrap();
    // MLX's float64 transcendental functions are accurate to about 1e-8 (not 1e-16), so
    // the step cannot be tiny: h = 1e-3 gives truncation error ~1e-6, rounding ~1e-5.
    let h = 1e-3;
    for (k, &argnum) in argnums.iter().enumerate() {
        let i = argnum as usize;
        let base = args[i].to_vec::<f64>().unwrap();
        let analytic = grads[k].to_vec::<f64>().unwrap();
        assert_eq!(grads[k].shape(), args[i].shape(), "{name}: gradient shape");
        for j in 0..base.len() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[j] += delta;
                let mut moved = args.to_vec();
                moved[i] = Array::from_slice(&v, args[i].shape()).unwrap();
                scalar_value(f, &moved)
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let err = (numeric - analytic[j]).abs();
            assert!(
                err <= 2e-4 + 1e-4 * numeric.abs(),
                "{name}: d/d(arg {i})[{j}]: analytic {} vs finite difference {numeric}",
                analytic[j]
            );
        }
    }
}

fn rand64(shape: &[i32], seed: u64) -> Array {
    // A small deterministic generator (no random ops needed): values in [-1.5, 1.5).
    let n: i32 = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 3.0 - 1.5
        })
        .collect();
    Array::from_slice(&v, shape).unwrap()
}

#[test]
fn gradients_match_finite_differences() {
    let _g = shared();
    let gpu_default =
        mlx_rs::Device::default_device().unwrap().kind().unwrap() == mlx_rs::DeviceType::Gpu;
    if gpu_default {
        // MLX builds the cotangents of grad on the default device, and GPUs have no float64.
        eprintln!("skipped: float64 finite differences need the CPU as MLX's default device");
        return;
    }
    let cpu = Stream::cpu();
    mlx_rs::with_stream(&cpu, || {
        check_finite_differences("sin_sq", sin_sq, &[rand64(&[3, 2], 1)], &[0]);
        let (w, x, y) = (rand64(&[3, 2], 2), rand64(&[4, 3], 3), rand64(&[4, 2], 4));
        check_finite_differences("mse", mse, &[w, x, y], &[0, 1, 2]);
        check_finite_differences(
            "exp_tanh",
            exp_tanh,
            &[rand64(&[4], 5), rand64(&[4], 6)],
            &[0, 1],
        );
        check_finite_differences("softplus", softplus, &[rand64(&[5], 7)], &[0]);
        let t = Array::from_slice(&[1.0f64, -1.0, -1.0, 1.0, 1.0], &[5]).unwrap();
        let args = [rand64(&[2], 8), rand64(&[], 9), rand64(&[5, 2], 10), t];
        check_finite_differences("logistic", logistic, &args, &[0, 1]);
    });
}

// -------------------------------------------------------------------------------------
// grad / value_and_grad behaviour
// -------------------------------------------------------------------------------------

#[test]
fn value_and_grad_returns_value_aux_and_chosen_gradients() {
    let _g = shared();
    let x = arr(&[0.5, -1.0], &[2]);
    let y = arr(&[2.0, 0.25], &[2]);
    let (values, grads) = value_and_grad(exp_tanh, &[1])
        .unwrap()
        .call(&[&x, &y])
        .unwrap();
    assert_eq!(values.len(), 2, "value and the auxiliary output");
    assert_eq!(f32s(&values[1]), vec![2.5, -0.75]);
    assert_eq!(grads.len(), 1);
    // d/dy sum(exp(x) tanh(y)) = exp(x) (1 - tanh²(y))
    let want: Vec<f32> = [(0.5f32, 2.0f32), (-1.0, 0.25)]
        .iter()
        .map(|&(x, y)| x.exp() * (1.0 - y.tanh().powi(2)))
        .collect();
    for (g, w) in f32s(&grads[0]).iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[test]
fn grad_of_borrowing_closure_and_composition() {
    let _g = shared();
    // The closure borrows data from the stack (no 'static needed).
    let scale = arr(&[3.0], &[]);
    let f = |a: &[Array]| Ok(vec![ops::sum(&a[0].square()?.multiply(&scale)?, false)?]);
    let g = grad(f, &[0]).unwrap();
    let x = arr(&[1.0, -2.0], &[2]);
    assert_eq!(f32s(&g.call(&[&x]).unwrap()[0]), vec![6.0, -12.0]);
    // grad of compiled, and compiled grad, agree with the plain gradient
    let cg = compile(&g, false).unwrap();
    assert_eq!(f32s(&cg.call(&[&x]).unwrap()[0]), vec![6.0, -12.0]);
    let gc = grad(compile(f, false).unwrap(), &[0]).unwrap();
    assert_eq!(f32s(&gc.call(&[&x]).unwrap()[0]), vec![6.0, -12.0]);
}

#[test]
fn grad_rejects_bad_arguments() {
    let _g = shared();
    let x = arr(&[1.0, 2.0], &[2]);
    let e = grad(sin_sq, &[]).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let e = grad(sin_sq, &[0, 0]).unwrap_err();
    assert!(e.to_string().contains("repeats"), "{e}");
    let e = grad(sin_sq, &[-1]).unwrap_err();
    assert!(e.to_string().contains("negative"), "{e}");
    // a position past the arguments: MLX says so at call time
    let e = grad(sin_sq, &[3]).unwrap().call(&[&x]).unwrap_err();
    assert!(matches!(e, Error::Mlx { .. }), "{e}");
    // the function's first output must be a scalar
    let e = grad(|a: &[Array]| Ok(vec![a[0].square()?]), &[0])
        .unwrap()
        .call(&[&x])
        .unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
    // reported where the user called, not inside mlx-rs
    if let Error::Mlx { location, .. } = &e {
        assert!(
            location.file().ends_with("tests/transforms.rs"),
            "{location}"
        );
    }
    // cotangents must match the outputs
    let e = vjp(pair, &[&x, &x], &[&x]).unwrap_err();
    assert!(matches!(e, Error::Mlx { .. }), "{e}");
    // the error carries the caller's location
    if let Error::Mlx { location, .. } = &e {
        assert!(location.file().ends_with("transforms.rs"), "{location}");
    }
}

#[test]
fn closure_called_recursively_is_an_error() {
    let _g = shared();
    let slot: Rc<RefCell<Option<Closure<'static>>>> = Rc::new(RefCell::new(None));
    let inner = Rc::clone(&slot);
    let f = Closure::new(move |x: &[Array]| {
        let me = inner.borrow().clone().expect("set below");
        me.call(x)
    })
    .unwrap();
    *slot.borrow_mut() = Some(f.clone());
    let e = f.call(&[arr(&[1.0], &[1])]).unwrap_err();
    assert!(matches!(e, Error::Closure(_)), "{e}");
    slot.borrow_mut().take(); // break the cycle
}

// -------------------------------------------------------------------------------------
// vmap
// -------------------------------------------------------------------------------------

#[test]
fn vmap_matches_a_loop() {
    let _g = shared();
    let (b, n) = (3usize, 4usize);
    let xs: Vec<f32> = (0..b * n).map(|i| i as f32 * 0.3 - 1.0).collect();
    let y: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
    let x = arr(&xs, &[b as i32, n as i32]);
    let ya = arr(&y, &[n as i32]);

    // x mapped over rows, y shared; outputs stacked on axis 0 and on axis -1
    let vf = vmap(pair, &[Some(0), None], &[0, -1]).unwrap();
    let out = vf.call(&[&x, &ya]).unwrap();
    assert_eq!(out[0].shape(), &[3, 4]);
    assert_eq!(out[1].shape(), &[4, 3]);
    let (o0, o1) = (f32s(&out[0]), f32s(&out[1]));
    for r in 0..b {
        let row = arr(&xs[r * n..(r + 1) * n], &[n as i32]);
        let want = pair(&[row, ya.clone()]).unwrap();
        let (w0, w1) = (f32s(&want[0]), f32s(&want[1]));
        for c in 0..n {
            assert!((o0[r * n + c] - w0[c]).abs() < 1e-6);
            assert!((o1[c * b + r] - w1[c]).abs() < 1e-6, "out_axes -1");
        }
    }

    // mapped over columns (axis -1) of a transposed layout gives the same rows
    let xt = arr(
        &(0..n * b)
            .map(|i| xs[(i % b) * n + i / b])
            .collect::<Vec<_>>(),
        &[n as i32, b as i32],
    );
    let out_t = vmap(pair, &[Some(-1), None], &[])
        .unwrap()
        .call(&[&xt, &ya])
        .unwrap();
    assert_eq!(f32s(&out_t[0]), o0);

    // a vmapped gradient: per-example gradients of sin_sq
    let per_example = vmap(grad(sin_sq, &[0]).unwrap(), &[], &[]).unwrap();
    let g = f32s(&per_example.call(&[&x]).unwrap()[0]);
    for (k, &v) in xs.iter().enumerate() {
        let want = v.cos() * v * v + 2.0 * v * v.sin();
        assert!((g[k] - want).abs() < 1e-5, "{k}: {} vs {want}", g[k]);
    }
}

#[test]
fn vmap_rejects_bad_axes() {
    let _g = shared();
    let x = arr(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let bad = |in_axes: &[Option<i32>], out_axes: &[i32]| {
        vmap(pair, in_axes, out_axes)
            .unwrap()
            .call(&[&x, &x])
            .unwrap_err()
    };
    assert!(bad(&[Some(2), Some(0)], &[])
        .to_string()
        .contains("out of range"));
    assert!(bad(&[Some(-3), Some(0)], &[])
        .to_string()
        .contains("out of range"));
    assert!(bad(&[None, None], &[]).to_string().contains("at least one"));
    assert!(bad(&[Some(0)], &[]).to_string().contains("in_axes"));
    assert!(bad(&[], &[0]).to_string().contains("out_axes"));
    assert!(bad(&[], &[0, 2]).to_string().contains("out of range"));
    // mapped axes of different sizes: MLX's check
    let y = arr(&[1.0, 2.0, 3.0], &[3]);
    let e = vmap(pair, &[], &[]).unwrap().call(&[&x, &y]).unwrap_err();
    assert!(matches!(e, Error::Mlx { .. }), "{e}");
}

// -------------------------------------------------------------------------------------
// compile
// -------------------------------------------------------------------------------------

#[test]
fn compiled_equals_uncompiled() {
    let _g = shared();
    let traces = Cell::new(0);
    let f = |a: &[Array]| {
        traces.set(traces.get() + 1);
        let (x, y) = (&a[0], &a[1]);
        // a fusable elementwise chain
        Ok(vec![ops::exp(&x.multiply(y)?)?
            .subtract(&ops::tanh(y)?)?
            .divide(&x.square()?.add(&one())?)?])
    };
    let x = arr(&[0.1, -0.4, 0.9, 1.3, -2.0, 0.0], &[2, 3]);
    let y = arr(&[1.0, 0.5, -0.5, 2.0, 0.25, -1.0], &[2, 3]);
    let want = f32s(&f(&[x.clone(), y.clone()]).unwrap()[0]);
    traces.set(0);

    let fast = compile(f, false).unwrap();
    for _ in 0..3 {
        let got = f32s(&fast.call(&[&x, &y]).unwrap()[0]);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
    }
    assert_eq!(traces.get(), 1, "traced once, then cached");
    // a new shape retraces
    let x2 = arr(&[0.3, 0.7], &[2]);
    let y2 = arr(&[-1.0, 1.5], &[2]);
    fast.call(&[&x2, &y2]).unwrap()[0].eval().unwrap();
    assert_eq!(traces.get(), 2, "a new shape traces again");
    drop(fast);

    // shapeless: one trace serves both shapes (same number of dimensions)
    traces.set(0);
    let shapeless = compile(f, true).unwrap();
    let r1 = f32s(&shapeless.call(&[&x, &y]).unwrap()[0]);
    let x3 = arr(&[0.3, 0.7, 1.1, -0.2], &[1, 4]);
    let y3 = arr(&[-1.0, 1.5, 0.2, 0.0], &[1, 4]);
    let r2 = f32s(&shapeless.call(&[&x3, &y3]).unwrap()[0]);
    assert_eq!(traces.get(), 1, "shapeless compile reuses the trace");
    let w2 = f32s(&f(&[x3, y3]).unwrap()[0]);
    for (g, w) in r1.iter().zip(&want).chain(r2.iter().zip(&w2)) {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn compile_modes_and_cache() {
    let _g = shared();
    let x = arr(&[1.0, 2.0], &[2]);
    let f = compile(|a: &[Array]| Ok(vec![a[0].square()?.add(&a[0])?]), false).unwrap();
    assert_eq!(f32s(&f.call(&[&x]).unwrap()[0]), vec![2.0, 6.0]);
    transforms::compile_clear_cache().unwrap();
    assert_eq!(
        f32s(&f.call(&[&x]).unwrap()[0]),
        vec![2.0, 6.0],
        "retraces after clear"
    );
    for mode in [
        transforms::CompileMode::NoFuse,
        transforms::CompileMode::NoSimplify,
        transforms::CompileMode::Enabled,
    ] {
        transforms::set_compile_mode(mode).unwrap();
    }
    transforms::enable_compile().unwrap();
}

#[test]
fn compile_with_id_shares_and_erases_its_cache_entry() {
    let _g = shared();
    let traces = Rc::new(Cell::new(0));
    let t = Rc::clone(&traces);
    let f = move |a: &[Array]| {
        t.set(t.get() + 1);
        Ok(vec![a[0].add(&a[0])?])
    };
    let x = arr(&[3.0], &[1]);
    // an id no other test uses
    let id = 0x5eed_0001;
    let c = transforms::compile_with_id(f, id, false, &[7]).unwrap();
    assert_eq!(f32s(&c.call(&[&x]).unwrap()[0]), vec![6.0]);
    c.call(&[&x]).unwrap();
    assert_eq!(traces.get(), 1);
    transforms::compile_erase(id).unwrap();
    c.call(&[&x]).unwrap();
    assert_eq!(traces.get(), 2, "erased entry traces again");
    transforms::compile_erase(id).unwrap();
}

#[test]
fn captured_arrays_are_frozen_but_state_inputs_are_not() {
    let _g = shared();
    let w = Rc::new(RefCell::new(arr(&[2.0], &[1])));
    let x = arr(&[3.0], &[1]);

    // Wrong use (documented): w is captured, so the trace bakes in its first value.
    let captured = Rc::clone(&w);
    let frozen = compile(
        move |a: &[Array]| Ok(vec![a[0].multiply(&captured.borrow())?]),
        false,
    )
    .unwrap();
    assert_eq!(f32s(&frozen.call(&[&x]).unwrap()[0]), vec![6.0]);
    *w.borrow_mut() = arr(&[10.0], &[1]);
    assert_eq!(
        f32s(&frozen.call(&[&x]).unwrap()[0]),
        vec![6.0],
        "captured value is a constant"
    );

    // Right use: state passed explicitly.
    let stateful = compile_with_state(
        |s: &[Array], a: &[Array]| Ok(vec![a[0].multiply(&s[0])?]),
        false,
    )
    .unwrap();
    assert_eq!(
        f32s(&stateful.call(&[&*w.borrow()], &[&x]).unwrap()[0]),
        vec![30.0]
    );
    *w.borrow_mut() = arr(&[-1.0], &[1]);
    assert_eq!(
        f32s(&stateful.call(&[&*w.borrow()], &[&x]).unwrap()[0]),
        vec![-3.0]
    );
    let e = stateful.call(&[&x, &x], &[&x]).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

// -------------------------------------------------------------------------------------
// custom functions and checkpointing
// -------------------------------------------------------------------------------------

#[test]
fn custom_vjp_replaces_the_gradient() {
    let _g = shared();
    // forward: sin(x); custom gradient: 7 · cotangent (not cos) to show it is used
    let f = custom_vjp(
        |a: &[Array]| Ok(vec![ops::sin(&a[0])?]),
        |_p: &[Array], ct: &[Array], outs: &[Array]| {
            assert_eq!(outs.len(), 1, "the VJP sees the forward outputs");
            Ok(vec![ct[0].multiply(&Array::scalar(7.0f32))?])
        },
    )
    .unwrap();
    let x = arr(&[0.3, 0.6], &[2]);
    assert_eq!(
        f32s(&f.call(&[&x]).unwrap()[0]),
        f32s(&ops::sin(&x).unwrap())
    );
    let (_, vjps) = vjp(&f, &[&x], &[arr(&[1.0, 2.0], &[2])]).unwrap();
    assert_eq!(f32s(&vjps[0]), vec![7.0, 14.0]);
}

#[test]
fn custom_function_jvp_and_vmap_rules_are_used() {
    let _g = shared();
    let vmap_calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&vmap_calls);
    let f = CustomFunction::new(|a: &[Array]| Ok(vec![a[0].square()?]))
        .vjp(|_p: &[Array], ct: &[Array], _o: &[Array]| Ok(vec![ct[0].clone()]))
        .jvp(|_p: &[Array], t: &[Array], argnums: &[i32]| {
            assert_eq!(argnums, &[0]);
            Ok(vec![t[0].multiply(&Array::scalar(10.0f32))?])
        })
        .vmap(move |x: &[Array], axes: &[i32]| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok((vec![x[0].square()?], vec![axes[0]]))
        })
        .build()
        .unwrap();
    let x = arr(&[1.0, 2.0, 3.0], &[3]);
    let (out, t) = jvp(&f, &[&x], &[arr(&[1.0, 1.0, 1.0], &[3])]).unwrap();
    assert_eq!(f32s(&out[0]), vec![1.0, 4.0, 9.0]);
    assert_eq!(f32s(&t[0]), vec![10.0, 10.0, 10.0]);
    let (_, g) = vjp(&f, &[&x], &[arr(&[1.0, 2.0, 3.0], &[3])]).unwrap();
    assert_eq!(f32s(&g[0]), vec![1.0, 2.0, 3.0], "custom vjp: identity");
    let v = vmap(&f, &[], &[]).unwrap().call(&[&x]).unwrap();
    assert_eq!(f32s(&v[0]), vec![1.0, 4.0, 9.0]);
    assert_eq!(
        vmap_calls.load(Ordering::SeqCst),
        1,
        "custom batching rule used"
    );
}

#[test]
fn checkpoint_keeps_values_and_gradients() {
    let _g = shared();
    let f = |a: &[Array]| -> Result<Vec<Array>> {
        let h = ops::tanh(&a[0].matmul(&a[1])?)?;
        Ok(vec![ops::sum(&h.square()?, false)?])
    };
    let w = arr(&[0.5, -0.2, 0.1, 0.3, 0.7, -0.6], &[3, 2]);
    let x = arr(&[1.0, 2.0, -1.0, 0.5, 0.0, 1.5], &[2, 3]);
    let plain = value_and_grad(f, &[0, 1]).unwrap().call(&[&x, &w]).unwrap();
    let ck = value_and_grad(checkpoint(f).unwrap(), &[0, 1])
        .unwrap()
        .call(&[&x, &w])
        .unwrap();
    assert_eq!(f32s(&plain.0[0]), f32s(&ck.0[0]));
    for (a, b) in plain.1.iter().zip(&ck.1) {
        for (p, q) in f32s(a).iter().zip(f32s(b)) {
            assert!((p - q).abs() < 1e-6);
        }
    }
}

// -------------------------------------------------------------------------------------
// Failures inside closures
// -------------------------------------------------------------------------------------

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn panicking(a: &[Array]) -> Result<Vec<Array>> {
    if a[0].size() > 0 {
        panic!("boom from inside MLX");
    }
    Ok(vec![])
}

fn failing(_a: &[Array]) -> Result<Vec<Array>> {
    Err(Error::InvalidArgument("the closure said no".into()))
}

/// Every transform that calls a Rust closure, applied to `f`, at x.
fn run_every_transform(
    f: Function,
    x: &Array,
) -> Vec<(&'static str, std::thread::Result<Result<()>>)> {
    let ok = |r: Result<Vec<Array>>| r.map(|_| ());
    let mut results = Vec::new();
    let mut run = |name, body: &dyn Fn() -> Result<()>| {
        results.push((name, catch_unwind(AssertUnwindSafe(body))));
    };
    run("grad", &|| ok(grad(f, &[0])?.call(&[x])));
    run("value_and_grad", &|| {
        value_and_grad(f, &[0])?.call(&[x]).map(|_| ())
    });
    run("vjp", &|| vjp(f, &[x], &[x]).map(|_| ()));
    run("jvp", &|| jvp(f, &[x], &[x]).map(|_| ()));
    run("vmap", &|| ok(vmap(f, &[], &[])?.call(&[x])));
    run("compile", &|| ok(compile(f, false)?.call(&[x])));
    run("compile shapeless", &|| ok(compile(f, true)?.call(&[x])));
    run("grad of compile", &|| {
        ok(grad(compile(f, false)?, &[0])?.call(&[x]))
    });
    run("closure call", &|| ok(Closure::new(f)?.call(&[x])));
    run("checkpoint", &|| ok(grad(checkpoint(f)?, &[0])?.call(&[x])));
    run("custom vjp (forward)", &|| {
        let c = custom_vjp(f, |_p: &[Array], c: &[Array], _o: &[Array]| Ok(c.to_vec()))?;
        ok(grad(c, &[0])?.call(&[x]))
    });
    run("custom vjp (backward)", &|| {
        let square = |a: &[Array]| Ok(vec![ops::sum(&a[0].square()?, false)?]);
        let c = custom_vjp(square, move |p: &[Array], _c: &[Array], _o: &[Array]| f(p))?;
        ok(grad(c, &[0])?.call(&[x]))
    });
    results
}

#[test]
fn panics_in_closures_reach_the_caller() {
    let _g = shared();
    let x = arr(&[0.5, 1.5], &[2]);
    for (name, result) in run_every_transform(panicking, &x) {
        let payload = result.expect_err(name);
        assert_eq!(panic_message(payload), "boom from inside MLX", "{name}");
    }
    // the process and MLX carry on
    assert_eq!(
        f32s(&grad(sin_sq, &[0]).unwrap().call(&[&x]).unwrap()[0]).len(),
        2
    );
}

#[test]
fn errors_in_closures_reach_the_caller_unchanged() {
    let _g = shared();
    let x = arr(&[0.5, 1.5], &[2]);
    for (name, result) in run_every_transform(failing, &x) {
        let err = result
            .unwrap_or_else(|_| panic!("{name} panicked"))
            .expect_err(name);
        match err {
            Error::InvalidArgument(m) => assert_eq!(m, "the closure said no", "{name}"),
            other => panic!("{name}: got {other:?}"),
        }
    }
    // an MLX error raised inside a closure comes back as that MLX error
    let bad_matmul = |a: &[Array]| Ok(vec![ops::sum(&a[0].matmul(&arr(&[1.0; 3], &[3]))?, false)?]);
    let e = grad(bad_matmul, &[0]).unwrap().call(&[&x]).unwrap_err();
    assert!(matches!(e, Error::Mlx { .. }), "{e}");
    assert!(e.to_string().contains("matmul"), "{e}");
}

/// A model crate's own error, converted into `mlx_rs::Error` the documented way.
#[derive(Debug, PartialEq)]
struct ModelError(String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "model: {}", self.0)
    }
}

impl std::error::Error for ModelError {}

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Self {
        Error::external(e)
    }
}

#[test]
fn external_errors_cross_every_transform_with_question_mark() {
    let _g = shared();
    let x = arr(&[0.5, 1.5], &[2]);
    fn model_step(_: &Array) -> std::result::Result<Array, ModelError> {
        Err(ModelError("no weights".into()))
    }
    // `?` converts the model's error inside the closure: no glue at the call site
    let f = |a: &[Array]| -> Result<Vec<Array>> { Ok(vec![model_step(&a[0])?]) };
    for (name, result) in run_every_transform(f, &x) {
        let err = result
            .unwrap_or_else(|_| panic!("{name} panicked"))
            .expect_err(name);
        assert_eq!(err.to_string(), "model: no weights", "{name}");
        assert_eq!(
            err.downcast_external::<ModelError>().ok(),
            Some(ModelError("no weights".into())),
            "{name}"
        );
    }
    // other errors are given back by downcast_external
    let mlx = Error::InvalidArgument("x".into());
    assert!(matches!(
        mlx.downcast_external::<ModelError>(),
        Err(Error::InvalidArgument(_))
    ));
    let other = Error::external("a message");
    assert!(matches!(
        other.downcast_external::<ModelError>(),
        Err(Error::External(_))
    ));
}

fn active_memory() -> usize {
    let mut n = 0usize;
    // SAFETY: writes one usize.
    assert_eq!(unsafe { mlx_sys::mlx_get_active_memory(&mut n) }, 0);
    n
}

#[test]
fn failing_closures_leak_nothing() {
    // Exclusive: other tests of this binary allocate on the same MLX allocator.
    let _g = ALLOCATOR.write().unwrap_or_else(|p| p.into_inner());
    let x = arr(&[0.5, 1.5, 2.5, 3.5], &[4]);
    x.eval().unwrap();

    // Rust side: every boxed closure handed to MLX is dropped again.
    let live = Arc::new(AtomicUsize::new(0));
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let tracked = |live: &Arc<AtomicUsize>| {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked(Arc::clone(live))
    };

    let round = |live: &Arc<AtomicUsize>| {
        let guard = tracked(live);
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _g = &guard;
            grad(panicking, &[0]).unwrap().call(&[&x])
        }));
        let t = tracked(live);
        let f = move |a: &[Array]| {
            let _t = &t;
            failing(a)
        };
        let c = compile(f, false).unwrap();
        assert!(c.call(&[&x]).is_err());
        let t2 = tracked(live);
        let g = move |a: &[Array]| {
            let _t = &t2;
            panicking(a)
        };
        assert!(catch_unwind(AssertUnwindSafe(|| compile(g, false).unwrap().call(&[&x]))).is_err());
        let t3 = tracked(live);
        let vj = move |p: &[Array], _c: &[Array], _o: &[Array]| {
            let _t = &t3;
            failing(p)
        };
        let cv = custom_vjp(|a: &[Array]| Ok(vec![ops::sum(&a[0], false)?]), vj).unwrap();
        assert!(grad(cv, &[0]).unwrap().call(&[&x]).is_err());
        // and successful compiled gradients, whose cache entries must be released
        let ok = compile(grad(sin_sq, &[0]).unwrap(), false).unwrap();
        ok.call(&[&x]).unwrap()[0].eval().unwrap();
        let ok = grad(compile(sin_sq, false).unwrap(), &[0]).unwrap();
        ok.call(&[&x]).unwrap()[0].eval().unwrap();
        let ok = compile_with_state(
            |s: &[Array], a: &[Array]| Ok(vec![a[0].multiply(&s[0])?]),
            true,
        )
        .unwrap();
        ok.call(&[&x], &[&x]).unwrap()[0].eval().unwrap();
    };

    round(&live); // warm-up: MLX's one-time allocations
    let before = active_memory();
    for _ in 0..50 {
        round(&live);
    }
    let after = active_memory();
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "closures given to MLX were not all dropped"
    );
    assert!(
        after <= before,
        "active memory grew from {before} to {after} bytes"
    );
}

#[test]
fn transforms_run_on_many_threads() {
    let _g = shared();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let x = arr(&[t as f32, 1.0], &[2]);
                for _ in 0..20 {
                    let g = compile(grad(sin_sq, &[0]).unwrap(), false).unwrap();
                    let got = f32s(&g.call(&[&x]).unwrap()[0]);
                    let v = t as f32;
                    let want = v.cos() * v * v + 2.0 * v * v.sin();
                    assert!((got[0] - want).abs() < 1e-5);
                    let panicked = catch_unwind(AssertUnwindSafe(|| {
                        grad(panicking, &[0]).unwrap().call(&[&x])
                    }));
                    assert!(panicked.is_err());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

// -------------------------------------------------------------------------------------
// Export and import
// -------------------------------------------------------------------------------------

/// A file path unique to this test process and `name`, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        TempFile(std::env::temp_dir().join(format!("mlx_rs_{}_{name}.mlxfn", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// MLX 0.32.2 binds an imported graph to stream 0, which belongs to the first thread that
// used MLX in the process (see mlx_rs::export). The checks that evaluate imported
// functions therefore run in a child process made of just them.

const CHILD_ENV: &str = "MLX_RS_EXPORT_CHILD";

#[test]
fn imported_functions_run_in_a_fresh_process() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "export_child", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child did not run the checks:\n{text}"
    );
}

#[test]
fn export_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // run by imported_functions_run_in_a_fresh_process
    }
    functions_exported_by_python_mlx_import_and_run();
    export_and_import_round_trip();
}

#[test]
fn imported_function_on_another_thread_fails_cleanly() {
    let _g = shared();
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let x = arr(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    // Err (stream 0 is another thread's) or Ok (this thread happened to be the first to
    // use MLX): never a crash.
    let outcome = std::thread::spawn(move || {
        let f = ImportedFunction::new(format!("{fixtures}/transforms_export.mlxfn"))?;
        let outs = f.call(&[&x, &x])?;
        outs[0].eval()
    });
    match outcome.join().unwrap() {
        Ok(()) => {}
        Err(e) => assert!(e.to_string().contains("Stream"), "{e}"),
    }
}

fn functions_exported_by_python_mlx_import_and_run() {
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    for case in common::load("transforms")
        .iter()
        .filter(|c| c.op.starts_with("imported"))
    {
        let f = ImportedFunction::new(format!("{fixtures}/{}", case.str("file"))).unwrap();
        let got = if case.op == "imported_kwargs" {
            let kwargs = HashMap::from([(case.str("kwarg"), case.input(1))]);
            f.call_kwargs(&[case.input(0)], &kwargs).unwrap()
        } else {
            f.call(&[case.input(0), case.input(1)]).unwrap()
        };
        assert_eq!(got.len(), case.outputs.len(), "{}", case.name);
        for (i, g) in got.iter().enumerate() {
            case.check(i, g);
        }
    }
}

fn export_and_import_round_trip() {
    let x = arr(&[0.5, -1.0, 2.0], &[3]);
    let y = arr(&[1.0, 2.0, 3.0], &[3]);

    // positional, fixed shapes
    let file = TempFile::new("pair");
    export_function(&file.0, pair, &[&x, &y], false).unwrap();
    let imported = ImportedFunction::new(&file.0).unwrap();
    let got = imported.call(&[&y, &x]).unwrap();
    let want = pair(&[y.clone(), x.clone()]).unwrap();
    assert_eq!(f32s(&got[0]), f32s(&want[0]));
    assert_eq!(f32s(&got[1]), f32s(&want[1]));
    // another shape than the traced one is an error (not shapeless)
    let e = imported
        .call(&[arr(&[1.0, 2.0], &[2]), arr(&[1.0, 2.0], &[2])])
        .unwrap_err();
    assert!(matches!(e, Error::Mlx { .. }), "{e}");

    // shapeless: one export serves other shapes
    let file = TempFile::new("shapeless");
    export_function(&file.0, pair, &[&x, &y], true).unwrap();
    let imported = ImportedFunction::new(&file.0).unwrap();
    let (x5, y5) = (arr(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5]), arr(&[0.5; 5], &[5]));
    assert_eq!(
        f32s(&imported.call(&[&x5, &y5]).unwrap()[0]),
        vec![0.5, 1.0, 1.5, 2.0, 2.5]
    );

    // keyword arguments
    let file = TempFile::new("kwargs");
    let scaled = |a: &[Array], kw: &HashMap<String, Array>| -> Result<Vec<Array>> {
        Ok(vec![a[0].multiply(&kw["scale"])?])
    };
    let kw = HashMap::from([("scale".to_string(), Array::scalar(2.0f32))]);
    export_function_kwargs(&file.0, scaled, &[&x], &kw, false).unwrap();
    let imported = ImportedFunction::new(&file.0).unwrap();
    let kw3 = HashMap::from([("scale".to_string(), Array::scalar(3.0f32))]);
    assert_eq!(
        f32s(&imported.call_kwargs(&[&x], &kw3).unwrap()[0]),
        vec![1.5, -3.0, 6.0]
    );

    // several traces in one file
    let file = TempFile::new("exporter");
    {
        let exporter = FunctionExporter::new(&file.0, pair, false).unwrap();
        exporter.apply(&[&x, &y]).unwrap();
        exporter.apply(&[&x5, &y5]).unwrap();
    }
    let imported = ImportedFunction::new(&file.0).unwrap();
    assert_eq!(imported.call(&[&x, &y]).unwrap()[0].shape(), &[3]);
    assert_eq!(imported.call(&[&x5, &y5]).unwrap()[0].shape(), &[5]);
}

#[test]
fn export_failures_are_errors() {
    let _g = shared();
    let x = arr(&[1.0], &[1]);
    let e = ImportedFunction::new("/nonexistent/dir/f.mlxfn").unwrap_err();
    assert!(matches!(e, Error::Mlx { .. }), "{e}");
    let e = ImportedFunction::new("bad\0path").unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    // the closure's own error and panic come back out of the export
    let file = TempFile::new("failing");
    let e = export_function(&file.0, failing, &[&x], false).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(ref m) if m == "the closure said no"),
        "{e}"
    );
    let p = catch_unwind(AssertUnwindSafe(|| {
        export_function(&file.0, panicking, &[&x], false)
    }));
    assert_eq!(panic_message(p.unwrap_err()), "boom from inside MLX");
    let e = export_function("/nonexistent/dir/f.mlxfn", pair, &[&x, &x], false).unwrap_err();
    assert!(matches!(e, Error::Mlx { .. }), "{e}");
}
