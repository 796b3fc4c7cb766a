//! Reads and checks the header of a GGUF file before MLX parses it.
//!
//! MLX parses GGUF with gguflib, which trusts the header: lengths, counts, dimension
//! counts and the alignment are used unchecked, so a corrupt file can crash the process
//! (out-of-bounds reads, division by zero). This walk checks every length against the
//! file size and rejects what gguflib cannot handle, so that MLX only sees well-formed
//! headers. Names with a NUL byte are rejected too (MLX would cut them short there), and
//! so are dimensions above `i32::MAX` (MLX would truncate them). It also lists the
//! metadata keys, which mlx-c cannot enumerate.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
const TYPE_UINT32: u32 = 4;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const MAX_VALUE_TYPE: u32 = 12;
/// gguflib's limit on tensor dimensions.
const MAX_DIMS: u32 = 8;
/// The last GGML tensor type gguflib knows (bf16); later ones would be dropped silently.
const MAX_TENSOR_TYPE: u32 = 30;
/// Retired GGML types (q4_2, q4_3): gguflib divides by their block size of zero.
const RETIRED_TENSOR_TYPES: [u32; 2] = [4, 5];

/// What the header holds that the loader needs.
pub(crate) struct Header {
    /// The metadata keys, in file order.
    pub(crate) metadata_keys: Vec<String>,
}

/// Size in bytes of a fixed-size value type, `None` for strings and arrays.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

struct Walker<R> {
    r: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| format!("the header ends early (at byte {})", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        if n > self.left() {
            return Err(format!(
                "a value at byte {} runs past the end of the file",
                self.pos
            ));
        }
        // `n <= len`, which fits in i64 for any real file.
        self.r
            .seek(SeekFrom::Current(n as i64))
            .map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(())
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()?;
        if n > self.left() {
            return Err(format!(
                "a string at byte {} runs past the end of the file",
                self.pos
            ));
        }
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b).map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn skip_value(&mut self, ty: u32, depth: u32) -> Result<(), String> {
        if let Some(size) = fixed_size(ty) {
            return self.skip(size);
        }
        match ty {
            TYPE_STRING => {
                let n = self.u64()?;
                self.skip(n)
            }
            TYPE_ARRAY if depth < 2 => {
                let elem = self.u32()?;
                let count = self.u64()?;
                if let Some(size) = fixed_size(elem) {
                    return self.skip(count.checked_mul(size).ok_or("an array is too long")?);
                }
                if elem > MAX_VALUE_TYPE {
                    return Err(format!("unknown array element type {elem}"));
                }
                // Strings and arrays take at least 8 bytes each.
                if count > self.left() / 8 {
                    return Err("an array runs past the end of the file".into());
                }
                (0..count).try_for_each(|_| self.skip_value(elem, depth + 1))
            }
            TYPE_ARRAY => Err("arrays nested more than two deep".into()),
            ty => Err(format!("unknown metadata value type {ty}")),
        }
    }
}

/// Fails on a NUL byte inside a name: MLX reads names as C strings, so the name would be
/// cut short there (two tensors could even end up with one name).
fn no_nul(what: &str, s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!("{what} {s:?} contains a NUL byte"));
    }
    Ok(())
}

/// Walks the header of the GGUF file at `path` (of `len` bytes).
pub(crate) fn read(path: &Path) -> Result<Header, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut w = Walker {
        r: BufReader::new(file),
        pos: 0,
        len,
    };
    if &w.bytes::<4>()? != MAGIC {
        return Err("not a GGUF file (no GGUF magic)".into());
    }
    let version = w.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version} is not supported (only 2 and 3)"
        ));
    }
    let tensor_count = w.u64()?;
    let kv_count = w.u64()?;
    // Every entry takes at least a key length and a type (metadata), or a name length,
    // a dimension count, a type and an offset (tensors).
    if kv_count > w.left() / 12 || tensor_count > w.left() / 24 {
        return Err(format!(
            "the header claims {kv_count} metadata entries and {tensor_count} tensors, \
             more than the file can hold"
        ));
    }
    let mut metadata_keys = Vec::with_capacity(kv_count as usize);
    for _ in 0..kv_count {
        let key = w.string()?;
        no_nul("metadata key", &key)?;
        let ty = w.u32()?;
        if key == "general.alignment" && ty == TYPE_UINT32 {
            if w.u32()? == 0 {
                return Err("general.alignment is 0".into());
            }
        } else {
            w.skip_value(ty, 0)
                .map_err(|e| format!("metadata entry {key:?}: {e}"))?;
        }
        metadata_keys.push(key);
    }
    for _ in 0..tensor_count {
        let name = w.string()?;
        no_nul("tensor name", &name)?;
        let ndim = w.u32()?;
        if ndim > MAX_DIMS {
            return Err(format!(
                "tensor {name:?} has {ndim} dimensions (at most {MAX_DIMS})"
            ));
        }
        let mut elements: u64 = 1;
        for _ in 0..ndim {
            let d = w.u64()?;
            if d > i32::MAX as u64 {
                return Err(format!("tensor {name:?} has a dimension of {d}"));
            }
            elements = elements.saturating_mul(d);
        }
        // No GGML type stores more than 8 elements per byte.
        if elements > len.saturating_mul(8).saturating_add(256) {
            return Err(format!(
                "tensor {name:?} claims {elements} elements, more than the file can hold"
            ));
        }
        let ty = w.u32()?;
        if ty > MAX_TENSOR_TYPE || RETIRED_TENSOR_TYPES.contains(&ty) {
            return Err(format!("tensor {name:?} has unsupported GGML type {ty}"));
        }
        let _offset = w.u64()?;
    }
    Ok(Header { metadata_keys })
}
