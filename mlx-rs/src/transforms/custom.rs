//! Functions with user-defined derivatives or batching rules, and gradient checkpointing.
//!
//! MLX keeps these functions inside the array graph (the arrays they produce remember how
//! to differentiate them), and arrays can move to other threads, so every function given
//! here must be `Send + 'static`: own what it uses (clone arrays into it, they are cheap
//! to clone).

use super::closure::{Closure, JvpFn, RawCustomJvp, RawCustomVjp, RawCustomVmap, VjpFn, VmapFn};
use crate::{Array, Result};
use mlx_sys as sys;

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
