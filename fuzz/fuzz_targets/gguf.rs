//! GGUF files loaded through mlx-rs (`io::load_gguf`, from a scratch file: mlx-c has no
//! in-memory GGUF reader): loading, evaluating every array and every metadata array must
//! never crash; arrays of the dtypes MLX writes must save and load back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlx_fuzz::{read_bytes, scratch};
use mlx_rs::io::{self, GgufValue};
use mlx_rs::Dtype;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let path = scratch("in.gguf");
    std::fs::write(&path, data).expect("write scratch file");
    let Ok(g) = io::load_gguf(&path) else {
        return;
    };
    for value in g.metadata.values() {
        if let GgufValue::Array(a) = value {
            let _ = read_bytes(a);
        }
    }
    let mut good = Vec::new();
    for (name, a) in &g.arrays {
        if let Some(bytes) = read_bytes(a) {
            let savable = matches!(
                a.dtype(),
                Dtype::Float32 | Dtype::Float16 | Dtype::Int8 | Dtype::Int16 | Dtype::Int32
            );
            if savable && !name.is_empty() {
                good.push((name.clone(), a.clone(), bytes));
            }
        }
    }
    let out = scratch("out.gguf");
    if io::save_gguf(
        &out,
        good.iter().map(|(n, a, _)| (n.as_str(), a)),
        HashMap::<String, GgufValue>::new(),
    )
    .is_err()
    {
        return;
    }
    let back = io::load_gguf(&out).expect("reloading a saved GGUF file");
    for (name, a, bytes) in &good {
        let b = &back.arrays[name];
        assert_eq!(b.shape(), a.shape(), "{name}");
        assert_eq!(b.dtype(), a.dtype(), "{name}");
        assert_eq!(read_bytes(b).as_ref(), Some(bytes), "{name}");
    }
});
