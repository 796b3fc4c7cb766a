//! Compile, custom derivatives, and failures inside closures.

use super::*;

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
        .args([
            "--exact",
            "compile_custom_failures::export_child",
            "--nocapture",
        ])
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
