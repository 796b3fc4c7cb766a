//! Bad inputs across the core API and the random, fft, linalg, io and memory modules:
//! each must come back as an `Err` whose message says what is wrong, and the test process
//! must survive all of them (they run in one process, many in parallel).

use mlx_rs::{fft, io, linalg, ops, random, with_stream, Array, Dtype, Error, Stream};
use std::path::PathBuf;

/// Asserts `Err` whose message contains one of `words` (case-insensitive); returns it.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(r: mlx_rs::Result<T>, words: &[&str]) -> Error {
    let e = match r {
        Ok(v) => panic!("expected an error mentioning {words:?}, got Ok({v:?})"),
        Err(e) => e,
    };
    let msg = e.to_string().to_lowercase();
    assert!(
        words.iter().any(|w| msg.contains(&w.to_lowercase())),
        "error {msg:?} mentions none of {words:?}"
    );
    e
}

fn f32s(v: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

/// A file name in the temp folder, unique to this process, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    Scratch(std::env::temp_dir().join(format!("mlx-rs-bad-input-{}-{name}", std::process::id())))
}

// ---- core: building and reading arrays -------------------------------------------

#[test]
fn from_slice_length_mismatch() {
    let e = expect_err(
        Array::from_slice(&[1.0f32, 2.0, 3.0], &[2, 2]),
        &["3 values", "4 elements"],
    );
    assert!(matches!(e, Error::Shape(_)));
}

#[test]
fn from_slice_negative_dimension() {
    expect_err(
        Array::from_slice(&[1.0f32, 2.0], &[-1, -2]),
        &["negative dimension"],
    );
}

#[test]
fn from_slice_overflowing_shape() {
    expect_err(
        Array::from_slice(&[1u8], &[i32::MAX, i32::MAX, i32::MAX]),
        &["too many elements"],
    );
}

#[test]
fn from_bytes_wrong_byte_count() {
    expect_err(
        Array::from_bytes(&[0u8; 7], &[2], Dtype::Float32),
        &["bytes", "elements"],
    );
}

#[test]
fn item_of_many_elements() {
    expect_err(
        f32s(&[1.0, 2.0], &[2]).item::<f32>(),
        &["exactly one element"],
    );
}

#[test]
fn item_of_empty_array() {
    let empty = ops::zeros(&[0], Dtype::Float32).unwrap();
    expect_err(empty.item::<f32>(), &["exactly one element"]);
}

#[test]
fn to_vec_wrong_dtype() {
    let e = expect_err(f32s(&[1.0], &[1]).to_vec::<i32>(), &["dtype mismatch"]);
    assert!(matches!(
        e,
        Error::DtypeMismatch {
            expected: Dtype::Int32,
            found: Dtype::Float32
        }
    ));
}

#[test]
fn to_vec_bf16_as_f32() {
    let b = f32s(&[1.0], &[1]).astype(Dtype::Bfloat16).unwrap();
    expect_err(b.to_vec::<f32>(), &["bfloat16"]);
}

#[test]
fn as_slice_before_eval() {
    let lazy = f32s(&[1.0, 2.0], &[2])
        .add(&f32s(&[3.0, 4.0], &[2]))
        .unwrap();
    expect_err(lazy.as_slice::<f32>(), &["not evaluated", "eval()"]);
}

#[test]
fn dim_out_of_range() {
    expect_err(
        f32s(&[1.0, 2.0], &[2]).try_dim(3),
        &["axis 3 is out of range"],
    );
}

// ---- core: ops -------------------------------------------------------------------

#[test]
fn add_shape_mismatch() {
    let r = f32s(&[1.0; 6], &[2, 3]).add(&f32s(&[1.0; 4], &[2, 2]));
    expect_err(r, &["broadcast"]);
}

#[test]
fn matmul_inner_dimension_mismatch() {
    let r = f32s(&[1.0; 6], &[2, 3]).matmul(&f32s(&[1.0; 8], &[4, 2]));
    expect_err(r, &["must match"]);
}

#[test]
fn matmul_of_a_scalar() {
    expect_err(
        Array::scalar(1.0f32).matmul(&f32s(&[1.0; 4], &[2, 2])),
        &["at least one dimension"],
    );
}

#[test]
fn zeros_negative_shape() {
    expect_err(
        ops::zeros(&[2, -1], Dtype::Float32),
        &["negative dimension"],
    );
}

#[test]
fn arange_zero_step() {
    expect_err(
        ops::arange(0.0, 5.0, 0.0, Dtype::Float32),
        &["step must be nonzero"],
    );
}

