//! Compiling functions of arrays into fused, cached graphs (see the
//! [`transforms`](crate::transforms#captured-arrays-are-constants) docs on captured arrays).

use super::closure::{Closure, IntoClosure};
use crate::raw::status;
use crate::{Array, Error, Result};
use mlx_sys as sys;
use std::cell::Cell;
use std::rc::Rc;

/// Compiles `f`: the returned function computes the same outputs as `f` but runs a traced,
/// simplified and fused graph. The trace is cached per input signature (shapes and
/// dtypes) and reused on later calls; with `shapeless`, a change of shape (same number of
/// dimensions) reuses it too — only for functions whose graph does not depend on shapes.
///
/// **Arrays that `f` captures instead of receiving as arguments are frozen at the first
/// trace** (see [captured arrays](crate::transforms#captured-arrays-are-constants)); pass
/// them as arguments or use [`compile_with_state`].
///
/// The cached trace is freed when the last clone of the returned closure is dropped.
///
/// ```
/// use mlx_rs::{transforms::compile, Array};
/// let f = |x: &[Array]| Ok(vec![x[0].multiply(&x[0])?.add(&x[1])?]);
/// let fast = compile(f, false)?;
/// let (a, b) = (Array::from_slice(&[3.0f32], &[1])?, Array::from_slice(&[1.0f32], &[1])?);
/// assert_eq!(fast.call(&[a, b])?[0].to_vec::<f32>()?, vec![10.0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn compile<'a>(f: impl IntoClosure<'a>, shapeless: bool) -> Result<Closure<'a>> {
    let f = f.into_closure()?;
    // MLX keys the cache entry by the address of its own copy of `f` and erases it when
    // the last copy of the compiled function goes.
    Closure::fill(|res| unsafe { sys::mlx_compile(res, f.as_raw(), shapeless) })
}

/// Low level: compiles `f` under a cache key of your choosing, as Python MLX does.
///
/// Functions compiled with the same `fun_id` share their cached traces, so two different
/// functions under one id give wrong results; `constants` (e.g. hashes of non-array
/// parameters the function depends on) are part of the key. The entry stays cached until
/// [`compile_erase`]`(fun_id)` or [`compile_clear_cache`]. Prefer [`compile`].
#[track_caller]
pub fn compile_with_id<'a>(
    f: impl IntoClosure<'a>,
    fun_id: usize,
    shapeless: bool,
    constants: &[u64],
) -> Result<Closure<'a>> {
    let f = f.into_closure()?;
    Closure::fill(|res| unsafe {
        sys::mlx_detail_compile(
            res,
            f.as_raw(),
            fun_id,
            shapeless,
            constants.as_ptr(),
            constants.len(),
        )
    })
}

/// Runs `f` with this thread's compile cache (MLX keeps one per thread).
#[track_caller]
fn with_cache(f: impl FnOnce(sys::mlx_compile_cache) -> std::ffi::c_int) -> Result<()> {
    // SAFETY: an empty handle, filled with this thread's cache and freed below.
    let mut cache = unsafe { sys::mlx_compile_cache_new() };
    let result = status(|| unsafe { sys::mlx_detail_compile_cache(&mut cache) })
        .and_then(|()| status(|| f(cache)));
    // SAFETY: frees the handle created above (the cache itself lives on).
    unsafe { sys::mlx_compile_cache_free(cache) };
    result
}

/// Drops this thread's cached traces of the function compiled under `fun_id` by
/// [`compile_with_id`]; its next call traces again.
#[track_caller]
pub fn compile_erase(fun_id: usize) -> Result<()> {
    with_cache(|cache| unsafe { sys::mlx_detail_compile_erase(cache, fun_id) })
}

/// Drops every cached trace of this thread: compiled functions trace again on their next
/// call (e.g. after [`set_compile_mode`]).
#[track_caller]
pub fn compile_clear_cache() -> Result<()> {
    with_cache(|cache| unsafe { sys::mlx_detail_compile_clear_cache(cache) })
}

/// A function compiled by [`compile_with_state`]: call it with the state arrays and the
/// inputs as two lists.
pub struct CompiledWithState<'a> {
    compiled: Closure<'a>,
    n_state: Rc<Cell<Option<usize>>>,
}

