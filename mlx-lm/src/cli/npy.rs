//! A writer for NumPy `.npy` files (format version 1.0, little-endian float32).

use std::io::{self, Write};

/// Writes a C-ordered float32 array of the given shape in `.npy` format.
///
/// Fails with `InvalidInput` when `data.len()` is not the product of `shape`.
pub fn write_f32(mut out: impl Write, shape: &[usize], data: &[f32]) -> io::Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("shape {shape:?} holds {count} values, got {}", data.len()),
        ));
    }
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended by
    // a newline to a multiple of 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many dimensions for .npy v1",
        )
    })?;
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&header_len.to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    let mut bytes = Vec::with_capacity(data.len() * 4);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(&bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_and_data() {
        let mut buf = Vec::new();
        write_f32(&mut buf, &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, -1.5]).unwrap();
        assert_eq!(&buf[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([buf[8], buf[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&buf[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        let data = &buf[10 + header_len..];
        assert_eq!(data.len(), 24);
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), -1.5);
    }

    #[test]
    fn one_dimension_has_a_trailing_comma() {
        let mut buf = Vec::new();
        write_f32(&mut buf, &[1], &[7.0]).unwrap();
        assert!(String::from_utf8_lossy(&buf).contains("'shape': (1,), }"));
    }

    #[test]
    fn wrong_length_is_an_error() {
        let err = write_f32(Vec::new(), &[2, 2], &[1.0]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
