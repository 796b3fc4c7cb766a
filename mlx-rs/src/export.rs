//! Exporting functions of arrays to files and importing them back: the traced graph is
//! saved (not the Rust code), so an imported function runs without the original closure
//! — in another process, or from Python MLX (`mx.import_function`).
//!
//! # Threads
//!
//! MLX 0.32.2 binds every imported graph to stream 0, which belongs to the first thread
//! that used MLX in the process (usually `main`). Evaluating the outputs of an imported
//! function on another thread fails with MLX's "There is no Stream(cpu, 0) in current
//! thread" — an error, not a crash. Import and run such functions on that first thread.
//!
//! ```
//! use mlx_rs::{export, Array};
//! let path = std::env::temp_dir().join(format!("mlx_rs_doc_{}.mlxfn", std::process::id()));
//! let x = Array::from_slice(&[1.0f32, 2.0], &[2])?;
//! export::export_function(&path, |a: &[Array]| Ok(vec![a[0].square()?]), &[&x], false)?;
//! let f = export::ImportedFunction::new(&path)?;
//! let y = f.call(&[Array::from_slice(&[3.0f32, 4.0], &[2])?])?;
//! assert_eq!(y[0].to_vec::<f32>()?, vec![9.0, 16.0]);
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use crate::error::{install_error_handler, mlx_error};
use crate::raw::VectorArray;
use crate::transforms::closure::{closure_status, ArrayMap, Closure, IntoClosure, KwargsClosure};
use crate::{Array, Error, Result};
use mlx_sys as sys;
use std::collections::HashMap;
use std::ffi::CString;
use std::marker::PhantomData;
use std::panic::Location;
use std::path::Path;

fn c_path(path: &Path) -> Result<CString> {
    let s = path
        .to_str()
        .ok_or_else(|| Error::InvalidArgument(format!("path is not UTF-8: {}", path.display())))?;
    CString::new(s).map_err(|_| Error::InvalidArgument(format!("path contains a NUL byte: {s:?}")))
}

/// Traces `f` at `args` and writes the graph to `path`.
///
/// With `shapeless`, the exported function accepts inputs of other shapes (same number of
/// dimensions); only for functions whose graph does not depend on shapes.
#[track_caller]
pub fn export_function<'a, A: AsRef<Array>>(
    path: impl AsRef<Path>,
    f: impl IntoClosure<'a>,
    args: &[A],
    shapeless: bool,
) -> Result<()> {
    let file = c_path(path.as_ref())?;
    let f = f.into_closure()?;
    let args = VectorArray::from_arrays(args);
    closure_status(|| unsafe {
        sys::mlx_export_function(file.as_ptr(), f.as_raw(), args.0, shapeless)
    })
}

/// Like [`export_function`] for a function that also takes named arrays.
#[track_caller]
pub fn export_function_kwargs<'a, A, F>(
    path: impl AsRef<Path>,
    f: F,
    args: &[A],
    kwargs: &HashMap<String, Array>,
    shapeless: bool,
) -> Result<()>
where
    A: AsRef<Array>,
    F: FnMut(&[Array], &HashMap<String, Array>) -> Result<Vec<Array>> + 'a,
{
    let file = c_path(path.as_ref())?;
    let f = KwargsClosure::new(f)?;
    let args = VectorArray::from_arrays(args);
    let kwargs = ArrayMap::from_map(kwargs)?;
    closure_status(|| unsafe {
        sys::mlx_export_function_kwargs(file.as_ptr(), f.as_raw(), args.0, kwargs.0, shapeless)
    })
}

/// Exports several traces of one function into one file: each [`apply`](Self::apply)
/// adds a trace for that input signature (e.g. several batch sizes). The file is complete
/// when the exporter is dropped.
pub struct FunctionExporter<'a> {
    raw: sys::mlx_function_exporter,
    _marker: PhantomData<(&'a (), *const ())>,
}

impl<'a> FunctionExporter<'a> {
    /// Starts exporting `f` to `path`.
    #[track_caller]
    pub fn new(path: impl AsRef<Path>, f: impl IntoClosure<'a>, shapeless: bool) -> Result<Self> {
        let file = c_path(path.as_ref())?;
        let f: Closure<'a> = f.into_closure()?;
        install_error_handler();
        // SAFETY: live string and closure; MLX copies the closure (it carries lifetime 'a,
        // which this exporter carries too).
        let raw = unsafe { sys::mlx_function_exporter_new(file.as_ptr(), f.as_raw(), shapeless) };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(FunctionExporter {
            raw,
            _marker: PhantomData,
        })
    }

    /// Traces the function at `args` and adds the trace to the file.
    #[track_caller]
    pub fn apply<A: AsRef<Array>>(&self, args: &[A]) -> Result<()> {
        let args = VectorArray::from_arrays(args);
        closure_status(|| unsafe { sys::mlx_function_exporter_apply(self.raw, args.0) })
    }

    /// Traces the function at `args` and named `kwargs` and adds the trace to the file.
    #[track_caller]
    pub fn apply_kwargs<A: AsRef<Array>>(
        &self,
        args: &[A],
        kwargs: &HashMap<String, Array>,
    ) -> Result<()> {
        let args = VectorArray::from_arrays(args);
        let kwargs = ArrayMap::from_map(kwargs)?;
        closure_status(|| unsafe {
            sys::mlx_function_exporter_apply_kwargs(self.raw, args.0, kwargs.0)
        })
    }
}

impl Drop for FunctionExporter<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once; nothing to report from a destructor.
        unsafe { sys::mlx_function_exporter_free(self.raw) };
        let _ = crate::error::take_message();
    }
}

impl std::fmt::Debug for FunctionExporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FunctionExporter")
    }
}

/// A function read from a file written by [`export_function`] (or Python MLX's
/// `mx.export_function`). Run it on the first thread that used MLX: see the
/// [module docs](self#threads).
pub struct ImportedFunction {
    raw: sys::mlx_imported_function,
    _not_send: PhantomData<*const ()>,
}

impl ImportedFunction {
    /// Reads the function at `path`.
    #[track_caller]
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        let file = c_path(path.as_ref())?;
        install_error_handler();
        // SAFETY: a live string; mlx-c copies it.
        let raw = unsafe { sys::mlx_imported_function_new(file.as_ptr()) };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(ImportedFunction {
            raw,
            _not_send: PhantomData,
        })
    }

    /// Runs the function on `args` (which must match one of the exported traces).
    #[track_caller]
    pub fn call<A: AsRef<Array>>(&self, args: &[A]) -> Result<Vec<Array>> {
        let args = VectorArray::from_arrays(args);
        let mut out = VectorArray::empty();
        closure_status(|| unsafe {
            sys::mlx_imported_function_apply(&mut out.0, self.raw, args.0)
        })?;
        out.to_vec()
    }

    /// Runs the function on positional `args` and named `kwargs`.
    #[track_caller]
    pub fn call_kwargs<A: AsRef<Array>>(
        &self,
        args: &[A],
        kwargs: &HashMap<String, Array>,
    ) -> Result<Vec<Array>> {
        let args = VectorArray::from_arrays(args);
        let kwargs = ArrayMap::from_map(kwargs)?;
        let mut out = VectorArray::empty();
        closure_status(|| unsafe {
            sys::mlx_imported_function_apply_kwargs(&mut out.0, self.raw, args.0, kwargs.0)
        })?;
        out.to_vec()
    }
}

impl Drop for ImportedFunction {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_imported_function_free(self.raw) };
        let _ = crate::error::take_message();
    }
}

impl std::fmt::Debug for ImportedFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImportedFunction")
    }
}