/// Compiles `f(state, inputs)`, where *both* lists are traced inputs: the form for
/// functions that use model parameters or other state that changes between calls
/// (which a closure must not capture; see
/// [captured arrays](crate::transforms#captured-arrays-are-constants)).
///
/// The number of state arrays is fixed by the first call; a later call with another
/// count is an error.
///
/// ```
/// use mlx_rs::{transforms::compile_with_state, Array};
/// // y = w * x, with w as state
/// let f = compile_with_state(|s: &[Array], x: &[Array]| Ok(vec![s[0].multiply(&x[0])?]), false)?;
/// let x = Array::from_slice(&[2.0f32], &[1])?;
/// let mut w = Array::from_slice(&[3.0f32], &[1])?;
/// assert_eq!(f.call(&[&w], &[&x])?[0].to_vec::<f32>()?, vec![6.0]);
/// w = Array::from_slice(&[5.0f32], &[1])?; // new state is seen: it is an input
/// assert_eq!(f.call(&[&w], &[&x])?[0].to_vec::<f32>()?, vec![10.0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn compile_with_state<'a, F>(mut f: F, shapeless: bool) -> Result<CompiledWithState<'a>>
where
    F: FnMut(&[Array], &[Array]) -> Result<Vec<Array>> + 'a,
{
    let n_state: Rc<Cell<Option<usize>>> = Rc::new(Cell::new(None));
    let n = Rc::clone(&n_state);
    let split = move |all: &[Array]| {
        let k = n
            .get()
            .filter(|&k| k <= all.len())
            .ok_or_else(|| Error::Closure("compiled function called without its state".into()))?;
        let (state, inputs) = all.split_at(k);
        f(state, inputs)
    };
    Ok(CompiledWithState {
        compiled: compile(split, shapeless)?,
        n_state,
    })
}

impl CompiledWithState<'_> {
    /// Runs the compiled function on `state` and `inputs`.
    #[track_caller]
    pub fn call<A: AsRef<Array>, B: AsRef<Array>>(
        &self,
        state: &[A],
        inputs: &[B],
    ) -> Result<Vec<Array>> {
        match self.n_state.get() {
            None => self.n_state.set(Some(state.len())),
            Some(k) if k != state.len() => {
                return Err(Error::InvalidArgument(format!(
                    "this compiled function was first called with {k} state arrays, now with {}",
                    state.len()
                )))
            }
            Some(_) => {}
        }
        let all: Vec<&Array> = state
            .iter()
            .map(AsRef::as_ref)
            .chain(inputs.iter().map(AsRef::as_ref))
            .collect();
        self.compiled.call(&all)
    }
}

impl std::fmt::Debug for CompiledWithState<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledWithState")
    }
}

/// How much [`compile`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileMode {
    /// Compiled functions run their uncompiled graph.
    Disabled,
    /// Trace and fuse, without graph simplification.
    NoSimplify,
    /// Trace and simplify, without kernel fusion.
    NoFuse,
    /// Everything (the default).
    Enabled,
}

/// Sets how much compilation does, process-wide.
#[track_caller]
pub fn set_compile_mode(mode: CompileMode) -> Result<()> {
    let raw = match mode {
        CompileMode::Disabled => sys::MLX_COMPILE_MODE_DISABLED,
        CompileMode::NoSimplify => sys::MLX_COMPILE_MODE_NO_SIMPLIFY,
        CompileMode::NoFuse => sys::MLX_COMPILE_MODE_NO_FUSE,
        CompileMode::Enabled => sys::MLX_COMPILE_MODE_ENABLED,
    };
    status(|| unsafe { sys::mlx_set_compile_mode(raw) })
}

/// Turns compilation off process-wide: compiled functions run uncompiled (as the
/// `MLX_DISABLE_COMPILE` environment variable does).
#[track_caller]
pub fn disable_compile() -> Result<()> {
    status(|| unsafe { sys::mlx_disable_compile() })
}

/// Turns compilation back on process-wide (overriding `MLX_DISABLE_COMPILE`).
#[track_caller]
pub fn enable_compile() -> Result<()> {
    status(|| unsafe { sys::mlx_enable_compile() })
}
