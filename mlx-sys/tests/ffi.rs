//! The raw FFI works end to end: arrays in, ops, evaluation, values out, and errors that
//! come back as return codes through our handler instead of exiting the process.

use mlx_sys::*;
use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

/// Messages received by the test error handler (one global handler per process).
static LAST_ERROR: Mutex<Option<String>> = Mutex::new(None);

unsafe extern "C" fn record_error(msg: *const c_char, _data: *mut c_void) {
    let text = if msg.is_null() {
        String::new()
    } else {
        CStr::from_ptr(msg).to_string_lossy().into_owned()
    };
    *LAST_ERROR.lock().unwrap() = Some(text);
}

fn install_handler() {
    // SAFETY: the handler is a plain function that never unwinds; no data or destructor.
    unsafe { mlx_set_error_handler(Some(record_error), std::ptr::null_mut(), None) };
}

fn from_f32(data: &[f32], shape: &[i32]) -> mlx_array {
    // SAFETY: `data` holds product(shape) floats; mlx copies them.
    unsafe {
        mlx_array_new_data(
            data.as_ptr().cast(),
            shape.as_ptr(),
            shape.len() as i32,
            MLX_FLOAT32,
        )
    }
}

fn to_vec_f32(a: mlx_array) -> Vec<f32> {
    // SAFETY: the array is evaluated, float32 and contiguous (fresh op result).
    unsafe {
        assert_eq!(mlx_array_eval(a), 0);
        assert_eq!(mlx_array_dtype(a), MLX_FLOAT32);
        let n = mlx_array_size(a);
        std::slice::from_raw_parts(mlx_array_data_float32(a), n).to_vec()
    }
}

fn string_of(s: mlx_string) -> String {
    // SAFETY: mlx_string_data returns a NUL-terminated string owned by `s`.
    unsafe {
        CStr::from_ptr(mlx_string_data(s))
            .to_string_lossy()
            .into_owned()
    }
}

#[test]
fn version_is_the_pinned_one() {
    unsafe {
        let mut s = mlx_string_new();
        assert_eq!(mlx_version(&mut s), 0);
        assert_eq!(string_of(s), MLX_VERSION);
        mlx_string_free(s);
    }
}

#[test]
fn add_and_matmul_give_the_expected_values() {
    install_handler();
    unsafe {
        let stream = mlx_default_cpu_stream_new();
        let a = from_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let b = from_f32(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0], &[2, 3]);
        let mut sum = mlx_array_new();
        assert_eq!(mlx_add(&mut sum, a, b, stream), 0);
        assert_eq!(to_vec_f32(sum), vec![11.0, 22.0, 33.0, 44.0, 55.0, 66.0]);

        // [2,3] @ [3,2]
        let c = from_f32(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]);
        let mut prod = mlx_array_new();
        assert_eq!(mlx_matmul(&mut prod, a, c, stream), 0);
        assert_eq!(mlx_array_ndim(prod), 2);
        let shape = std::slice::from_raw_parts(mlx_array_shape(prod), 2);
        assert_eq!(shape, &[2, 2]);
        // row0: [1+3, 2+3] ; row1: [4+6, 5+6]
        assert_eq!(to_vec_f32(prod), vec![4.0, 5.0, 10.0, 11.0]);

        for x in [a, b, c, sum, prod] {
            mlx_array_free(x);
        }
        mlx_stream_free(stream);
    }
}

#[test]
fn a_shape_mismatch_returns_an_error_code_and_message() {
    install_handler();
    unsafe {
        let stream = mlx_default_cpu_stream_new();
        let a = from_f32(&[1.0, 2.0, 3.0], &[3]);
        let b = from_f32(&[1.0, 2.0], &[2]);
        let mut out = mlx_array_new();
        let rc = mlx_add(&mut out, a, b, stream);
        assert_ne!(rc, 0, "adding shapes [3] and [2] must fail");
        let msg = LAST_ERROR.lock().unwrap().clone().unwrap_or_default();
        assert!(msg.contains("broadcast"), "unexpected message: {msg}");

        // The process is still alive and MLX still works after the failure.
        let mut ok = mlx_array_new();
        assert_eq!(mlx_add(&mut ok, a, a, stream), 0);
        assert_eq!(to_vec_f32(ok), vec![2.0, 4.0, 6.0]);
        for x in [a, b, out, ok] {
            mlx_array_free(x);
        }
        mlx_stream_free(stream);
    }
}

#[test]
fn the_default_device_is_known() {
    unsafe {
        let mut dev = mlx_device_new();
        assert_eq!(mlx_get_default_device(&mut dev), 0);
        let mut s = mlx_string_new();
        assert_eq!(mlx_device_tostring(&mut s, dev), 0);
        let text = string_of(s);
        assert!(text.contains("cpu") || text.contains("gpu"), "{text}");
        mlx_string_free(s);
        mlx_device_free(dev);
    }
}

#[test]
fn the_headers_and_library_folders_hold_mlx() {
    let header = std::path::Path::new(MLX_INCLUDE_DIR).join("mlx/mlx.h");
    assert!(header.is_file(), "{} is missing", header.display());
    // The headers are those of the linked library: version.h names the pinned version.
    let version =
        std::fs::read_to_string(std::path::Path::new(MLX_INCLUDE_DIR).join("mlx/version.h"))
            .unwrap();
    let minor = MLX_VERSION.split('.').nth(1).unwrap();
    assert!(
        version.contains(&format!("#define MLX_VERSION_MINOR {minor}")),
        "version.h is not MLX {MLX_VERSION}'s"
    );
    let libs: Vec<_> = std::fs::read_dir(MLX_LIBDIR)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("libmlx."))
        .collect();
    assert!(!libs.is_empty(), "no libmlx in {MLX_LIBDIR}");
}
