//! mlx_rs::io: files written by Python MLX (tests/oracle/gen_io.py), round trips of every
//! dtype each format supports (files and in memory), metadata, and files that are
//! missing, corrupt or truncated.

mod common;

use mlx_rs::io::{self, GgufValue};
use mlx_rs::{Array, Complex32, Dtype, Error};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh folder for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mlx-rs-io-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const NO_METADATA: [(&str, &str); 0] = [];

/// One small array of each dtype (values chosen to be exact in every dtype).
fn samples() -> Vec<(String, Array)> {
    let base = Array::from_slice(&[0.0f32, 1.0, -2.0, 3.5, 4.0, -5.25], &[2, 3]).unwrap();
    let mut out: Vec<(String, Array)> = [
        Dtype::Float32,
        Dtype::Float16,
        Dtype::Bfloat16,
        Dtype::Int8,
        Dtype::Int16,
        Dtype::Int32,
        Dtype::Int64,
        Dtype::Bool,
    ]
    .into_iter()
    .map(|d| (format!("a_{d}"), base.astype(d).unwrap()))
    .collect();
    let unsigned = Array::from_slice(&[0u32, 1, 2, 200, 7, 9], &[3, 2]).unwrap();
    for d in [Dtype::Uint8, Dtype::Uint16, Dtype::Uint32, Dtype::Uint64] {
        out.push((format!("a_{d}"), unsigned.astype(d).unwrap()));
    }
    let c: Vec<Complex32> = (0..4)
        .map(|i| Complex32::new(i as f32, -(i as f32) / 2.0))
        .collect();
    out.push(("a_complex64".into(), Array::from_slice(&c, &[4]).unwrap()));
    out.push(("scalar".into(), Array::scalar(2.5f32)));
    out.push((
        "empty".into(),
        mlx_rs::ops::zeros(&[0, 3], Dtype::Float32).unwrap(),
    ));
    out
}

/// Exact equality of dtype, shape and bytes (read through float64 / complex).
fn assert_same(got: &Array, want: &Array, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    if want.dtype() == Dtype::Complex64 {
        assert_eq!(
            got.to_vec::<Complex32>().unwrap(),
            want.to_vec::<Complex32>().unwrap(),
            "{what}"
        );
        return;
    }
    let cpu = mlx_rs::Stream::cpu();
    let f = |a: &Array| {
        mlx_rs::with_stream(&cpu, || a.astype(Dtype::Float64))
            .unwrap()
            .to_vec::<f64>()
            .unwrap()
    };
    assert_eq!(f(got), f(want), "{what}: values");
}