#[test]
fn arange_too_long() {
    expect_err(
        ops::arange(0.0, 1e12, 1.0, Dtype::Float32),
        &["maximum size"],
    );
}

#[test]
fn eye_negative_size() {
    expect_err(ops::eye(-2, 2, 0, Dtype::Float32), &["non-negative"]);
}

#[test]
fn complex_to_int_takes_the_real_part() {
    // MLX casts complex to int by taking the real part (NumPy warns, MLX does not); this
    // is documented behaviour, not an error: check it stays that way.
    let c = Array::from_slice(&[mlx_rs::Complex32::new(3.7, 2.0)], &[1]).unwrap();
    assert_eq!(
        c.astype(Dtype::Int32).unwrap().to_vec::<i32>().unwrap(),
        vec![3]
    );
}

#[test]
fn error_carries_the_callers_location() {
    let e = f32s(&[1.0; 2], &[2])
        .matmul(&f32s(&[1.0; 3], &[3]))
        .unwrap_err();
    match e {
        Error::Mlx { location, .. } => {
            assert!(location.file().ends_with("bad_input.rs"), "{location}")
        }
        e => panic!("expected Error::Mlx, got {e:?}"),
    }
}

// ---- random ----------------------------------------------------------------------

#[test]
fn random_negative_shape() {
    expect_err(
        random::uniform_range(0.0..1.0, &[3, -1], None),
        &["negative dimension"],
    );
}

#[test]
fn random_empty_ranges() {
    expect_err(
        random::randint_range(4..4, &[2], None),
        &["non-empty range"],
    );
    expect_err(
        random::uniform_range(2.0..1.0, &[2], None),
        &["non-empty range"],
    );
}

#[test]
fn random_integer_dtype_for_uniform() {
    let (lo, hi) = (Array::scalar(0.0f32), Array::scalar(1.0f32));
    expect_err(
        random::uniform(&lo, &hi, &[2], Dtype::Int32, None),
        &["real floating point"],
    );
}

#[test]
fn random_key_of_wrong_shape() {
    let key = Array::from_slice(&[1u32, 2, 3], &[3]).unwrap();
    expect_err(
        random::normal(&[2], Dtype::Float32, 0.0, 1.0, Some(&key)),
        &["key shape"],
    );
}

#[test]
fn random_categorical_bad_axis() {
    let logits = f32s(&[0.0; 6], &[2, 3]);
    expect_err(random::categorical(&logits, -3, None), &["invalid axis"]);
}

#[test]
fn random_bits_bad_width() {
    expect_err(random::bits(&[4], 8, None), &["width must be 1, 2 or 4"]);
}

// ---- linalg ----------------------------------------------------------------------

#[test]
fn linalg_inv_of_non_square() {
    let r = with_stream(&Stream::cpu(), || linalg::inv(&f32s(&[1.0; 6], &[2, 3])));
    expect_err(r, &["square"]);
}

#[test]
fn linalg_cholesky_of_non_square() {
    let r = with_stream(&Stream::cpu(), || {
        linalg::cholesky(&f32s(&[1.0; 6], &[3, 2]), false)
    });
    expect_err(r, &["square"]);
}

#[test]
fn linalg_of_a_vector() {
    let r = with_stream(&Stream::cpu(), || linalg::qr(&f32s(&[1.0; 3], &[3])));
    expect_err(r, &["2 dimensions", "dimensions"]);
}

#[test]
fn linalg_bad_uplo() {
    let r = with_stream(&Stream::cpu(), || {
        linalg::eigvalsh(&f32s(&[1.0; 4], &[2, 2]), "lower")
    });
    expect_err(r, &["uplo"]);
}

#[test]
fn linalg_singular_matrix_at_eval() {
    let singular = f32s(&[1.0, 2.0, 2.0, 4.0], &[2, 2]);
    let r = with_stream(&Stream::cpu(), || {
        linalg::inv(&singular).and_then(|i| i.to_vec::<f32>())
    });
    match r {
        Err(e) => {
            let msg = e.to_string().to_lowercase();
            assert!(
                msg.contains("factorization") || msg.contains("singular"),
                "{msg}"
            );
        }
        Ok(v) => assert!(
            v.iter().any(|x| !x.is_finite()),
            "singular inverse gave {v:?}"
        ),
    }
}

#[test]
fn linalg_norm_ord_string() {
    expect_err(
        linalg::norm_matrix(&f32s(&[1.0; 4], &[2, 2]), "nuclear-ish", None, false),
        &["invalid ord"],
    );
}

// ---- fft -------------------------------------------------------------------------

#[test]
fn fft_bad_axis() {
    expect_err(
        fft::fft(&f32s(&[1.0; 4], &[4]), None, 1, fft::FftNorm::Backward),
        &["invalid axis"],
    );
}

