//! Functions with user-defined derivatives or batching rules, and gradient checkpointing.
//!
//! MLX keeps these functions inside the array graph (the arrays they produce remember how
//! to differentiate them), and arrays can move to other threads, so every function given
//! here must be `Send + 'static`: own what it uses (clone arrays into it, they are cheap
//! to clone).

use super::closure::{
    borrowed_arrays, borrowed_ints, drop_payload, guarded, payload_ref, write_arrays, Closure,
    Payload,
};
use crate::error::{install_error_handler, mlx_error};
use crate::{Array, Result};
use mlx_sys as sys;
use std::ffi::{c_int, c_void};
use std::panic::Location;

type ForwardFn = Box<dyn FnMut(&[Array]) -> Result<Vec<Array>> + Send>;

/// A function that recomputes its intermediate values during the backward pass instead of
/// keeping them: less memory for more compute. Same outputs and gradients as `f`.
#[track_caller]
pub fn checkpoint<F>(f: F) -> Result<Closure<'static>>
where
    F: FnMut(&[Array]) -> Result<Vec<Array>> + Send + 'static,
{
    let f = Closure::new(f)?;
    Closure::fill(|res| unsafe { sys::mlx_checkpoint(res, f.as_raw()) })
}

/// `f` with a user-defined vector-Jacobian product.
///
/// `vjp(primals, cotangents, outputs)` receives the inputs of `f`, one cotangent per
/// output, and the outputs `f` computed; it returns one cotangent per input.
///
/// ```
/// use mlx_rs::{transforms::{custom_vjp, grad}, Array};
/// // identity forward, but the gradient is doubled
/// let f = custom_vjp(
///     |x: &[Array]| Ok(vec![x[0].clone()]),
///     |_p: &[Array], ct: &[Array], _o: &[Array]| Ok(vec![ct[0].add(&ct[0])?]),
/// )?;
/// let g = grad(&f, &[0])?;
/// assert_eq!(g.call(&[Array::from_slice(&[1.0f32], &[])?])?[0].item::<f32>()?, 2.0);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn custom_vjp<F, V>(f: F, vjp: V) -> Result<Closure<'static>>
where
    F: FnMut(&[Array]) -> Result<Vec<Array>> + Send + 'static,
    V: FnMut(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + 'static,
{
    let f = Closure::new(f)?;
    let vjp = RawCustomVjp::new(Some(Box::new(vjp)))?;
    Closure::fill(|res| unsafe { sys::mlx_custom_vjp(res, f.as_raw(), vjp.0) })
}

/// A function with any of a custom VJP, JVP and batching rule (those not given are
/// derived from the forward function as usual).
///
/// ```
/// use mlx_rs::{transforms::{jvp, CustomFunction}, Array};
/// let f = CustomFunction::new(|x: &[Array]| Ok(vec![x[0].square()?]))
///     // a (deliberately wrong) JVP of 10 · tangent, to show it is the one used
///     .jvp(|_p: &[Array], t: &[Array], _argnums: &[i32]| {
///         Ok(vec![t[0].multiply(&Array::from_slice(&[10.0f32], &[])?)?])
///     })
///     .build()?;
/// let one = Array::from_slice(&[1.0f32], &[])?;
/// let (_, tangents) = jvp(&f, &[Array::from_slice(&[3.0f32], &[])?], &[one])?;
/// assert_eq!(tangents[0].item::<f32>()?, 10.0);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub struct CustomFunction {
    forward: ForwardFn,
    vjp: Option<VjpFn>,
    jvp: Option<JvpFn>,
    vmap: Option<VmapFn>,
}

impl CustomFunction {
    /// Starts from the forward function.
    pub fn new<F>(forward: F) -> Self
    where
        F: FnMut(&[Array]) -> Result<Vec<Array>> + Send + 'static,
    {
        CustomFunction {
            forward: Box::new(forward),
            vjp: None,
            jvp: None,
            vmap: None,
        }
    }