#[test]
fn loads_files_written_by_python() {
    let st = io::load_safetensors(fixture("py_arrays.safetensors")).unwrap();
    let gg = io::load_gguf(fixture("py_arrays.gguf")).unwrap();
    let mut checked = 0;
    for case in common::load("io") {
        match case.op.as_str() {
            "safetensors" => case.check(0, &st.arrays[&case.str("key")]),
            "safetensors_metadata" => {
                let want: HashMap<String, String> =
                    serde_json::from_value(case.args.clone()).unwrap();
                assert_eq!(st.metadata, want);
            }
            "gguf" => case.check(0, &gg.arrays[&case.str("key")]),
            "gguf_meta_array" => match &gg.metadata[&case.str("key")] {
                GgufValue::Array(a) => case.check(0, a),
                other => panic!("{}: {other:?}", case.name),
            },
            "gguf_meta_strings" => {
                assert!(
                    matches!(&gg.metadata["general.name"], GgufValue::String(s) if s == "tiny")
                );
                let want: Vec<String> =
                    serde_json::from_value(case.args["tokens"].clone()).unwrap();
                assert!(matches!(&gg.metadata["tokens"], GgufValue::Strings(v) if *v == want));
            }
            "npy" => case.check(0, &io::load(fixture(&case.str("file"))).unwrap()),
            op => panic!("unknown op {op}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 27);
    assert_eq!(
        st.arrays.len(),
        15,
        "no extra or missing safetensors arrays"
    );
    assert_eq!(gg.arrays.len(), 5, "no extra or missing gguf arrays");
    assert_eq!(gg.metadata.len(), 4, "every gguf metadata entry");
}

#[test]
fn safetensors_round_trip_every_dtype() {
    let dir = TempDir::new("st");
    let arrays = samples();
    let meta = HashMap::from([
        ("format".to_string(), "mlx".to_string()),
        ("ü nicode".into(), "✓".into()),
    ]);
    let path = dir.path("all.safetensors");
    io::save_safetensors(&path, arrays.iter().map(|(k, a)| (k, a)), &meta).unwrap();
    let back = io::load_safetensors(&path).unwrap();
    assert_eq!(back.metadata, meta);
    assert_eq!(back.arrays.len(), arrays.len());
    for (k, a) in &arrays {
        assert_same(&back.arrays[k], a, k);
    }

    // The same in memory, byte for byte the file's content.
    let bytes = io::save_safetensors_writer(arrays.iter().map(|(k, a)| (k, a)), &meta).unwrap();
    let from_mem = io::load_safetensors_reader(bytes.as_slice()).unwrap();
    assert_eq!(from_mem.metadata, meta);
    for (k, a) in &arrays {
        assert_same(&from_mem.arrays[k], a, k);
    }
    let file_bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), file_bytes.len());
}

#[test]
fn in_memory_arrays_outlive_the_buffer() {
    let a = mlx_rs::ops::arange(0.0, 4096.0, 1.0, Dtype::Float32).unwrap();
    let bytes = io::save_safetensors_writer([("a", &a)], NO_METADATA).unwrap();
    // The loaded array reads its bytes lazily; the reader owns a copy of them.
    let loaded = io::load_safetensors_reader(bytes).unwrap();
    let arr = loaded.arrays["a"].clone();
    drop(loaded);
    let v = arr.to_vec::<f32>().unwrap();
    assert_eq!(v.len(), 4096);
    assert_eq!(v[4095], 4095.0);
    // Many arrays read from one buffer on MLX's I/O threads.
    let many: Vec<(String, Array)> = (0..32)
        .map(|i| {
            (
                format!("x{i}"),
                mlx_rs::ops::ones(&[1000 + i], Dtype::Float32).unwrap(),
            )
        })
        .collect();
    let bytes = io::save_safetensors_writer(many.iter().map(|(k, a)| (k, a)), NO_METADATA).unwrap();
    let back = io::load_safetensors_reader(bytes).unwrap();
    let all: Vec<Array> = back.arrays.values().cloned().collect();
    mlx_rs::eval(&all).unwrap();
    for (k, a) in &many {
        assert_same(&back.arrays[k], a, k);
    }
}

#[test]
fn npy_round_trip_every_dtype() {
    let dir = TempDir::new("npy");
    let mut arrays = samples();
    arrays.push((
        "f64".into(),
        mlx_rs::with_stream(&mlx_rs::Stream::cpu(), || {
            arrays[0].1.astype(Dtype::Float64)
        })
        .unwrap(),
    ));
    for (k, a) in &arrays {
        let path = dir.path(&format!("{k}.npy"));
        // Float64 too, on any device: MLX's own `save` made the array contiguous on the
        // default device, which on a GPU cannot hold float64 (it failed on an H100), so
        // mlx-rs writes float64 images itself (byte for byte as MLX does on the CPU).
        {
            io::save(&path, a).unwrap();
            assert_same(&io::load(&path).unwrap(), a, k);
            let bytes = io::save_writer(a).unwrap();
            assert_eq!(
                bytes,
                std::fs::read(&path).unwrap(),
                "{k}: file and memory agree"
            );
            assert_same(&io::load_reader(bytes).unwrap(), a, k);
        }
    }
}

#[test]
fn gguf_round_trip_with_metadata() {
    let dir = TempDir::new("gguf");
    let base = Array::from_slice(&[1.0f32, -2.0, 3.0, 4.5, 0.0, 6.0], &[3, 2]).unwrap();
    let arrays: Vec<(String, Array)> = [
        Dtype::Float32,
        Dtype::Float16,
        Dtype::Int8,
        Dtype::Int16,
        Dtype::Int32,
    ]
    .into_iter()
    .map(|d| (format!("w_{d}"), base.astype(d).unwrap()))
    .collect();
    let meta: Vec<(&str, GgufValue)> = vec![
        ("general.architecture", "llama".into()),
        (
            "tokenizer.tokens",
            vec!["a".to_string(), "bb".into(), "".into()].into(),
        ),
        (
            "dims",
            Array::from_slice(&[1i32, 2, 3], &[3]).unwrap().into(),
        ),
        ("rope.theta", Array::scalar(10000.0f32).into()),
    ];
    let path = dir.path("m.gguf");
    io::save_gguf(
        &path,
        arrays.iter().map(|(k, a)| (k, a)),
        meta.iter().map(|(k, v)| (*k, v)),
    )
    .unwrap();
    let back = io::load_gguf(&path).unwrap();
    assert_eq!(back.arrays.len(), arrays.len());
    for (k, a) in &arrays {
        assert_same(&back.arrays[k], a, k);
    }
    assert_eq!(back.metadata.len(), meta.len());
    for (k, v) in &meta {
        match (v, &back.metadata[*k]) {
            (GgufValue::String(a), GgufValue::String(b)) => assert_eq!(a, b),
            (GgufValue::Strings(a), GgufValue::Strings(b)) => assert_eq!(a, b),
            (GgufValue::Array(a), GgufValue::Array(b)) => assert_same(b, a, k),
            (a, b) => panic!("{k}: saved {a:?}, loaded {b:?}"),
        }
    }
    // Dtypes GGUF cannot hold are errors, not silent conversions.
    let e = io::save_gguf(
        dir.path("bad.gguf"),
        [("b", &base.astype(Dtype::Bfloat16).unwrap())],
        Vec::<(&str, GgufValue)>::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
}

/// Asserts an error that names `path` and says one of `words`.
fn assert_file_err<T: std::fmt::Debug>(r: mlx_rs::Result<T>, path: &Path, words: &[&str]) {
    let e = r.expect_err("expected an error");
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "{msg:?} does not name {}",
        path.display()
    );
    let lower = msg.to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(&w.to_lowercase())),
        "{msg:?} mentions none of {words:?}"
    );
}

