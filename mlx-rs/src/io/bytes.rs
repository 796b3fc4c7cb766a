//! In-memory `mlx_io_reader` / `mlx_io_writer` backed by Rust byte buffers.
//!
//! MLX drives these through C callbacks (a vtable), possibly from its I/O worker threads
//! and after the loading call has returned (loaded arrays read their bytes lazily, when
//! evaluated). So the reader owns its bytes, keeps its cursor behind a mutex, and is
//! freed by MLX (through the `free` callback) when the last array that needs it is gone.
//! No callback ever unwinds into C: each body runs under `catch_unwind` and a panic turns
//! into the callback's failure value, which MLX reports as an error.

use crate::error::{install_error_handler, mlx_error};
use crate::raw::MlxString;
use crate::Result;
use mlx_sys as sys;
use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::{Mutex, MutexGuard};

// `whence` values of fseek/lseek (the same on every POSIX system and on Windows).
const SEEK_SET: c_int = 0;
const SEEK_CUR: c_int = 1;
const SEEK_END: c_int = 2;

/// Runs `f`, turning a panic into `fallback` so that nothing unwinds across the FFI edge.
fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The new cursor for `seek(off, whence)` over `len` bytes, if it stays in `0..=len`.
fn seek_target(pos: usize, len: usize, off: i64, whence: c_int) -> Option<usize> {
    let base = match whence {
        SEEK_SET => 0i128,
        SEEK_CUR => pos as i128,
        SEEK_END => len as i128,
        _ => return None,
    };
    let target = base + off as i128;
    (0..=len as i128)
        .contains(&target)
        .then_some(target as usize)
}

/// What the reader's callbacks see behind `void* desc`.
struct ReaderState {
    data: Vec<u8>,
    pos: Mutex<usize>,
    label: CString,
}

impl ReaderState {
    /// Copies up to `n` bytes from `off` into `out`; returns how many were copied.
    ///
    /// # Safety
    /// `out` must be valid for `n` bytes of writes.
    unsafe fn copy_from(&self, off: usize, out: *mut c_char, n: usize) -> usize {
        let avail = self.data.len().saturating_sub(off).min(n);
        if avail > 0 {
            // SAFETY: `off + avail <= data.len()`; the caller guarantees `out` holds `n >= avail`.
            unsafe {
                std::ptr::copy_nonoverlapping(self.data.as_ptr().add(off), out.cast(), avail)
            };
        }
        avail
    }
}

// SAFETY (all reader callbacks): MLX passes back the `desc` pointer given to
// `mlx_io_reader_new`, which points to a live `ReaderState` until `reader_free` runs.
unsafe fn reader<'a>(desc: *mut c_void) -> &'a ReaderState {
    unsafe { &*(desc as *const ReaderState) }
}

unsafe extern "C" fn reader_is_open(_desc: *mut c_void) -> bool {
    true
}

unsafe extern "C" fn reader_good(desc: *mut c_void) -> bool {
    guard(false, || {
        let r = unsafe { reader(desc) };
        *lock(&r.pos) <= r.data.len()
    })
}

unsafe extern "C" fn reader_tell(desc: *mut c_void) -> usize {
    guard(0, || *lock(&unsafe { reader(desc) }.pos))
}

unsafe extern "C" fn reader_seek(desc: *mut c_void, off: i64, whence: c_int) -> c_int {
    guard(-1, || {
        let r = unsafe { reader(desc) };
        let mut pos = lock(&r.pos);
        match seek_target(*pos, r.data.len(), off, whence) {
            Some(p) => {
                *pos = p;
                0
            }
            None => -1,
        }
    })
}

unsafe extern "C" fn reader_read(desc: *mut c_void, data: *mut c_char, n: usize) -> usize {
    guard(0, || {
        let r = unsafe { reader(desc) };
        let mut pos = lock(&r.pos);
        // SAFETY: MLX passes a buffer of `n` bytes.
        let got = unsafe { r.copy_from(*pos, data, n) };
        *pos += got;
        got
    })
}

