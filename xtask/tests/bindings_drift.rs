//! The committed FFI must be exactly what bindgen makes of the mlx-c headers.

#[test]
fn committed_bindings_match_the_headers() {
    let committed = include_str!("../../mlx-sys/src/bindings.rs");
    let libclang = xtask::libclang_dir().expect("libclang is available or installable");
    let fresh = xtask::generate_bindings(&libclang).expect("bindgen runs");
    xtask::compare(committed, &fresh).unwrap();
}

#[test]
fn a_changed_binding_is_reported_with_its_line() {
    let committed = include_str!("../../mlx-sys/src/bindings.rs");
    let tampered = committed.replacen("mlx_array_new()", "mlx_array_new_renamed()", 1);
    let err = xtask::compare(&tampered, committed).unwrap_err();
    assert!(err.contains("mlx_array_new_renamed"), "{err}");
    assert!(err.contains("cargo xtask bindings"), "{err}");
}
