//! Graph inspection: MLX's listing and DOT export of a lazy graph.

mod common;

use mlx_rs::{graph, ops, Array};

fn f32s(v: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

#[test]
fn listing_names_the_ops_in_order_with_shapes() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let b = a.multiply(&a).unwrap();
    let c = ops::sum(&b.add(&a).unwrap(), false).unwrap();
    let text = graph::print_graph(&[&c], &[(&a, "my_input")]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Inputs:") && lines[0].contains("my_input"),
        "{text}"
    );
    let ops: Vec<&str> = lines[2..]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let at = |op: &str| {
        ops.iter()
            .position(|o| *o == op)
            .unwrap_or_else(|| panic!("{op} in {text}"))
    };
    assert!(
        at("Multiply") < at("Add") && at("Add") < at("Sum"),
        "{text}"
    );
    // Inspecting does not evaluate: the listing is the same twice.
    assert_eq!(
        graph::print_graph(&[&c], &[(&a, "my_input")]).unwrap(),
        text
    );
    assert_eq!(c.item::<f32>().unwrap(), 20.0);
}

#[test]
fn primitives_are_counted_without_evaluating() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    assert_eq!(graph::count_primitives(&[&a]).unwrap(), 0);
    let b = a.multiply(&a).unwrap();
    let c = ops::sum(&b.add(&a).unwrap(), false).unwrap();
    // Multiply, Add, Sum and the Squeeze of the reduced axis.
    assert_eq!(graph::count_primitives(&[&c]).unwrap(), 4);
    // Shared inputs count once; two outputs of one graph.
    let d = ops::exp(&b).unwrap();
    assert_eq!(graph::count_primitives(&[&c, &d]).unwrap(), 5);
    assert_eq!(c.item::<f32>().unwrap(), 20.0);
    assert_eq!(graph::count_primitives(&[&c]).unwrap(), 0);
}

#[test]
fn primitives_are_counted_by_kind() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let b = a.multiply(&a).unwrap().multiply(&a).unwrap();
    let c = ops::sum(&b.add(&a).unwrap(), false).unwrap();
    let kinds = graph::count_primitives_by_kind(&[&c]).unwrap();
    assert_eq!(kinds[0], ("Multiply".to_string(), 2));
    let total: usize = kinds.iter().map(|(_, n)| n).sum();
    assert_eq!(total, graph::count_primitives(&[&c]).unwrap());
    assert!(kinds.iter().any(|(k, n)| k == "Add" && *n == 1));
    assert!(kinds.iter().any(|(k, n)| k == "Sum" && *n == 1));
    c.eval().unwrap();
    assert!(graph::count_primitives_by_kind(&[&c]).unwrap().is_empty());
}

#[test]
fn fused_chains_of_a_compiled_function_count_as_compiled() {
    let f = mlx_rs::transforms::compile(
        |x: &[Array]| {
            let y = ops::matmul(&x[0], &x[0])?;
            Ok(vec![ops::exp(&y.add(&x[0])?)?.multiply(&x[0])?])
        },
        false,
    )
    .unwrap();
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let out = f.call(&[a]).unwrap();
    let kinds = graph::count_primitives_by_kind(&out).unwrap();
    assert!(kinds.contains(&("Matmul".to_string(), 1)), "{kinds:?}");
    assert!(kinds.contains(&("Compiled".to_string(), 1)), "{kinds:?}");
}

#[test]
fn dot_export_is_a_digraph_with_the_names() {
    let a = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let b = ops::exp(&a).unwrap();
    let dot = graph::to_dot(&[&b], &[(&b, "result")]).unwrap();
    assert!(dot.trim_start().starts_with("digraph"), "{dot}");
    assert!(dot.contains("Exp") && dot.contains("result"), "{dot}");
}

#[test]
fn bad_names_and_empty_graphs() {
    let a = Array::from_slice(&[1.0f32], &[1]).unwrap();
    let err = graph::print_graph(&[&a], &[(&a, "bad\0name")]).unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    // Nothing to list: no outputs, or an array with no ops behind it.
    graph::print_graph::<&Array>(&[], &[]).unwrap();
    let text = graph::print_graph(&[&a], &[]).unwrap();
    assert!(!text.contains("Multiply"), "{text}");
}

// ---- issue 21 part B: graph walks of deep graphs ---------------------------------------

use common::{child_ok, is_child};

/// One entry point's run, on a thread of its own.
type Case = Box<dyn FnOnce() -> mlx_rs::Result<String> + Send>;

/// A chain of `n` additions on `x`.
fn chain(x: &Array, n: usize) -> mlx_rs::Result<Array> {
    let one = Array::scalar(1.0f32);
    let mut y = x.clone();
    for _ in 0..n {
        y = y.add(&one)?;
    }
    Ok(y)
}