unsafe extern "C" fn reader_read_at_offset(
    desc: *mut c_void,
    data: *mut c_char,
    n: usize,
    off: usize,
) -> usize {
    // SAFETY: MLX passes a buffer of `n` bytes; the data is immutable, so concurrent
    // calls from MLX's I/O threads are fine.
    guard(0, || unsafe { reader(desc).copy_from(off, data, n) })
}

unsafe extern "C" fn reader_write(_desc: *mut c_void, _data: *const c_char, _n: usize) -> usize {
    0
}

unsafe extern "C" fn reader_label(desc: *mut c_void) -> *const c_char {
    unsafe { reader(desc) }.label.as_ptr()
}

unsafe extern "C" fn reader_free(desc: *mut c_void) {
    // SAFETY: `desc` came from `Box::into_raw` in `BytesReader::new`; MLX calls this once.
    guard((), || {
        drop(unsafe { Box::from_raw(desc as *mut ReaderState) })
    })
}

/// An owned `mlx_io_reader` over a byte buffer.
pub(crate) struct BytesReader(pub(crate) sys::mlx_io_reader);

impl BytesReader {
    /// A reader over `data`, described as `label` in MLX's messages.
    #[track_caller]
    pub(crate) fn new(data: Vec<u8>, label: &str) -> Result<BytesReader> {
        let label = CString::new(label.replace('\0', " ")).expect("NUL bytes were replaced");
        let state = Box::into_raw(Box::new(ReaderState {
            data,
            pos: Mutex::new(0),
            label,
        }));
        let vtable = sys::mlx_io_vtable {
            is_open: Some(reader_is_open),
            good: Some(reader_good),
            tell: Some(reader_tell),
            seek: Some(reader_seek),
            read: Some(reader_read),
            read_at_offset: Some(reader_read_at_offset),
            write: Some(reader_write),
            label: Some(reader_label),
            free: Some(reader_free),
        };
        install_error_handler();
        // SAFETY: `state` stays valid until MLX calls `reader_free` (on the last release).
        let raw = unsafe { sys::mlx_io_reader_new(state.cast(), vtable) };
        if raw.ctx.is_null() {
            // SAFETY: MLX did not take the state; it is still ours to free.
            drop(unsafe { Box::from_raw(state) });
            return Err(mlx_error(Location::caller()));
        }
        Ok(BytesReader(raw))
    }

    /// MLX's label of this reader.
    pub(crate) fn label(&self) -> String {
        let mut s = MlxString::new();
        // SAFETY: writes into an owned string handle from a live reader.
        if unsafe { sys::mlx_io_reader_tostring(&mut s.0, self.0) } != 0 {
            crate::error::take_message();
            return String::from("in-memory reader");
        }
        s.to_string_lossy()
    }
}

impl Drop for BytesReader {
    fn drop(&mut self) {
        // SAFETY: owned handle, released once (MLX frees the state when no array needs it).
        unsafe { sys::mlx_io_reader_free(self.0) };
    }
}

/// What the writer's callbacks see behind `void* desc`.
struct WriterState {
    /// The bytes written and the cursor.
    buf: Mutex<(Vec<u8>, usize)>,
    label: CString,
}

// SAFETY (all writer callbacks): `desc` points to a live `WriterState` until `writer_free`.
unsafe fn writer<'a>(desc: *mut c_void) -> &'a WriterState {
    unsafe { &*(desc as *const WriterState) }
}

unsafe extern "C" fn writer_is_open(_desc: *mut c_void) -> bool {
    true
}

unsafe extern "C" fn writer_good(_desc: *mut c_void) -> bool {
    true
}

unsafe extern "C" fn writer_tell(desc: *mut c_void) -> usize {
    guard(0, || lock(&unsafe { writer(desc) }.buf).1)
}

unsafe extern "C" fn writer_seek(desc: *mut c_void, off: i64, whence: c_int) -> c_int {
    guard(-1, || {
        let mut b = lock(&unsafe { writer(desc) }.buf);
        match seek_target(b.1, b.0.len(), off, whence) {
            Some(p) => {
                b.1 = p;
                0
            }
            None => -1,
        }
    })
}

