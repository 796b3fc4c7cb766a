//! GGUF files: named arrays plus typed metadata (arrays, strings, string lists).

use super::maps::c_string;
use super::{c_path, check_readable, check_writable, gguf_header, naming};
use crate::error::{install_error_handler, mlx_error, take_message};
use crate::raw::{status, MlxString};
use crate::{Array, Error, Result};
use mlx_sys as sys;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::panic::Location;
use std::path::Path;

/// One GGUF metadata value.
///
/// Numbers and numeric lists are arrays (a scalar is a 0-dimensional array).
#[derive(Clone, Debug)]
pub enum GgufValue {
    /// A number or a list of numbers.
    Array(Array),
    /// A string.
    String(String),
    /// A list of strings.
    Strings(Vec<String>),
}

impl From<Array> for GgufValue {
    fn from(a: Array) -> GgufValue {
        GgufValue::Array(a)
    }
}

impl From<&str> for GgufValue {
    fn from(s: &str) -> GgufValue {
        GgufValue::String(s.to_string())
    }
}

impl From<String> for GgufValue {
    fn from(s: String) -> GgufValue {
        GgufValue::String(s)
    }
}

impl From<Vec<String>> for GgufValue {
    fn from(v: Vec<String>) -> GgufValue {
        GgufValue::Strings(v)
    }
}

/// The arrays and metadata of a GGUF file.
#[derive(Clone, Debug, Default)]
pub struct Gguf {
    /// The arrays by name.
    pub arrays: HashMap<String, Array>,
    /// The metadata entries MLX understands (numbers, strings, lists of them) by key.
    pub metadata: HashMap<String, GgufValue>,
}

/// An owned `mlx_io_gguf`.
struct Handle(sys::mlx_io_gguf);

impl Handle {
    #[track_caller]
    fn new() -> Result<Handle> {
        install_error_handler();
        // SAFETY: creates an empty GGUF container, owned by the returned value.
        let raw = unsafe { sys::mlx_io_gguf_new() };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(Handle(raw))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_io_gguf_free(self.0) };
    }
}

/// An owned `mlx_vector_string`.
struct Strings(sys::mlx_vector_string);

impl Strings {
    fn new() -> Strings {
        // SAFETY: creates an empty vector, owned by the returned value.
        Strings(unsafe { sys::mlx_vector_string_new() })
    }

    fn from_strs(items: &[String]) -> Result<Strings> {
        let v = Strings::new();
        for s in items {
            let c = c_string("a metadata string", s)?;
            status(|| unsafe { sys::mlx_vector_string_append_value(v.0, c.as_ptr()) })?;
        }
        Ok(v)
    }

    fn to_vec(&self) -> Result<Vec<String>> {
        // SAFETY: reads a live vector.
        let n = unsafe { sys::mlx_vector_string_size(self.0) };
        (0..n)
            .map(|i| {
                let mut p: *mut c_char = std::ptr::null_mut();
                status(|| unsafe { sys::mlx_vector_string_get(&mut p, self.0, i) })?;
                // SAFETY: points into the live vector; copied at once.
                Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            })
            .collect()
    }
}

impl Drop for Strings {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_vector_string_free(self.0) };
    }
}

/// Turns an mlx-c GGUF accessor code into a result: 0 ok, 2 key not found, 3 wrong type.
#[track_caller]
fn gguf_code(code: c_int, key: &str) -> Result<()> {
    match code {
        0 => Ok(()),
        2 => Err(Error::InvalidArgument(format!("GGUF has no entry {key:?}"))),
        3 => Err(Error::InvalidArgument(format!(
            "GGUF entry {key:?} has another type"
        ))),
        _ => Err(mlx_error(Location::caller())),
    }
}

/// Reads metadata entry `key` whatever its type; `None` for types MLX does not keep.
#[track_caller]
fn metadata_value(h: &Handle, key: &str) -> Result<Option<GgufValue>> {
    let ck = c_string("a metadata key", key)?;
    // `has_*` answer 0 with a flag, 2 for an absent key (no message), 1 on failure.
    let has = |code: c_int, flag: bool| {
        if code == 1 {
            take_message();
        }
        code == 0 && flag
    };
    let mut flag = false;
    let k = ck.as_ptr();
    // SAFETY (the has_* calls): read a live container with a live key.
    if has(
        unsafe { sys::mlx_io_gguf_has_metadata_string(&mut flag, h.0, k) },
        flag,
    ) {
        let mut s = MlxString::new();
        let code = unsafe { sys::mlx_io_gguf_get_metadata_string(&mut s.0, h.0, k) };
        gguf_code(code, key)?;
        return Ok(Some(GgufValue::String(s.to_string_lossy())));
    }
    if has(
        unsafe { sys::mlx_io_gguf_has_metadata_vector_string(&mut flag, h.0, k) },
        flag,
    ) {
        let mut v = Strings::new();
        let code = unsafe { sys::mlx_io_gguf_get_metadata_vector_string(&mut v.0, h.0, k) };
        gguf_code(code, key)?;
        return Ok(Some(GgufValue::Strings(v.to_vec()?)));
    }
    if has(
        unsafe { sys::mlx_io_gguf_has_metadata_array(&mut flag, h.0, k) },
        flag,
    ) {
        // SAFETY: a fresh handle, owned by the Array built right after the call.
        let mut raw = unsafe { sys::mlx_array_new() };
        let code = unsafe { sys::mlx_io_gguf_get_metadata_array(&mut raw, h.0, k) };
        let a = Array::from_raw(raw);
        gguf_code(code, key)?;
        return Ok(Some(GgufValue::Array(a)));
    }
    Ok(None)
}