#[test]
fn graph_walks_of_deep_graphs_do_not_overflow_the_stack() {
    if !is_child() {
        child_ok("graph_walks_of_deep_graphs_do_not_overflow_the_stack", &[]);
        return;
    }
    use mlx_rs::{export, transforms as tr};
    // Every entry point whose MLX implementation walks the graph recursively, on a thread
    // with a 256 KiB stack and a 20,000-op chain (about 5 MiB of recursion).
    const N: usize = 20_000;
    let want = vec![N as f32];
    let cases: Vec<(&str, Case)> = vec![
        (
            "eval",
            Box::new(|| {
                Ok(format!(
                    "{:?}",
                    chain(&f32s(&[0.0], &[1]), N)?.to_vec::<f32>()?
                ))
            }),
        ),
        (
            "async_eval",
            Box::new(|| {
                let y = chain(&f32s(&[0.0], &[1]), N)?;
                mlx_rs::async_eval(&[&y])?;
                Ok(format!("{:?}", y.to_vec::<f32>()?))
            }),
        ),
        (
            "print",
            Box::new(|| Ok(format!("{}", chain(&f32s(&[0.0], &[1]), N)?))),
        ),
        (
            "print_graph",
            Box::new(|| {
                Ok(graph::print_graph(&[chain(&f32s(&[0.0], &[1]), N)?], &[])?
                    .lines()
                    .count()
                    .to_string())
            }),
        ),
        (
            "to_dot",
            Box::new(|| {
                Ok(graph::to_dot(&[chain(&f32s(&[0.0], &[1]), N)?], &[])?
                    .starts_with("digraph")
                    .to_string())
            }),
        ),
        (
            "compile",
            Box::new(|| {
                let f = tr::compile(|a: &[Array]| Ok(vec![chain(&a[0], N)?]), false)?;
                Ok(format!(
                    "{:?}",
                    f.call(&[f32s(&[0.0], &[1])])?[0].to_vec::<f32>()?
                ))
            }),
        ),
        (
            "grad",
            Box::new(|| {
                let g = tr::grad(
                    |a: &[Array]| chain(&a[0], N)?.sum(false).map(|s| vec![s]),
                    &[0],
                )?;
                Ok(format!(
                    "{:?}",
                    g.call(&[f32s(&[0.0], &[1])])?[0].to_vec::<f32>()?
                ))
            }),
        ),
        (
            "jvp",
            Box::new(|| {
                let x = f32s(&[0.0], &[1]);
                let (_, t) = tr::jvp(
                    |a: &[Array]| Ok(vec![chain(&a[0], N)?]),
                    &[&x],
                    &[f32s(&[1.0], &[1])],
                )?;
                Ok(format!("{:?}", t[0].to_vec::<f32>()?))
            }),
        ),
        (
            "vmap",
            Box::new(|| {
                let f = tr::vmap(|a: &[Array]| Ok(vec![chain(&a[0], N)?]), &[Some(0)], &[0])?;
                Ok(format!(
                    "{:?}",
                    f.call(&[f32s(&[0.0], &[1])])?[0].to_vec::<f32>()?
                ))
            }),
        ),
        (
            "checkpoint",
            Box::new(|| {
                let f = tr::checkpoint(|a: &[Array]| chain(&a[0], N)?.sum(false).map(|s| vec![s]))?;
                let g = tr::grad(f, &[0])?;
                Ok(format!(
                    "{:?}",
                    g.call(&[f32s(&[0.0], &[1])])?[0].to_vec::<f32>()?
                ))
            }),
        ),
        (
            "export_function",
            Box::new(|| {
                let path =
                    std::env::temp_dir().join(format!("mlx-rs-deep-{}.mlxfn", std::process::id()));
                export::export_function(
                    &path,
                    |a: &[Array]| Ok(vec![chain(&a[0], N)?]),
                    &[f32s(&[0.0], &[1])],
                    false,
                )?;
                let written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let _ = std::fs::remove_file(&path);
                Ok(format!("{written} bytes"))
            }),
        ),
        (
            "save",
            Box::new(|| {
                Ok(mlx_rs::io::save_writer(&chain(&f32s(&[0.0], &[1]), N)?)?
                    .len()
                    .to_string())
            }),
        ),
    ];
    for (what, case) in cases {
        let out = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(case)
            .unwrap()
            .join()
            .unwrap_or_else(|_| panic!("{what} panicked"));
        let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
        if out.starts_with('[') {
            let grad_like = ["grad", "jvp", "checkpoint"].contains(&what);
            let expect = if grad_like {
                "[1.0]".to_string()
            } else {
                format!("{want:?}")
            };
            assert_eq!(out, expect, "{what}");
        }
    }
    // The case: the gradient of a 1,000,000-op chain, on the test's own thread.
    let g = mlx_rs::transforms::grad(
        |a: &[Array]| chain(&a[0], 1_000_000)?.sum(false).map(|s| vec![s]),
        &[0],
    )
    .unwrap();
    assert_eq!(
        g.call(&[f32s(&[0.0], &[1])]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        vec![1.0]
    );
    println!("CHILD-DONE");
}
