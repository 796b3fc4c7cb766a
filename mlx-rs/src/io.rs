//! Loading and saving arrays: `.npy` (one array), safetensors (named arrays with string
//! metadata, as files or in memory) and GGUF (named arrays with typed metadata).
//!
//! Loaded arrays are lazy, as in MLX: loading reads the header and checks that every
//! array's bytes lie inside the file; the bytes themselves are read when an array is
//! evaluated. So the file must stay unchanged until then — MLX does not notice a
//! safetensors or GGUF file shortened after loading and reads whatever the OS returns.
//! Evaluate the arrays right after loading ([`crate::eval`]) when the file may change.
//! In-memory loads own a copy of their bytes and have no such caveat. Saving evaluates
//! the arrays and writes them at once.
//!
//! Every failure is an `Err` that names the file: a file that is missing, unreadable or
//! a directory gives [`Error::Io`]; a file MLX rejects (corrupt, truncated, wrong format,
//! unsupported dtype) gives [`Error::Mlx`] with the path in its message.
//!
//! ```
//! use mlx_rs::{io, Array};
//! let w = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3])?;
//! let bytes = io::save_safetensors_writer([("w", &w)], [("format", "mlx")])?;
//! let loaded = io::load_safetensors_reader(bytes)?;
//! assert_eq!(loaded.arrays["w"].to_vec::<f32>()?, vec![1.0, 2.0, 3.0]);
//! assert_eq!(loaded.metadata["format"], "mlx");
//! # Ok::<(), mlx_rs::Error>(())
//! ```

mod bytes;
mod gguf;
mod gguf_header;
mod maps;
mod npy;
mod safetensors_header;

pub use gguf::{load_gguf, save_gguf, Gguf, GgufValue};

use crate::error::{install_error_handler, mlx_error};
use crate::raw::stream_op;
use crate::{Array, Dtype, Error, Result};
use bytes::{BytesReader, BytesWriter};
use maps::{ArrayMap, StringMap};
use mlx_sys as sys;
use std::collections::HashMap;
use std::ffi::CString;
use std::panic::Location;
use std::path::{Path, PathBuf};

/// The arrays and string metadata of a safetensors file.
#[derive(Clone, Debug, Default)]
pub struct Safetensors {
    /// The arrays by name.
    pub arrays: HashMap<String, Array>,
    /// The `__metadata__` entries of the header.
    pub metadata: HashMap<String, String>,
}

/// `path` as a C string for MLX.
fn c_path(path: &Path) -> Result<CString> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| Error::InvalidArgument(format!("path is not valid UTF-8: {path:?}")))?
        .as_bytes()
        .to_vec();
    CString::new(bytes).map_err(|_| {
        Error::InvalidArgument(format!("path contains a NUL byte: {:?}", path.display()))
    })
}

fn io_error(path: &Path, kind: std::io::ErrorKind, msg: &str) -> Error {
    Error::Io {
        path: PathBuf::from(path),
        source: std::io::Error::new(kind, msg.to_string()),
    }
}

/// Checks that `path` is a readable file; returns its length.
fn check_readable(path: &Path) -> Result<u64> {
    let to_io = |source| Error::Io {
        path: PathBuf::from(path),
        source,
    };
    let md = std::fs::metadata(path).map_err(to_io)?;
    if md.is_dir() {
        return Err(io_error(
            path,
            std::io::ErrorKind::InvalidInput,
            "is a directory, not a file",
        ));
    }
    std::fs::File::open(path).map_err(to_io)?;
    Ok(md.len())
}

/// Checks that `path` can be created as a file of type `ext` (MLX appends the extension
/// to names without it, which would write another file than the one asked for): its
/// folder exists and it is not a folder itself.
fn check_writable(path: &Path, ext: &str) -> Result<()> {
    if path.is_dir() {
        return Err(io_error(
            path,
            std::io::ErrorKind::InvalidInput,
            "is a directory, not a file",
        ));
    }
    if path.extension().and_then(|e| e.to_str()) != Some(ext) {
        return Err(Error::InvalidArgument(format!(
            "{}: the file name must end in .{ext} (MLX would otherwise save to {}.{ext})",
            path.display(),
            path.display()
        )));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(parent) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(io_error(
            path,
            std::io::ErrorKind::NotFound,
            &format!("{} is not a directory", parent.display()),
        )),
        Err(e) => Err(io_error(
            path,
            e.kind(),
            &format!("cannot use directory {}: {e}", parent.display()),
        )),
    }
}

/// Makes sure an MLX error names `source` (a path or a reader's label).
fn naming(source: &str, e: Error) -> Error {
    match e {
        Error::Mlx { message, location } if !message.contains(source) => Error::Mlx {
            message: format!("{source}: {message}"),
            location,
        },
        e => e,
    }
}