#[test]
fn missing_corrupt_and_truncated_files_are_errors() {
    let dir = TempDir::new("bad");
    let missing = dir.path("missing.safetensors");
    let r = io::load_safetensors(&missing);
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert_file_err(r, &missing, &["no such file"]);
    assert_file_err(
        io::load_gguf(dir.path("missing.gguf")),
        &dir.path("missing.gguf"),
        &["no such file"],
    );
    assert_file_err(
        io::load(dir.path("missing.npy")),
        &dir.path("missing.npy"),
        &["no such file"],
    );
    assert_file_err(io::load_safetensors(&dir.0), &dir.0, &["directory"]);

    let a = mlx_rs::ops::arange(0.0, 100.0, 1.0, Dtype::Float32).unwrap();
    let good = dir.path("good.safetensors");
    io::save_safetensors(&good, [("a", &a)], [("k", "v")]).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for (i, cut) in [bytes.len() - 4, bytes.len() / 2, 20, 9, 3, 0]
        .into_iter()
        .enumerate()
    {
        let p = dir.path(&format!("cut{i}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        assert_file_err(
            io::load_safetensors(&p),
            &p,
            &["incomplete", "corrupt", "read", "header", "json"],
        );
        assert!(
            io::load_safetensors_reader(&bytes[..cut]).is_err(),
            "in-memory cut at {cut}"
        );
    }
    let garbage = dir.path("garbage.safetensors");
    std::fs::write(
        &garbage,
        b"this is not a safetensors file at all, just text",
    )
    .unwrap();
    assert_file_err(
        io::load_safetensors(&garbage),
        &garbage,
        &["incomplete", "corrupt", "json", "header"],
    );

    let g = dir.path("good.gguf");
    io::save_gguf(&g, [("a", &a)], [("name", GgufValue::from("x"))]).unwrap();
    let gbytes = std::fs::read(&g).unwrap();
    for (i, cut) in [gbytes.len() - 8, 40, 10, 0].into_iter().enumerate() {
        let p = dir.path(&format!("cut{i}.gguf"));
        std::fs::write(&p, &gbytes[..cut]).unwrap();
        assert_file_err(io::load_gguf(&p), &p, &["gguf", "past the end", "corrupt"]);
    }

    let n = dir.path("good.npy");
    io::save(&n, &a).unwrap();
    let nbytes = std::fs::read(&n).unwrap();
    for (i, cut) in [nbytes.len() - 4, 60, 5, 0].into_iter().enumerate() {
        let p = dir.path(&format!("cut{i}.npy"));
        std::fs::write(&p, &nbytes[..cut]).unwrap();
        assert_file_err(io::load(&p), &p, &["truncated", "read", "header", "npy"]);
        assert!(
            io::load_reader(&nbytes[..cut]).is_err(),
            "in-memory .npy cut at {cut}"
        );
    }
}

#[test]
fn saving_to_bad_places_is_an_error() {
    let dir = TempDir::new("save");
    let a = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let nowhere = dir.path("no/such/dir/x.safetensors");
    let r = io::save_safetensors(&nowhere, [("a", &a)], NO_METADATA);
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert_file_err(r, &nowhere, &["directory", "no such file"]);
    assert_file_err(
        io::save(dir.path("no/x.npy"), &a),
        &dir.path("no/x.npy"),
        &["no such file"],
    );
    assert_file_err(
        io::save_gguf(
            dir.path("no/x.gguf"),
            [("a", &a)],
            Vec::<(&str, GgufValue)>::new(),
        ),
        &dir.path("no/x.gguf"),
        &["no such file"],
    );
    assert_file_err(io::save(&dir.0, &a), &dir.0, &["directory"]);
    let e = io::save(dir.path("nul\0byte.npy"), &a).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("NUL"),
        "{e}"
    );
    let e = io::save_safetensors(dir.path("x.safetensors"), [("bad\0name", &a)], NO_METADATA)
        .unwrap_err();
    assert!(e.to_string().contains("NUL"), "{e}");
    let f64s = mlx_rs::with_stream(&mlx_rs::Stream::cpu(), || a.astype(Dtype::Float64)).unwrap();
    let p = dir.path("f64.safetensors");
    assert_file_err(
        io::save_safetensors(&p, [("a", &f64s)], NO_METADATA),
        &p,
        // CPU: safetensors has no float64 here; GPU default device: MLX refuses float64.
        &["dtype", "float64"],
    );
    assert!(io::save_safetensors_writer([("a", &f64s)], NO_METADATA).is_err());
}

