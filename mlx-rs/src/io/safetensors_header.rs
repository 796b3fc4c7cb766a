//! Checks the JSON header of a safetensors image before MLX parses it.
//!
//! MLX reads each dimension as a C `int` and each name as a C string. So a negative
//! dimension made an array of negative size (which later ops crash on, hang on or read
//! as zeros), a dimension above `i32::MAX` was silently truncated (`[4294967297]` loaded
//! as `[1]`), and a NUL byte inside a name (`\u0000` in the JSON) cut the name short.
//! This check rejects all three, naming the tensor and the dimension. Headers that are
//! not well-formed JSON are left to MLX, which reports them.

use std::io::Read;

/// MLX's limit on the header length (the one of the reference implementation).
const MAX_HEADER: u64 = 100_000_000;

/// The JSON header of the image that starts with `head` (its length prefix and as much
/// of the header as was read) and holds `total` bytes; `None` when the prefix is not
/// valid for an image of that size (MLX reports it).
fn header(head: &[u8], total: u64) -> Option<&[u8]> {
    let len = u64::from_le_bytes(head.get(..8)?.try_into().ok()?);
    if len == 0 || len >= MAX_HEADER || len > total.saturating_sub(8) {
        return None;
    }
    head.get(8..8 + len as usize)
}

/// The length prefix and header of the safetensors file `r` of `total` bytes.
pub(crate) fn read_head(r: impl Read, total: u64) -> std::io::Result<Vec<u8>> {
    let mut r = r.take(8);
    let mut head = Vec::new();
    r.read_to_end(&mut head)?;
    if let Some(len) = head
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    {
        if len < MAX_HEADER && len <= total.saturating_sub(8) {
            r.into_inner().take(len).read_to_end(&mut head)?;
        }
    }
    Ok(head)
}

/// Fails on a NUL byte in `s`, where MLX would cut the name (or value) short.
fn check_text(what: &str, s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!("{what} {s:?} contains a NUL byte"));
    }
    Ok(())
}

/// Checks the names, metadata and shapes in the header of the image that starts with
/// `head` and holds `total` bytes.
pub(crate) fn check(head: &[u8], total: u64) -> Result<(), String> {
    let Some(json) = header(head, total) else {
        return Ok(());
    };
    let Ok(serde_json::Value::Object(entries)) = serde_json::from_slice(json) else {
        return Ok(());
    };
    for (name, entry) in &entries {
        if name == "__metadata__" {
            for (key, value) in entry.as_object().into_iter().flatten() {
                check_text("metadata key", key)?;
                if let Some(v) = value.as_str() {
                    check_text(&format!("metadata value of {key:?}"), v)?;
                }
            }
            continue;
        }
        check_text("tensor name", name)?;
        let Some(shape) = entry.get("shape").and_then(|s| s.as_array()) else {
            continue;
        };
        let shown = serde_json::Value::Array(shape.clone());
        for dim in shape {
            match dim.as_i64() {
                Some(d) if (0..=i32::MAX as i64).contains(&d) => {}
                Some(d) if d < 0 => {
                    return Err(format!(
                        "tensor {name:?} has the negative dimension {d} in its shape {shown}"
                    ));
                }
                _ => {
                    return Err(format!(
                        "tensor {name:?} has the dimension {dim} in its shape {shown}, which is \
                         not an integer from 0 to {} (the largest MLX dimension)",
                        i32::MAX
                    ));
                }
            }
        }
    }
    Ok(())
}
