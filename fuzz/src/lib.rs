//! Helpers shared by the fuzz targets.

use mlx_rs::{Array, Dtype};
use std::path::PathBuf;

/// Evaluates `a` and reads every byte of its data (through a `uint8` view of the
/// flattened array), so that the loader's lazy reads really happen. Returns the bytes, or
/// `None` when MLX reports an error (which is fine: only crashes and panics are bugs).
pub fn read_bytes(a: &Array) -> Option<Vec<u8>> {
    let flat = a.reshape(&[-1]).ok()?;
    let bytes = flat.view(Dtype::Uint8).ok()?;
    let v = bytes.to_vec::<u8>().ok()?;
    assert_eq!(
        v.len(),
        a.nbytes(),
        "the data of an array of shape {:?} and dtype {} has {} bytes, expected nbytes() = {}",
        a.shape(),
        a.dtype(),
        v.len(),
        a.nbytes()
    );
    Some(v)
}

/// A scratch path unique to this process (fuzz targets run one input at a time).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlx-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Splits `data` at its first two bytes (a little-endian length) into a head of at most
/// that length and the rest.
pub fn split_u16(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let n = n.min(rest.len());
    rest.split_at(n)
}
