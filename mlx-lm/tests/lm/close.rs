//! Element-wise comparison with named tolerances (shared with qwen3_5's tests, which
//! include this file).

/// Asserts `actual` is within `atol + rtol·|expected|` of `expected`, element-wise.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], atol: f32, rtol: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let mut worst = (0usize, 0f32);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let err = (a - e).abs();
        let allowed = atol + rtol * e.abs();
        if err > allowed && err - allowed > worst.1 {
            worst = (i, err - allowed);
        }
        assert!(a.is_finite(), "{what}: non-finite value at {i}");
    }
    assert!(
        worst.1 == 0.0,
        "{what}: element {} is {} but expected {} (atol {atol}, rtol {rtol})",
        worst.0,
        actual[worst.0],
        expected[worst.0]
    );
}