    /// Sets the VJP: `(primals, cotangents, outputs) -> one cotangent per primal`.
    pub fn vjp<V>(mut self, vjp: V) -> Self
    where
        V: FnMut(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + 'static,
    {
        self.vjp = Some(Box::new(vjp));
        self
    }

    /// Sets the JVP: `(primals, tangents, argnums) -> one tangent per output`, where
    /// `tangents[j]` belongs to `primals[argnums[j]]` (the other primals have none).
    pub fn jvp<J>(mut self, jvp: J) -> Self
    where
        J: FnMut(&[Array], &[Array], &[i32]) -> Result<Vec<Array>> + Send + 'static,
    {
        self.jvp = Some(Box::new(jvp));
        self
    }

    /// Sets the batching rule: `(inputs, axes) -> (outputs, output axes)`, where
    /// `axes[i]` is the mapped axis of input `i` or `-1` when it is not mapped.
    pub fn vmap<M>(mut self, vmap: M) -> Self
    where
        M: FnMut(&[Array], &[i32]) -> Result<(Vec<Array>, Vec<i32>)> + Send + 'static,
    {
        self.vmap = Some(Box::new(vmap));
        self
    }

    /// Makes the function.
    #[track_caller]
    pub fn build(self) -> Result<Closure<'static>> {
        let f = Closure::new(self.forward)?;
        let vjp = RawCustomVjp::new(self.vjp)?;
        let jvp = RawCustomJvp::new(self.jvp)?;
        let vmap = RawCustomVmap::new(self.vmap)?;
        Closure::fill(|res| unsafe {
            sys::mlx_custom_function(res, f.as_raw(), vjp.0, jvp.0, vmap.0)
        })
    }
}

