//! Graph inspection: MLX's listing and DOT export of a lazy graph.

use mlx_rs::{graph, ops, Array};

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