#[test]
fn files_changed_after_loading() {
    let dir = TempDir::new("late");
    let a = mlx_rs::ops::arange(0.0, 50_000.0, 1.0, Dtype::Float32).unwrap();
    let want = a.to_vec::<f32>().unwrap();
    // Evaluated right after loading, the arrays no longer need the file.
    let p = dir.path("late.safetensors");
    io::save_safetensors(&p, [("a", &a)], NO_METADATA).unwrap();
    let loaded = io::load_safetensors(&p).unwrap();
    mlx_rs::eval(&loaded.arrays.values().collect::<Vec<_>>()).unwrap();
    std::fs::write(&p, b"").unwrap();
    assert_eq!(loaded.arrays["a"].to_vec::<f32>().unwrap(), want);
    // Not evaluated: reading a file emptied since is an Err at evaluation, not an abort.
    let n = dir.path("late.npy");
    io::save(&n, &a).unwrap();
    let lazy = io::load(&n).unwrap();
    std::fs::write(&n, b"").unwrap();
    let e = lazy.to_vec::<f32>().unwrap_err();
    assert!(e.to_string().contains("read"), "{e}");
}

/// A GGUF v`version` file with one metadata entry (`key`, u32 `value`) and one 1-D tensor.
fn gguf_bytes(version: u32, key: &str, value: u32, tensor_type: u32, dims: &[u64]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata entries
    b.extend((key.len() as u64).to_le_bytes());
    b.extend(key.as_bytes());
    b.extend(4u32.to_le_bytes()); // uint32
    b.extend(value.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(b't');
    b.extend((dims.len() as u32).to_le_bytes());
    dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
    b.extend(tensor_type.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().next_multiple_of(32) + 1024, 1);
    b
}

/// An `.npy` image with the given header dict and `data`.
fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut h = dict.as_bytes().to_vec();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h);
    b.extend(data);
    b
}