unsafe extern "C" fn writer_read(_desc: *mut c_void, _data: *mut c_char, _n: usize) -> usize {
    0
}

unsafe extern "C" fn writer_read_at_offset(
    _desc: *mut c_void,
    _data: *mut c_char,
    _n: usize,
    _off: usize,
) -> usize {
    0
}

unsafe extern "C" fn writer_write(desc: *mut c_void, data: *const c_char, n: usize) -> usize {
    guard(0, || {
        if n == 0 {
            return 0;
        }
        // SAFETY: MLX passes `n` readable bytes.
        let src = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), n) };
        let mut b = lock(&unsafe { writer(desc) }.buf);
        let (buf, pos) = &mut *b;
        let end = *pos + n;
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[*pos..end].copy_from_slice(src);
        *pos = end;
        n
    })
}

unsafe extern "C" fn writer_label(desc: *mut c_void) -> *const c_char {
    unsafe { writer(desc) }.label.as_ptr()
}

unsafe extern "C" fn writer_free(desc: *mut c_void) {
    // SAFETY: `desc` came from `Box::into_raw` in `BytesWriter::new`; MLX calls this once.
    guard((), || {
        drop(unsafe { Box::from_raw(desc as *mut WriterState) })
    })
}

/// An owned `mlx_io_writer` that collects what MLX writes into a `Vec<u8>`.
pub(crate) struct BytesWriter(pub(crate) sys::mlx_io_writer);

impl BytesWriter {
    /// An empty writer, described as `label` in MLX's messages.
    #[track_caller]
    pub(crate) fn new(label: &str) -> Result<BytesWriter> {
        let label = CString::new(label.replace('\0', " ")).expect("NUL bytes were replaced");
        let state = Box::into_raw(Box::new(WriterState {
            buf: Mutex::new((Vec::new(), 0)),
            label,
        }));
        let vtable = sys::mlx_io_vtable {
            is_open: Some(writer_is_open),
            good: Some(writer_good),
            tell: Some(writer_tell),
            seek: Some(writer_seek),
            read: Some(writer_read),
            read_at_offset: Some(writer_read_at_offset),
            write: Some(writer_write),
            label: Some(writer_label),
            free: Some(writer_free),
        };
        install_error_handler();
        // SAFETY: `state` stays valid until MLX calls `writer_free`.
        let raw = unsafe { sys::mlx_io_writer_new(state.cast(), vtable) };
        if raw.ctx.is_null() {
            // SAFETY: MLX did not take the state; it is still ours to free.
            drop(unsafe { Box::from_raw(state) });
            return Err(mlx_error(Location::caller()));
        }
        Ok(BytesWriter(raw))
    }

    /// MLX's label of this writer.
    pub(crate) fn label(&self) -> String {
        let mut s = MlxString::new();
        // SAFETY: writes into an owned string handle from a live writer.
        if unsafe { sys::mlx_io_writer_tostring(&mut s.0, self.0) } != 0 {
            crate::error::take_message();
            return String::from("in-memory writer");
        }
        s.to_string_lossy()
    }

    /// Takes the bytes written so far.
    #[track_caller]
    pub(crate) fn take_bytes(&self) -> Result<Vec<u8>> {
        let mut desc: *mut c_void = std::ptr::null_mut();
        crate::raw::status(|| unsafe { sys::mlx_io_writer_descriptor(&mut desc, self.0) })?;
        // SAFETY: the descriptor is the `WriterState` this writer was made with, alive
        // while `self` holds the writer.
        let state = unsafe { writer(desc) };
        let mut b = lock(&state.buf);
        b.1 = 0;
        Ok(std::mem::take(&mut b.0))
    }
}

impl Drop for BytesWriter {
    fn drop(&mut self) {
        // SAFETY: owned handle, released once.
        unsafe { sys::mlx_io_writer_free(self.0) };
    }
}
