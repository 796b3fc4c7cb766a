//! Checks of `.npy` images that MLX's reader does not make.
//!
//! MLX parses the header loosely and reads the data lazily: a header with a negative
//! dimension, a shape it misreads (`(2,2)` without a space reads as `[2]`), or a file
//! shorter than its header promises would give a wrong or unusable array (or a failure
//! deep inside evaluation). After MLX has parsed the header, these checks compare its
//! result with the header and the data size.

use crate::{Array, Error, Result};
use std::panic::Location;

/// The most header bytes read (NumPy writes a few hundred at most).
pub(super) const MAX_HEADER: u64 = 1 << 20;

/// What the header says.
struct Header {
    data_offset: u64,
    shape: Vec<i64>,
}

/// The header's length prefix: where the data starts, from the first 12 bytes.
pub(super) fn data_offset(head: &[u8]) -> Option<u64> {
    if head.len() < 10 || &head[..6] != b"\x93NUMPY" {
        return None;
    }
    match head[6] {
        1 => Some(10 + u16::from_le_bytes([head[8], head[9]]) as u64),
        2 | 3 if head.len() >= 12 => {
            Some(12 + u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as u64)
        }
        _ => None,
    }
}

/// Fails when the header's length prefix points past the end of an image of `total`
/// bytes. MLX reads the header into a buffer of that length before anything else, so a
/// corrupt prefix (up to 4 GiB in format 2 and 3) would allocate that much first.
#[track_caller]
pub(super) fn check_header_len(source: &str, head: &[u8], total: u64) -> Result<()> {
    match data_offset(head) {
        Some(offset) if offset > total => Err(Error::Mlx {
            message: format!(
                "{source}: [load] corrupt .npy header: its length field says the data starts \
                 at byte {offset}, the file has {total} bytes"
            ),
            location: Location::caller(),
        }),
        _ => Ok(()),
    }
}

/// Fails on a negative dimension in the header at the start of `head`, before MLX makes
/// an array of negative size from it.
#[track_caller]
pub(super) fn check_dims(source: &str, head: &[u8]) -> Result<()> {
    let shape = parse(head).map(|h| h.shape).unwrap_or_default();
    match shape.iter().find(|&&d| d < 0) {
        Some(d) => Err(Error::Mlx {
            message: format!(
                "{source}: [load] negative dimension {d} in the .npy header shape {shape:?}"
            ),
            location: Location::caller(),
        }),
        None => Ok(()),
    }
}

/// Parses the shape tuple of the header in `head` (magic, version, length, dict).
fn parse(head: &[u8]) -> Option<Header> {
    let data_offset = data_offset(head)?;
    let dict_start = if head[6] == 1 { 10 } else { 12 };
    let dict = head.get(dict_start..usize::try_from(data_offset).ok()?)?;
    let dict = std::str::from_utf8(dict).ok()?;
    let after = &dict[dict.find("'shape'")? + "'shape'".len()..];
    let tuple = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('(')?;
    let tuple = &tuple[..tuple.find(')')?];
    let shape = tuple
        .split(',')
        .map(|d| d.trim().trim_end_matches('L'))
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<i64>().ok())
        .collect::<Option<Vec<i64>>>()?;
    Some(Header { data_offset, shape })
}

/// Checks MLX's array `a`, read from `head` (the first bytes of an image of `total`
/// bytes), against the header: same shape, no negative dimension, all data present.
#[track_caller]
pub(super) fn check(source: &str, head: &[u8], total: u64, a: &Array) -> Result<()> {
    let location = Location::caller();
    let fail = |what: String| Error::Mlx {
        message: format!("{source}: [load] {what}"),
        location,
    };
    let header =
        parse(head).ok_or_else(|| fail("cannot read the shape in the .npy header".into()))?;
    if let Some(d) = header.shape.iter().find(|&&d| d < 0) {
        return Err(fail(format!(
            "negative dimension {d} in the .npy header shape {:?}",
            header.shape
        )));
    }
    let mlx_shape: Vec<i64> = a.shape().iter().map(|&d| d as i64).collect();
    if mlx_shape != header.shape {
        return Err(fail(format!(
            "the .npy header says shape {:?}, which MLX read as {mlx_shape:?}",
            header.shape
        )));
    }
    let need = header
        .shape
        .iter()
        .try_fold(a.itemsize() as u128, |n, &d| n.checked_mul(d as u128))
        .and_then(|n| n.checked_add(header.data_offset as u128));
    match need {
        Some(need) if need <= total as u128 => Ok(()),
        need => Err(fail(format!(
            "truncated .npy data: shape {:?} of {} needs {} bytes, the file has {total}",
            header.shape,
            a.dtype(),
            need.map_or("more than 2^128".to_string(), |n| n.to_string())
        ))),
    }
}

/// The `.npy` image of a float64 array, written here byte for byte as MLX's `save` writes
/// it on a CPU. MLX's `save` first makes its array contiguous on the default device, and a
/// GPU cannot hold float64 (MLX refuses the op), so on a GPU machine it could not save
/// float64 at all.
pub(super) fn float64_image(a: &Array) -> Result<Vec<u8>> {
    // Made row-major on the CPU stream when it is not (`to_vec`).
    let data: Vec<f64> = a.to_vec()?;
    // MLX marks an array Fortran-ordered when that order is also its own (at most one
    // dimension above 1), as its flags say.
    let fortran = a.shape().iter().filter(|&&d| d > 1).count() <= 1;
    let order = if fortran { "True" } else { "False" };
    let mut dict = format!("{{'descr': '<f8', 'fortran_order': {order}, 'shape': (");
    for d in a.shape() {
        dict.push_str(&format!("{d}, "));
    }
    dict.push_str(")}");
    // MLX's padding, as it computes it: (magic, version, four bytes for the two-byte
    // length, dict, newline) modulo 16 spaces.
    let padding = (6 + 2 + 4 + dict.len() + 1) % 16;
    dict.push_str(&" ".repeat(padding));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Ok(out)
}