/// The magic, version, length and header dict at the start of an `.npy` file.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut head = Vec::new();
    (&mut f).take(12).read_to_end(&mut head)?;
    let len = npy::data_offset(&head).unwrap_or(0).min(npy::MAX_HEADER);
    f.take(len.saturating_sub(head.len() as u64))
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Loads the array stored in the `.npy` file at `path`.
#[track_caller]
pub fn load(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let c = c_path(path)?;
    let len = check_readable(path)?;
    let shown = path.display().to_string();
    let head = read_head(path).map_err(|source| Error::Io {
        path: PathBuf::from(path),
        source,
    })?;
    npy::check_header_len(&shown, &head, len)?;
    npy::check_dims(&shown, &head)?;
    let a =
        crate::stream::on_cpu(|| stream_op(|res, s| unsafe { sys::mlx_load(res, c.as_ptr(), s) }))
            .map_err(|e| naming(&shown, e))?;
    npy::check(&shown, &head, len, &a)?;
    check_total(std::iter::once(&a))?;
    Ok(a)
}

/// Loads the array stored in `.npy` format in `bytes` (taken over, or copied from a
/// slice).
#[track_caller]
pub fn load_reader(bytes: impl Into<Vec<u8>>) -> Result<Array> {
    let bytes = bytes.into();
    let head_len = npy::data_offset(&bytes).unwrap_or(0).min(npy::MAX_HEADER) as usize;
    let head: Vec<u8> = bytes.iter().take(head_len.max(12)).copied().collect();
    let total = bytes.len() as u64;
    let reader = BytesReader::new(bytes, &format!("in-memory .npy ({total} bytes)"))?;
    let label = reader.label();
    npy::check_header_len(&label, &head, total)?;
    npy::check_dims(&label, &head)?;
    let a = crate::stream::on_cpu(|| {
        stream_op(|res, s| unsafe { sys::mlx_load_reader(res, reader.0, s) })
    })
    .map_err(|e| naming(&label, e))?;
    npy::check(&label, &head, total, &a)?;
    check_total(std::iter::once(&a))?;
    Ok(a)
}

/// Saves `a` to the `.npy` file at `path` (created or replaced; the name must end in
/// `.npy`). Evaluates `a`.
#[track_caller]
pub fn save(path: impl AsRef<Path>, a: &Array) -> Result<()> {
    let path = path.as_ref();
    let c = c_path(path)?;
    check_writable(path, "npy")?;
    evaluated(&[a])?;
    if a.dtype() == Dtype::Float64 {
        let image = npy::float64_image(a).map_err(|e| naming(&path.display().to_string(), e))?;
        return std::fs::write(path, image).map_err(|source| Error::Io {
            path: PathBuf::from(path),
            source,
        });
    }
    crate::raw::walk_status(|| unsafe { sys::mlx_save(c.as_ptr(), a.as_raw()) })
        .map_err(|e| naming(&path.display().to_string(), e))
}

/// Encodes `a` in `.npy` format in memory. Evaluates `a`.
#[track_caller]
pub fn save_writer(a: &Array) -> Result<Vec<u8>> {
    evaluated(&[a])?;
    if a.dtype() == Dtype::Float64 {
        return npy::float64_image(a).map_err(|e| naming("in-memory .npy", e));
    }
    let writer = BytesWriter::new("in-memory .npy")?;
    crate::raw::walk_status(|| unsafe { sys::mlx_save_writer(writer.0, a.as_raw()) })
        .map_err(|e| naming(&writer.label(), e))?;
    writer.take_bytes()
}

/// Evaluates the arrays a writer is about to save, so that handing their graph to MLX
/// goes through the stream module's dispatch (the writer then only reads them).
pub(crate) fn evaluated(arrays: &[&Array]) -> Result<()> {
    crate::array::eval(arrays)
}

/// Runs an mlx-c loader that fills an array map and a string map. Loading runs on the CPU
/// stream (as in MLX's C++ API): files are read by the CPU, and every dtype (float64 too)
/// can be loaded whatever the default device.
#[track_caller]
fn load_maps(
    f: impl FnOnce(
        *mut sys::mlx_map_string_to_array,
        *mut sys::mlx_map_string_to_string,
        sys::mlx_stream,
    ) -> std::ffi::c_int,
) -> Result<Safetensors> {
    let location = Location::caller();
    install_error_handler();
    let mut arrays = ArrayMap::new();
    let mut metadata = StringMap::new();
    crate::stream::on_cpu(|| {
        crate::stream::with_current_raw(|s| {
            if f(&mut arrays.0, &mut metadata.0, s) != 0 {
                return Err(mlx_error(location));
            }
            Ok(())
        })
    })??;
    let arrays = arrays.to_hash_map()?;
    check_total(arrays.values())?;
    Ok(Safetensors {
        arrays,
        metadata: metadata.to_hash_map()?,
    })
}

