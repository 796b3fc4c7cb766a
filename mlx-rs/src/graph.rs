//! Inspecting lazy graphs: what evaluating some arrays would run.
//!
//! [`print_graph`] lists the graph behind `outputs` as text (its inputs, its outputs, then
//! one line per primitive in the order MLX would run them, with shapes and dtypes), and
//! [`to_dot`] writes it for Graphviz; [`count_primitives`] counts its ops and
//! [`count_primitives_by_kind`] counts them by kind. Counting the lines of a decode step's
//! listing is how the Qwen example found which ops to fuse.
//!
//! ```
//! use mlx_rs::{graph, Array};
//! let a = Array::from_slice(&[1.0f32, 2.0], &[2])?;
//! let b = a.multiply(&a)?.add(&a)?;
//! let text = graph::print_graph(&[&b], &[(&a, "a")])?;
//! assert!(text.contains("Multiply") && text.contains("Add"));
//! assert!(graph::to_dot(&[&b], &[])?.starts_with("digraph"));
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use crate::raw::{status, VectorArray};
use crate::{Array, Error, Result};
use mlx_sys as sys;
use std::ffi::{c_int, c_void, CString};

extern "C" {
    fn tmpfile() -> *mut sys::FILE;
    fn fclose(f: *mut sys::FILE) -> c_int;
    fn fflush(f: *mut sys::FILE) -> c_int;
    fn rewind(f: *mut sys::FILE);
    fn fread(ptr: *mut c_void, size: usize, n: usize, f: *mut sys::FILE) -> usize;
}

/// MLX's text listing of the graph behind `outputs`; `names` label some of its arrays
/// (others get MLX's generated names).
pub fn print_graph<A: AsRef<Array>>(outputs: &[A], names: &[(&Array, &str)]) -> Result<String> {
    render(outputs, names, |f, namer, v| unsafe {
        sys::mlx_print_graph(f, namer, v)
    })
}

/// The graph behind `outputs` in Graphviz DOT; `names` label some of its arrays.
pub fn to_dot<A: AsRef<Array>>(outputs: &[A], names: &[(&Array, &str)]) -> Result<String> {
    render(outputs, names, |f, namer, v| unsafe {
        sys::mlx_export_to_dot(f, namer, v)
    })
}

/// The number of primitives (ops) evaluating `outputs` would run: the lines of
/// [`print_graph`]'s listing after its `Inputs:` and `Outputs:` lines. The element-wise
/// chains a compiled function fused count as one (`Compiled`); its other ops count each.
/// What a decode step costs the host grows with this number.
pub fn count_primitives<A: AsRef<Array>>(outputs: &[A]) -> Result<usize> {
    Ok(primitive_lines(&print_graph(outputs, &[])?).count())
}

/// The lines of a [`print_graph`] listing that name a primitive (one per op).
fn primitive_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .skip_while(|l| l.starts_with("Inputs:") || l.starts_with("Outputs:"))
        .filter(|l| !l.trim().is_empty())
}

/// The primitives evaluating `outputs` would run, counted by kind (MLX's primitive names,
/// e.g. `Matmul`, `CustomKernel`; every fused element-wise chain of a compiled function,
/// which MLX names after its ops, counts as `Compiled`), most frequent first (ties by
/// name). Their sum is [`count_primitives`]; which kinds dominate says where a graph's
/// host time goes.
pub fn count_primitives_by_kind<A: AsRef<Array>>(outputs: &[A]) -> Result<Vec<(String, usize)>> {
    let text = print_graph(outputs, &[])?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for line in primitive_lines(&text) {
        if let Some(kind) = line.split_whitespace().next() {
            let kind = if kind.starts_with("Compiled") {
                "Compiled"
            } else {
                kind
            };
            *counts.entry(kind.to_string()).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(counts)
}

/// Owns a C `FILE` from `tmpfile` (closed on drop).
struct TempFile(*mut sys::FILE);

impl Drop for TempFile {
    fn drop(&mut self) {
        // SAFETY: a FILE from tmpfile, closed once.
        unsafe { fclose(self.0) };
    }
}

/// Owns an `mlx_node_namer` (freed on drop).
struct Namer(sys::mlx_node_namer);

impl Drop for Namer {
    fn drop(&mut self) {
        // SAFETY: a namer from mlx_node_namer_new, freed once.
        unsafe { sys::mlx_node_namer_free(self.0) };
    }
}

fn render<A: AsRef<Array>>(
    outputs: &[A],
    names: &[(&Array, &str)],
    write: impl FnOnce(*mut sys::FILE, sys::mlx_node_namer, sys::mlx_vector_array) -> c_int,
) -> Result<String> {
    // SAFETY: a fresh namer, owned by the guard.
    let namer = Namer(unsafe { sys::mlx_node_namer_new() });
    for (array, name) in names {
        let name = CString::new(*name).map_err(|_| {
            Error::InvalidArgument(format!("graph node name {name:?} contains a NUL byte"))
        })?;
        // SAFETY: live handles; MLX copies the name.
        status(|| unsafe { sys::mlx_node_namer_set_name(namer.0, array.as_raw(), name.as_ptr()) })?;
    }
    // SAFETY: tmpfile has no preconditions; null means failure.
    let file = unsafe { tmpfile() };
    if file.is_null() {
        return Err(Error::InvalidArgument(format!(
            "cannot open a temporary file for the graph: {}",
            std::io::Error::last_os_error()
        )));
    }
    let file = TempFile(file);
    let v = VectorArray::from_arrays(outputs);
    // MLX walks the graph recursively: run it on a deep stack.
    crate::raw::walk_status(|| crate::stream::dispatch(|| write(file.0, namer.0, v.0)))?;
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    // SAFETY: `file` is open; `buf` has room for the bytes fread writes.
    unsafe {
        fflush(file.0);
        rewind(file.0);
        loop {
            let n = fread(buf.as_mut_ptr().cast(), 1, buf.len(), file.0);
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}
