//! Inputs found by the fuzz targets (`fuzz/`) that crashed or exhausted memory, kept as
//! regression tests. Each must now fail cleanly and quickly.

use mlx_rs::io;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mlx-rs-fuzzreg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// fuzz target `safetensors`: a header whose parse error quotes a `%`. mlx-c passed MLX's
/// message to its printf-style `mlx_error` as the format, so vsnprintf read (or with `%n`
/// wrote) through arguments never passed: SEGV in `_mlx_error`.
#[test]
fn percent_signs_in_mlx_messages_are_not_formats() {
    let found: &[u8] = b">\0\0\0\0\0\0\0%\"x\": {\"dtJype\": \"F15\0\0\0T\"F32\"shape\": [\xc5]$ \"datts,:\0[0, \0\0\0\0\0\0\0{]}\x001}\0}\0\0\0\x02\0";
    let err = io::load_safetensors_reader(found).unwrap_err();
    assert!(err.to_string().contains("safetensors"), "{err}");

    // A tensor name full of conversions, quoted by MLX's "invalid data offsets" message.
    let name = "%n%n%n%n%s%s%s%s%x%p";
    let header =
        format!("{{\"{name}\":{{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]}}}}");
    let mut image = (header.len() as u64).to_le_bytes().to_vec();
    image.extend_from_slice(header.as_bytes());
    image.extend_from_slice(&[0; 16]);
    let err = io::load_safetensors_reader(image.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains(name), "the name comes back literally: {err}");

    // The same through a file whose name has conversions too.
    let path = scratch("%s%n%s.safetensors");
    std::fs::write(&path, &image).unwrap();
    let err = io::load_safetensors(&path).unwrap_err().to_string();
    assert!(err.contains(name), "{err}");
}

/// fuzz target `npy`: a format-2 header whose length field says 4 GiB. MLX allocated a
/// buffer of that length before reading (out of memory under the fuzzer's limit).
#[test]
fn npy_header_length_beyond_the_file() {
    let mut found = b"\x93NUMPY\x02\x00\x40\xff\xff\xff".to_vec();
    found.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }");
    let start = std::time::Instant::now();
    let err = io::load_reader(found.clone()).unwrap_err().to_string();
    assert!(err.contains("corrupt .npy header"), "{err}");
    let path = scratch("long-header.npy");
    std::fs::write(&path, &found).unwrap();
    let err = io::load(&path).unwrap_err().to_string();
    assert!(err.contains("corrupt .npy header"), "{err}");
    assert!(
        start.elapsed().as_secs() < 5,
        "rejected before any large allocation"
    );
    // Format 1 (16-bit length) too.
    let v1 = b"\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'".to_vec();
    assert!(io::load_reader(v1).is_err());
}