#[test]
fn fft_negative_size() {
    expect_err(
        fft::rfft(&f32s(&[1.0; 4], &[4]), Some(-4), -1, fft::FftNorm::Backward),
        &["invalid fft output size"],
    );
}

#[test]
fn fft_sizes_and_axes_disagree() {
    let x = f32s(&[1.0; 8], &[2, 4]);
    expect_err(
        fft::fftn(&x, Some(&[2, 4, 1]), Some(&[0, 1]), fft::FftNorm::Backward),
        &["different sizes"],
    );
}

// ---- io --------------------------------------------------------------------------

#[test]
fn load_missing_file() {
    let p = scratch("definitely-missing.safetensors");
    let e = expect_err(io::load_safetensors(&p), &["no such file"]);
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("definitely-missing"));
}

#[test]
fn truncated_safetensors() {
    let a = f32s(&[1.0; 64], &[8, 8]);
    let bytes = io::save_safetensors_writer([("a", &a)], [("k", "v")]).unwrap();
    let p = scratch("truncated.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = expect_err(
        io::load_safetensors(&p),
        &["incomplete download or corrupt"],
    );
    assert!(e.to_string().contains("truncated.safetensors"), "{e}");
}

#[test]
fn garbage_bytes_as_safetensors_in_memory() {
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    expect_err(
        io::load_safetensors_reader(garbage),
        &["in-memory safetensors"],
    );
}

#[test]
fn garbage_bytes_as_gguf() {
    let p = scratch("garbage.gguf");
    std::fs::write(&p, b"GGUF but then nothing that makes sense \x01\x02\x03").unwrap();
    let e = expect_err(io::load_gguf(&p), &["gguf"]);
    assert!(e.to_string().contains("garbage.gguf"), "{e}");
}

#[test]
fn garbage_bytes_as_npy() {
    let p = scratch("garbage.npy");
    std::fs::write(&p, b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz', }").unwrap();
    let e = expect_err(io::load(&p), &["garbage.npy"]);
    assert!(matches!(e, Error::Mlx { .. }), "{e:?}");
    expect_err(
        io::load_reader(b"not an npy at all".as_slice()),
        &["in-memory .npy"],
    );
}

#[test]
fn nul_byte_in_path() {
    let e = expect_err(io::load("weights\0.npy"), &["nul byte"]);
    assert!(matches!(e, Error::InvalidArgument(_)));
}

#[test]
fn save_into_missing_directory() {
    let p = scratch("no-such-subdir").join("out.safetensors");
    let a = f32s(&[1.0], &[1]);
    let e = expect_err(
        io::save_safetensors(&p, [("a", &a)], [("", ""); 0]),
        &["no such file"],
    );
    assert!(e.to_string().contains("no-such-subdir"), "{e}");
}

#[test]
fn save_unsupported_dtype() {
    let a = f32s(&[1.0], &[1]).astype(Dtype::Bfloat16).unwrap();
    let p = scratch("bf16.gguf");
    expect_err(
        io::save_gguf(&p, [("a", &a)], Vec::<(&str, io::GgufValue)>::new()),
        &["bfloat16 is not supported"],
    );
}

#[test]
fn save_without_extension() {
    let e = expect_err(
        io::save(scratch("weights"), &f32s(&[1.0], &[1])),
        &["must end in .npy"],
    );
    assert!(matches!(e, Error::InvalidArgument(_)));
}

#[test]
fn gguf_with_zero_alignment() {
    // gguflib would divide by this alignment: a crash in MLX, an Err here.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(17u64.to_le_bytes());
    b.extend(b"general.alignment");
    b.extend(4u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    let p = scratch("align0.gguf");
    std::fs::write(&p, b).unwrap();
    expect_err(io::load_gguf(&p), &["alignment is 0"]);
}

#[test]
fn npy_with_negative_dimension() {
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }";
    let mut h = dict.as_bytes().to_vec();
    h.resize(117, b' ');
    h.push(b'\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h);
    expect_err(io::load_reader(b), &["negative dimension"]);
}

// ---- evaluation ------------------------------------------------------------

#[test]
fn eval_error_leaves_the_process_usable() {
    // After MLX fails at evaluation, the next op on the same thread works.
    let _ = with_stream(&Stream::cpu(), || {
        linalg::inv(&f32s(&[0.0; 4], &[2, 2])).and_then(|a| a.eval())
    });
    let ok = f32s(&[1.0, 2.0], &[2])
        .square()
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(ok, vec![1.0, 4.0]);
    assert!(mlx_rs::memory::get_active_memory().is_ok());
}
