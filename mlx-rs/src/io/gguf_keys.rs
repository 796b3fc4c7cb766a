//! Lists the metadata keys of a GGUF file by walking its header.
//!
//! mlx-c can look metadata up by key but cannot enumerate the keys, so the loader reads
//! them here. The walk only skips over values (MLX reads them); it is bounded by the file
//! size so that a corrupt header gives an error rather than a huge allocation or loop.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

/// Size in bytes of a fixed-size GGUF value type, `None` for strings, arrays and
/// unknown types.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),   // u8, i8, bool
        2 | 3 => Some(2),       // u16, i16
        4..=6 => Some(4),       // u32, i32, f32
        10..=12 => Some(8),     // u64, i64, f64
        _ => None,
    }
}

struct Walker<R> {
    r: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| format!("header ends early at byte {} ({e})", self.pos))?;
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
        if n > self.len.saturating_sub(self.pos) {
            return Err(format!("a value at byte {} runs past the end of the file", self.pos));
        }
        let n = i64::try_from(n).map_err(|_| "a value is too long".to_string())?;
        self.r.seek(SeekFrom::Current(n)).map_err(|e| e.to_string())?;
        self.pos += n as u64;
        Ok(())
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()?;
        if n > self.len.saturating_sub(self.pos) {
            return Err(format!("a string at byte {} runs past the end of the file", self.pos));
        }
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b).map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn skip_value(&mut self, ty: u32) -> Result<(), String> {
        match ty {
            TYPE_STRING => {
                let n = self.u64()?;
                self.skip(n)
            }
            TYPE_ARRAY => {
                let elem = self.u32()?;
                let count = self.u64()?;
                if let Some(size) = fixed_size(elem) {
                    return self.skip(count.saturating_mul(size));
                }
                if elem != TYPE_STRING {
                    return Err(format!("unsupported array element type {elem}"));
                }
                // Every string takes at least its 8-byte length.
                if count > self.len.saturating_sub(self.pos) / 8 {
                    return Err("a string array runs past the end of the file".into());
                }
                for _ in 0..count {
                    let n = self.u64()?;
                    self.skip(n)?;
                }
                Ok(())
            }
            ty => match fixed_size(ty) {
                Some(size) => self.skip(size),
                None => Err(format!("unknown value type {ty}")),
            },
        }
    }
}

/// The metadata keys of the GGUF file at `path`, in file order.
pub(crate) fn metadata_keys(path: &Path) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut w = Walker {
        r: BufReader::new(file),
        pos: 0,
        len,
    };
    if &w.bytes::<4>()? != MAGIC {
        return Err("not a GGUF file (bad magic)".into());
    }
    let version = w.u32()?;
    if version < 2 {
        return Err(format!("GGUF version {version} is not supported"));
    }
    let _tensors = w.u64()?;
    let kv_count = w.u64()?;
    // Every entry takes at least a key length and a type.
    if kv_count > len / 12 {
        return Err(format!("the header claims {kv_count} metadata entries"));
    }
    let mut keys = Vec::with_capacity(kv_count as usize);
    for _ in 0..kv_count {
        let key = w.string()?;
        let ty = w.u32()?;
        w.skip_value(ty)?;
        keys.push(key);
    }
    Ok(keys)
}