impl std::fmt::Debug for CustomFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomFunction")
            .field("vjp", &self.vjp.is_some())
            .field("jvp", &self.jvp.is_some())
            .field("vmap", &self.vmap.is_some())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Custom transform closures (kept in the graph: Send + 'static)
// ---------------------------------------------------------------------------------------

/// A user-defined VJP: `(primals, cotangents, outputs) -> one cotangent per primal`.
pub type VjpFn = Box<dyn FnMut(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send>;
/// A user-defined JVP: `(primals, tangents, argnums) -> one tangent per output`. The
/// tangents are those of the primals at positions `argnums`.
pub type JvpFn = Box<dyn FnMut(&[Array], &[Array], &[i32]) -> Result<Vec<Array>> + Send>;
/// A user-defined batching rule: `(inputs, axes) -> (outputs, output axes)`. `axes[i]` is
/// the batched axis of input `i`, or `-1` if it is not batched.
pub type VmapFn = Box<dyn FnMut(&[Array], &[i32]) -> Result<(Vec<Array>, Vec<i32>)> + Send>;

/// An owned `mlx_closure_custom` (null when absent).
pub(crate) struct RawCustomVjp(pub(crate) sys::mlx_closure_custom);
/// An owned `mlx_closure_custom_jvp` (null when absent).
pub(crate) struct RawCustomJvp(pub(crate) sys::mlx_closure_custom_jvp);
/// An owned `mlx_closure_custom_vmap` (null when absent).
pub(crate) struct RawCustomVmap(pub(crate) sys::mlx_closure_custom_vmap);

impl RawCustomVjp {
    pub(crate) fn new(f: Option<VjpFn>) -> Result<Self> {
        let Some(f) = f else {
            // SAFETY: an empty handle: "absent" to mlx-c; freeing it is a no-op.
            return Ok(RawCustomVjp(unsafe { sys::mlx_closure_custom_new() }));
        };
        install_error_handler();
        let payload = Payload::new(f).into_raw();
        // SAFETY: MLX owns the payload; the function is Send + 'static, so MLX may keep it
        // in the graph and call or drop it on any thread.
        let raw = unsafe {
            sys::mlx_closure_custom_new_func_payload(
                Some(call_custom_vjp),
                payload,
                Some(drop_payload::<VjpFn>),
            )
        };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(RawCustomVjp(raw))
    }
}

impl Drop for RawCustomVjp {
    fn drop(&mut self) {
        if !self.0.ctx.is_null() {
            // SAFETY: owned handle, freed once.
            unsafe { sys::mlx_closure_custom_free(self.0) };
        }
    }
}

impl RawCustomJvp {
    pub(crate) fn new(f: Option<JvpFn>) -> Result<Self> {
        let Some(f) = f else {
            // SAFETY: an empty handle: "absent" to mlx-c; freeing it is a no-op.
            return Ok(RawCustomJvp(unsafe { sys::mlx_closure_custom_jvp_new() }));
        };
        install_error_handler();
        let payload = Payload::new(f).into_raw();
        // SAFETY: as for `RawCustomVjp::new`.
        let raw = unsafe {
            sys::mlx_closure_custom_jvp_new_func_payload(
                Some(call_custom_jvp),
                payload,
                Some(drop_payload::<JvpFn>),
            )
        };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(RawCustomJvp(raw))
    }
}

impl Drop for RawCustomJvp {
    fn drop(&mut self) {
        if !self.0.ctx.is_null() {
            // SAFETY: owned handle, freed once.
            unsafe { sys::mlx_closure_custom_jvp_free(self.0) };
        }
    }
}

impl RawCustomVmap {
    pub(crate) fn new(f: Option<VmapFn>) -> Result<Self> {
        let Some(f) = f else {
            // SAFETY: an empty handle: "absent" to mlx-c; freeing it is a no-op.
            return Ok(RawCustomVmap(unsafe { sys::mlx_closure_custom_vmap_new() }));
        };
        install_error_handler();
        let payload = Payload::new(f).into_raw();
        // SAFETY: as for `RawCustomVjp::new`.
        let raw = unsafe {
            sys::mlx_closure_custom_vmap_new_func_payload(
                Some(call_custom_vmap),
                payload,
                Some(drop_payload::<VmapFn>),
            )
        };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(RawCustomVmap(raw))
    }
}

impl Drop for RawCustomVmap {
    fn drop(&mut self) {
        if !self.0.ctx.is_null() {
            // SAFETY: owned handle, freed once.
            unsafe { sys::mlx_closure_custom_vmap_free(self.0) };
        }
    }
}

unsafe extern "C" fn call_custom_vjp(
    res: *mut sys::mlx_vector_array,
    primals: sys::mlx_vector_array,
    cotangents: sys::mlx_vector_array,
    outputs: sys::mlx_vector_array,
    payload: *mut c_void,
) -> c_int {
    guarded(|| {
        // SAFETY: MLX passes the payload it was given with this trampoline.
        let payload = unsafe { payload_ref::<VjpFn>(payload) };
        let (p, c, o) = (
            borrowed_arrays(primals)?,
            borrowed_arrays(cotangents)?,
            borrowed_arrays(outputs)?,
        );
        let out = payload.with(|f| f(&p, &c, &o))?;
        // SAFETY: `res` is MLX's live out-vector.
        unsafe { write_arrays(res, &out) }
    })
}

unsafe extern "C" fn call_custom_jvp(
    res: *mut sys::mlx_vector_array,
    primals: sys::mlx_vector_array,
    tangents: sys::mlx_vector_array,
    argnums: *const c_int,
    argnums_num: usize,
    payload: *mut c_void,
) -> c_int {
    guarded(|| {
        // SAFETY: MLX passes the payload it was given with this trampoline.
        let payload = unsafe { payload_ref::<JvpFn>(payload) };
        let (p, t) = (borrowed_arrays(primals)?, borrowed_arrays(tangents)?);
        // SAFETY: MLX passes `argnums_num` ints.
        let argnums = unsafe { borrowed_ints(argnums, argnums_num) };
        let out = payload.with(|f| f(&p, &t, argnums))?;
        // SAFETY: `res` is MLX's live out-vector.
        unsafe { write_arrays(res, &out) }
    })
}

unsafe extern "C" fn call_custom_vmap(
    res_arrays: *mut sys::mlx_vector_array,
    res_axes: *mut sys::mlx_vector_int,
    inputs: sys::mlx_vector_array,
    axes: *const c_int,
    axes_num: usize,
    payload: *mut c_void,
) -> c_int {
    guarded(|| {
        // SAFETY: MLX passes the payload it was given with this trampoline.
        let payload = unsafe { payload_ref::<VmapFn>(payload) };
        let x = borrowed_arrays(inputs)?;
        // SAFETY: MLX passes `axes_num` ints.
        let axes = unsafe { borrowed_ints(axes, axes_num) };
        let (out, mut out_axes) = payload.with(|f| f(&x, axes))?;
        // SAFETY: `res_arrays` is MLX's live out-vector.
        unsafe { write_arrays(res_arrays, &out)? };
        // SAFETY: a fresh vector copied into MLX's live out-vector, then freed.
        crate::raw::status(|| unsafe {
            let v = sys::mlx_vector_int_new_data(out_axes.as_mut_ptr(), out_axes.len());
            let code = sys::mlx_vector_int_set(res_axes, v);
            sys::mlx_vector_int_free(v);
            code
        })
    })
}
