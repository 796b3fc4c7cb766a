//! `.npy` images loaded through mlx-rs, from memory (`io::load_reader`) and from a file
//! (`io::load`): both must agree, evaluating must never crash, and what loads must save
//! and load back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlx_fuzz::{read_bytes, scratch};
use mlx_rs::io;

fuzz_target!(|data: &[u8]| {
    let from_memory = io::load_reader(data);
    let path = scratch("in.npy");
    std::fs::write(&path, data).expect("write scratch file");
    let from_file = io::load(&path);
    assert_eq!(
        from_memory.is_ok(),
        from_file.is_ok(),
        "memory: {from_memory:?}, file: {from_file:?}"
    );
    let (Ok(a), Ok(f)) = (from_memory, from_file) else {
        return;
    };
    assert_eq!(a.shape(), f.shape());
    assert_eq!(a.dtype(), f.dtype());
    let bytes = read_bytes(&a);
    assert_eq!(bytes, read_bytes(&f), "memory and file loads differ");
    let Some(bytes) = bytes else { return };
    let image = io::save_writer(&a).expect("saving a loaded array");
    let back = io::load_reader(image).expect("reloading a saved array");
    assert_eq!(back.shape(), a.shape());
    assert_eq!(back.dtype(), a.dtype());
    assert_eq!(read_bytes(&back), Some(bytes));
});