/// Loads the arrays and metadata of the GGUF file at `path`.
///
/// The header is checked before MLX parses it (MLX's parser trusts it). Tensors of types
/// `q4_0`, `q4_1` and `q8_0` come back in MLX's quantized layout (packed `uint32`
/// weights plus `<name>.scales` / `<name>.biases`), other quantized types as `float16`,
/// as in Python MLX; types MLX cannot convert are errors.
#[track_caller]
pub fn load_gguf(path: impl AsRef<Path>) -> Result<Gguf> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let c = c_path(path)?;
    check_readable(path)?;
    let location = Location::caller();
    // Check the header before gguflib trusts it.
    let header = gguf_header::read(path).map_err(|msg| Error::Mlx {
        message: format!("{shown}: [load_gguf] corrupt GGUF header: {msg}"),
        location,
    })?;
    let mut h = Handle::new()?;
    crate::stream::on_cpu(|| {
        crate::stream::with_current_raw(|s| {
            // SAFETY: mlx_load_gguf frees the empty container in `h` and puts the loaded one
            // in its place, still owned by `h`.
            if unsafe { sys::mlx_load_gguf(&mut h.0, c.as_ptr(), s) } != 0 {
                return Err(naming(&shown, mlx_error(location)));
            }
            Ok(())
        })
    })??;

    let mut keys = Strings::new();
    status(|| unsafe { sys::mlx_io_gguf_get_keys(&mut keys.0, h.0) })?;
    let mut arrays = HashMap::new();
    for name in keys.to_vec()? {
        let cn = c_string("an array name", &name)?;
        // SAFETY: a fresh handle, owned by the Array built right after the call.
        let mut a = unsafe { sys::mlx_array_new() };
        let code = unsafe { sys::mlx_io_gguf_get_array(&mut a, h.0, cn.as_ptr()) };
        let a = Array::from_raw(a);
        gguf_code(code, &name)?;
        arrays.insert(name, a);
    }

    super::check_total(arrays.values())?;
    let mut metadata = HashMap::new();
    for key in header.metadata_keys {
        if let Some(v) = metadata_value(&h, &key)? {
            metadata.insert(key, v);
        }
    }
    Ok(Gguf { arrays, metadata })
}

/// Saves named arrays and metadata to the GGUF file at `path` (created or replaced; the
/// name must end in `.gguf`). Evaluates the arrays.
///
/// MLX writes arrays of `float32`, `float16`, `int8`, `int16` and `int32`; other dtypes
/// fail. `metadata` is any collection of `(key, value)` pairs, values [`GgufValue`] (or
/// references to them).
#[track_caller]
pub fn save_gguf<K, A, MK, MV>(
    path: impl AsRef<Path>,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: impl IntoIterator<Item = (MK, MV)>,
) -> Result<()>
where
    K: AsRef<str>,
    A: AsRef<Array>,
    MK: AsRef<str>,
    MV: Borrow<GgufValue>,
{
    let path = path.as_ref();
    let c = c_path(path)?;
    let h = Handle::new()?;
    let mut written = Vec::new();
    for (name, a) in arrays {
        written.push(a.as_ref().clone());
        let cn = c_string("an array name", name.as_ref())?;
        status(|| unsafe { sys::mlx_io_gguf_set_array(h.0, cn.as_ptr(), a.as_ref().as_raw()) })?;
    }
    for (key, value) in metadata {
        let ck = c_string("a metadata key", key.as_ref())?;
        match value.borrow() {
            GgufValue::Array(a) => status(|| unsafe {
                sys::mlx_io_gguf_set_metadata_array(h.0, ck.as_ptr(), a.as_raw())
            })?,
            GgufValue::String(s) => {
                let cs = c_string("a metadata string", s)?;
                status(|| unsafe {
                    sys::mlx_io_gguf_set_metadata_string(h.0, ck.as_ptr(), cs.as_ptr())
                })?
            }
            GgufValue::Strings(v) => {
                let v = Strings::from_strs(v)?;
                status(|| unsafe {
                    sys::mlx_io_gguf_set_metadata_vector_string(h.0, ck.as_ptr(), v.0)
                })?
            }
        }
    }
    check_writable(path, "gguf")?;
    super::evaluated(&written.iter().collect::<Vec<_>>())?;
    crate::raw::walk_status(|| unsafe { sys::mlx_save_gguf(c.as_ptr(), h.0) })
        .map_err(|e| naming(&path.display().to_string(), e))
}