#[test]
fn hostile_headers_are_rejected_before_they_reach_mlx() {
    let dir = TempDir::new("hostile");
    // A well-formed file of the same layout loads, so the rejections below are specific.
    let p = dir.path("ok.gguf");
    std::fs::write(&p, gguf_bytes(3, "general.alignment", 32, 0, &[16])).unwrap();
    assert_eq!(io::load_gguf(&p).unwrap().arrays["t"].shape(), &[16]);
    // Each of these crashes MLX's own GGUF parser (division by zero, out-of-bounds reads)
    // or is silently dropped by it.
    for (name, bytes, words) in [
        (
            "align0",
            gguf_bytes(3, "general.alignment", 0, 0, &[16]),
            "alignment is 0",
        ),
        (
            "retired",
            gguf_bytes(3, "k", 1, 4, &[16]),
            "unsupported ggml type 4",
        ),
        (
            "future",
            gguf_bytes(3, "k", 1, 41, &[16]),
            "unsupported ggml type 41",
        ),
        ("dims9", gguf_bytes(3, "k", 1, 0, &[1; 9]), "9 dimensions"),
        (
            "bigdim",
            gguf_bytes(3, "k", 1, 0, &[1 << 40]),
            "dimension of",
        ),
        ("v1", gguf_bytes(1, "k", 1, 0, &[16]), "version 1"),
    ] {
        let p = dir.path(&format!("{name}.gguf"));
        std::fs::write(&p, bytes).unwrap();
        assert_file_err(io::load_gguf(&p), &p, &[words]);
    }
    let mut garbage = b"GGUF".to_vec();
    garbage.extend(3u32.to_le_bytes());
    garbage.extend(u64::MAX.to_le_bytes());
    garbage.extend(u64::MAX.to_le_bytes());
    let p = dir.path("counts.gguf");
    std::fs::write(&p, garbage).unwrap();
    assert_file_err(io::load_gguf(&p), &p, &["more than the file can hold"]);

    let four = [0u8; 16];
    for (name, dict, words) in [
        (
            "neg",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }",
            "negative dimension",
        ),
        (
            "nospace",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,2), }",
            "mlx read as [2]",
        ),
        (
            "short",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            "truncated",
        ),
    ] {
        let bytes = npy_bytes(dict, &four);
        let p = dir.path(&format!("{name}.npy"));
        std::fs::write(&p, &bytes).unwrap();
        assert_file_err(io::load(&p), &p, &[words]);
        let e = io::load_reader(bytes)
            .unwrap_err()
            .to_string()
            .to_lowercase();
        assert!(e.contains(words) && e.contains("in-memory"), "{e}");
    }
    // The same layout with a consistent header loads.
    let ok = npy_bytes(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
        &four,
    );
    assert_eq!(io::load_reader(ok).unwrap().shape(), &[2, 2]);
}

#[test]
fn save_names_must_carry_the_extension() {
    let dir = TempDir::new("ext");
    let a = Array::from_slice(&[1.0f32], &[1]).unwrap();
    let e = io::save(dir.path("weights.bin"), &a).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)) && e.to_string().contains(".npy"),
        "{e}"
    );
    let e = io::save_safetensors(dir.path("w"), [("a", &a)], NO_METADATA).unwrap_err();
    assert!(e.to_string().contains(".safetensors"), "{e}");
    let e = io::save_gguf(
        dir.path("w.safetensors"),
        [("a", &a)],
        Vec::<(&str, GgufValue)>::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains(".gguf"), "{e}");
    assert!(!dir.path("weights.bin.npy").exists() && !dir.path("w.safetensors.gguf").exists());
}

/// Loads `bytes` written to `path` with the loader for its extension (and from memory
/// where the format has an in-memory loader), evaluating what loads.
fn load_any(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    let from_file: mlx_rs::Result<Vec<Array>> = match path.extension().unwrap().to_str().unwrap() {
        "gguf" => io::load_gguf(path).map(|g| g.arrays.into_values().collect()),
        "safetensors" => io::load_safetensors(path).map(|s| s.arrays.into_values().collect()),
        _ => io::load(path).map(|a| vec![a]),
    };
    let _ = from_file.and_then(|v| mlx_rs::eval(&v));
    let from_memory: mlx_rs::Result<Vec<Array>> = match path.extension().unwrap().to_str().unwrap()
    {
        "safetensors" => {
            io::load_safetensors_reader(bytes).map(|s| s.arrays.into_values().collect())
        }
        "npy" => io::load_reader(bytes).map(|a| vec![a]),
        _ => Ok(vec![]),
    };
    let _ = from_memory.and_then(|v| mlx_rs::eval(&v));
}

#[test]
fn mutated_files_never_bring_the_process_down() {
    // Random byte changes and cuts (a fixed-seed generator, so failures reproduce) in
    // files written by Python MLX. Without the header checks, MLX's GGUF parser crashes
    // on some of these; every outcome here must be Ok or Err.
    let dir = TempDir::new("mutate");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    for name in ["py_arrays.gguf", "py_arrays.safetensors", "py_f32.npy"] {
        let orig = std::fs::read(fixture(name)).unwrap();
        let path = dir.path(name);
        for _ in 0..150 {
            let mut b = orig.clone();
            for _ in 0..1 + next() % 4 {
                // Mostly the header, where the parsers trust lengths and counts.
                let limit = if next() % 2 == 0 {
                    b.len().min(256)
                } else {
                    b.len()
                };
                let pos = next() % limit;
                b[pos] = match next() % 4 {
                    0 => 0xff,
                    1 => 0,
                    2 => b[pos].wrapping_add(1),
                    _ => next() as u8,
                };
            }
            if next() % 10 == 0 {
                b.truncate(next() % b.len());
            }
            load_any(&path, &b);
        }
    }
}
