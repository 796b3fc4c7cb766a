//! Transforms: gradients against Python MLX and finite differences, vmap against a loop,
//! compiled against uncompiled, custom derivatives, and failures inside closures (panics
//! and errors come back to the caller; nothing leaks).

#[path = "../common/mod.rs"]
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
            location.file().ends_with("tests/transforms/main.rs"),
            "{location}"
        );
    }
    // cotangents must match the outputs
    let e = vjp(pair, &[&x, &x], &[&x]).unwrap_err();
    assert!(matches!(e, Error::Mlx { .. }), "{e}");
    // the error carries the caller's location
    if let Error::Mlx { location, .. } = &e {
        assert!(
            location.file().ends_with("transforms/main.rs"),
            "{location}"
        );
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

/// The gradient of a pad over some of the axes has the input's shape and passes the
/// unpadded part through (MLX 0.32.2's `Pad::vjp` reads the pad sizes by axis number, so
/// `ops::pad` hands MLX every axis).
#[test]
fn gradient_of_a_pad_over_some_axes_is_the_inputs() {
    let _g = shared();
    let x = ops::arange(0.0, 24.0, 1.0, Dtype::Float32)
        .unwrap()
        .reshape(&[2, 3, 4])
        .unwrap();
    let f = |a: &[Array]| -> Result<Vec<Array>> {
        let zero = Array::scalar(0.0f32);
        let p = ops::pad(&a[0], &[-2], &[1], &[2], &zero, "constant")?;
        assert_eq!(p.shape(), &[2, 6, 4]);
        Ok(vec![p.square()?.sum(false)?])
    };
    let (_, g) = value_and_grad(f, &[0])
        .unwrap()
        .call(std::slice::from_ref(&x))
        .unwrap();
    assert_eq!(g[0].shape(), &[2, 3, 4]);
    assert_eq!(f32s(&g[0]), f32s(&x.multiply_scalar(2.0).unwrap()));
    let zero = Array::scalar(0.0f32);
    assert!(ops::pad(&x, &[3], &[1], &[1], &zero, "constant").is_err());
    assert!(ops::pad(&x, &[1, -2], &[1, 1], &[1, 1], &zero, "constant").is_err());
}

mod compile_custom_failures;
