//! Safetensors images loaded from memory through mlx-rs (`io::load_safetensors_reader`):
//! loading, evaluating every array and reading all its bytes must never crash; what
//! loads must save and load back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlx_fuzz::read_bytes;
use mlx_rs::io;

fuzz_target!(|data: &[u8]| {
    let Ok(st) = io::load_safetensors_reader(data) else {
        return;
    };
    let mut good = Vec::new();
    for (name, a) in &st.arrays {
        // Every byte of the array must come from the image.
        if let Some(bytes) = read_bytes(a) {
            assert!(
                a.nbytes() <= data.len(),
                "{name}: {} bytes of data from an image of {} bytes",
                a.nbytes(),
                data.len()
            );
            good.push((name.clone(), a.clone(), bytes));
        }
    }
    // Round trip of what evaluated: same names, shapes, dtypes and bytes.
    let Ok(image) =
        io::save_safetensors_writer(good.iter().map(|(n, a, _)| (n.as_str(), a)), &st.metadata)
    else {
        return;
    };
    let back = io::load_safetensors_reader(image).expect("reloading a saved image");
    assert_eq!(back.arrays.len(), good.len());
    assert_eq!(back.metadata, st.metadata);
    for (name, a, bytes) in &good {
        let b = &back.arrays[name];
        assert_eq!(b.shape(), a.shape(), "{name}");
        assert_eq!(b.dtype(), a.dtype(), "{name}");
        assert_eq!(read_bytes(b).as_ref(), Some(bytes), "{name}");
    }
});
