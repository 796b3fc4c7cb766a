//! Owned `mlx_map_string_to_array` / `mlx_map_string_to_string`, built from and read
//! back into Rust `HashMap`s.

use crate::error::{install_error_handler, mlx_error};
use crate::raw::status;
use crate::{Array, Error, Result};
use mlx_sys as sys;
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::panic::Location;

/// A C string for a map key or value, or [`Error::InvalidArgument`] on a NUL byte.
pub(crate) fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| Error::InvalidArgument(format!("{what} contains a NUL byte: {s:?}")))
}

/// # Safety
/// `p` must be null or a NUL-terminated string valid for this call.
unsafe fn to_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: see the function's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// An owned `mlx_map_string_to_array`.
pub(crate) struct ArrayMap(pub(crate) sys::mlx_map_string_to_array);

impl ArrayMap {
    pub(crate) fn new() -> ArrayMap {
        // SAFETY: creates an empty map, owned by the returned value.
        ArrayMap(unsafe { sys::mlx_map_string_to_array_new() })
    }

    /// A map holding (shared handles of) `arrays`.
    #[track_caller]
    pub(crate) fn from_iter<K, A>(arrays: impl IntoIterator<Item = (K, A)>) -> Result<ArrayMap>
    where
        K: AsRef<str>,
        A: AsRef<Array>,
    {
        let map = ArrayMap::new();
        for (k, a) in arrays {
            let key = c_string("an array name", k.as_ref())?;
            status(|| unsafe {
                sys::mlx_map_string_to_array_insert(map.0, key.as_ptr(), a.as_ref().as_raw())
            })?;
        }
        Ok(map)
    }

    /// The entries as a `HashMap`.
    #[track_caller]
    pub(crate) fn to_hash_map(&self) -> Result<HashMap<String, Array>> {
        install_error_handler();
        let mut out = HashMap::new();
        // SAFETY: iterates a live map; the iterator is freed below.
        let it = unsafe { sys::mlx_map_string_to_array_iterator_new(self.0) };
        if it.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        let result = loop {
            let mut key: *const c_char = std::ptr::null();
            // SAFETY: a fresh handle, owned by the Array built right after the call.
            let mut value = unsafe { sys::mlx_array_new() };
            let code =
                unsafe { sys::mlx_map_string_to_array_iterator_next(&mut key, &mut value, it) };
            let value = Array::from_raw(value);
            match code {
                // SAFETY: `key` points into the live map.
                0 => out.insert(unsafe { to_string(key) }, value),
                2 => break Ok(out),
                _ => break Err(mlx_error(Location::caller())),
            };
        };
        // SAFETY: frees the iterator made above, once.
        unsafe { sys::mlx_map_string_to_array_iterator_free(it) };
        result
    }
}

impl Drop for ArrayMap {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_map_string_to_array_free(self.0) };
    }
}

/// An owned `mlx_map_string_to_string`.
pub(crate) struct StringMap(pub(crate) sys::mlx_map_string_to_string);

impl StringMap {
    pub(crate) fn new() -> StringMap {
        // SAFETY: creates an empty map, owned by the returned value.
        StringMap(unsafe { sys::mlx_map_string_to_string_new() })
    }

    /// A map holding copies of `entries`.
    #[track_caller]
    pub(crate) fn from_iter<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Result<StringMap>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let map = StringMap::new();
        for (k, v) in entries {
            let key = c_string("a metadata key", k.as_ref())?;
            let value = c_string("a metadata value", v.as_ref())?;
            status(|| unsafe {
                sys::mlx_map_string_to_string_insert(map.0, key.as_ptr(), value.as_ptr())
            })?;
        }
        Ok(map)
    }

    /// The entries as a `HashMap`.
    #[track_caller]
    pub(crate) fn to_hash_map(&self) -> Result<HashMap<String, String>> {
        install_error_handler();
        let mut out = HashMap::new();
        // SAFETY: iterates a live map; the iterator is freed below.
        let it = unsafe { sys::mlx_map_string_to_string_iterator_new(self.0) };
        if it.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        let result = loop {
            let mut key: *const c_char = std::ptr::null();
            let mut value: *const c_char = std::ptr::null();
            match unsafe { sys::mlx_map_string_to_string_iterator_next(&mut key, &mut value, it) } {
                // SAFETY: both point into the live map.
                0 => out.insert(unsafe { to_string(key) }, unsafe { to_string(value) }),
                2 => break Ok(out),
                _ => break Err(mlx_error(Location::caller())),
            };
        };
        // SAFETY: frees the iterator made above, once.
        unsafe { sys::mlx_map_string_to_string_iterator_free(it) };
        result
    }
}

impl Drop for StringMap {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_map_string_to_string_free(self.0) };
    }
}