/// Refuses loaded arrays that together exceed what MLX may still allocate (see
/// [`crate::memory::set_memory_limit`]); they are lazy, so nothing was read yet.
/// Also refuses an array of negative size (a header MLX misread).
fn check_total<'a>(arrays: impl Iterator<Item = &'a Array>) -> Result<()> {
    let mut total = 0u128;
    for a in arrays {
        crate::raw::check_not_negative(a.shape())?;
        total = total.saturating_add(crate::raw::bytes_of(a.shape(), a.dtype()));
    }
    crate::raw::check_fits(&[0], crate::Dtype::Uint8, total)
}

/// Fails on what MLX would misread in the safetensors header at the start of `head` (an
/// image of `total` bytes): negative dimensions, dimensions above `i32::MAX`, and NUL
/// bytes in names or metadata.
#[track_caller]
fn check_safetensors_header(source: &str, head: &[u8], total: u64) -> Result<()> {
    safetensors_header::check(head, total).map_err(|msg| Error::Mlx {
        message: format!("{source}: [load_safetensors] corrupt safetensors header: {msg}"),
        location: Location::caller(),
    })
}

/// Loads the arrays and metadata of the safetensors file at `path`.
///
/// Fails on a header that MLX would misread: a negative dimension, one above `i32::MAX`,
/// or a NUL byte inside a tensor name or metadata entry.
#[track_caller]
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Safetensors> {
    let path = path.as_ref();
    let c = c_path(path)?;
    let len = check_readable(path)?;
    let head = std::fs::File::open(path)
        .and_then(|f| safetensors_header::read_head(f, len))
        .map_err(|source| Error::Io {
            path: PathBuf::from(path),
            source,
        })?;
    check_safetensors_header(&path.display().to_string(), &head, len)?;
    load_maps(|arrays, metadata, s| unsafe {
        sys::mlx_load_safetensors(arrays, metadata, c.as_ptr(), s)
    })
    .map_err(|e| naming(&path.display().to_string(), e))
}

/// Loads the arrays and metadata of a safetensors image in `bytes` (taken over, or
/// copied from a slice; the arrays read from it lazily).
#[track_caller]
pub fn load_safetensors_reader(bytes: impl Into<Vec<u8>>) -> Result<Safetensors> {
    let bytes = bytes.into();
    let label = format!("in-memory safetensors ({} bytes)", bytes.len());
    check_safetensors_header(&label, &bytes, bytes.len() as u64)?;
    let reader = BytesReader::new(bytes, &label)?;
    let label = reader.label();
    load_maps(|arrays, metadata, s| unsafe {
        sys::mlx_load_safetensors_reader(arrays, metadata, reader.0, s)
    })
    .map_err(|e| naming(&label, e))
}

/// Saves named arrays and string metadata to the safetensors file at `path` (created or
/// replaced; the name must end in `.safetensors`). Evaluates the arrays.
///
/// `arrays` and `metadata` are any collections of pairs: `&HashMap<String, Array>`,
/// `[("w", &w)]`, a `Vec<(String, Array)>`, … For no metadata pass
/// `HashMap::<String, String>::new()` or `[("", ""); 0]`.
#[track_caller]
pub fn save_safetensors<K, A, MK, MV>(
    path: impl AsRef<Path>,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: impl IntoIterator<Item = (MK, MV)>,
) -> Result<()>
where
    K: AsRef<str>,
    A: AsRef<Array>,
    MK: AsRef<str>,
    MV: AsRef<str>,
{
    let path = path.as_ref();
    let c = c_path(path)?;
    let arrays: Vec<(K, A)> = arrays.into_iter().collect();
    evaluated(&arrays.iter().map(|(_, a)| a.as_ref()).collect::<Vec<_>>())?;
    let arrays = ArrayMap::from_iter(arrays)?;
    let metadata = StringMap::from_iter(metadata)?;
    check_writable(path, "safetensors")?;
    crate::raw::walk_status(|| unsafe {
        sys::mlx_save_safetensors(c.as_ptr(), arrays.0, metadata.0)
    })
    .map_err(|e| naming(&path.display().to_string(), e))
}

/// Encodes named arrays and string metadata as a safetensors image in memory. Evaluates
/// the arrays. Arguments as for [`save_safetensors`].
#[track_caller]
pub fn save_safetensors_writer<K, A, MK, MV>(
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: impl IntoIterator<Item = (MK, MV)>,
) -> Result<Vec<u8>>
where
    K: AsRef<str>,
    A: AsRef<Array>,
    MK: AsRef<str>,
    MV: AsRef<str>,
{
    let arrays: Vec<(K, A)> = arrays.into_iter().collect();
    evaluated(&arrays.iter().map(|(_, a)| a.as_ref()).collect::<Vec<_>>())?;
    let arrays = ArrayMap::from_iter(arrays)?;
    let metadata = StringMap::from_iter(metadata)?;
    let writer = BytesWriter::new("in-memory safetensors")?;
    crate::raw::walk_status(|| unsafe {
        sys::mlx_save_safetensors_writer(writer.0, arrays.0, metadata.0)
    })
    .map_err(|e| naming(&writer.label(), e))?;
    writer.take_bytes()
}
