//! Automatic differentiation: reverse mode ([`vjp`], [`grad`], [`value_and_grad`]) and
//! forward mode ([`jvp`]).

use super::closure::{closure_status, Closure, IntoClosure, ValueAndGrad};
use crate::raw::VectorArray;
use crate::{Array, Error, Result};
use mlx_sys as sys;

/// Vector-Jacobian product: runs `f` at `primals` and pulls `cotangents` (one per output
/// of `f`) back through it.
///
/// Returns `(outputs, vjps)`: the outputs of `f`, and one array per primal (the
/// cotangents times the Jacobian).
///
/// ```
/// use mlx_rs::{transforms::vjp, Array};
/// let f = |x: &[Array]| Ok(vec![x[0].multiply(&x[1])?]);
/// let (a, b) = (Array::from_slice(&[2.0f32], &[1])?, Array::from_slice(&[5.0f32], &[1])?);
/// let (out, vjps) = vjp(f, &[a, b], &[Array::from_slice(&[1.0f32], &[1])?])?;
/// assert_eq!(out[0].to_vec::<f32>()?, vec![10.0]);
/// assert_eq!(vjps[0].to_vec::<f32>()?, vec![5.0]); // d(ab)/da = b
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn vjp<'a, A: AsRef<Array>, B: AsRef<Array>>(
    f: impl IntoClosure<'a>,
    primals: &[A],
    cotangents: &[B],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let f = f.into_closure()?;
    let (p, c) = (
        VectorArray::from_arrays(primals),
        VectorArray::from_arrays(cotangents),
    );
    let (mut outs, mut vjps) = (VectorArray::empty(), VectorArray::empty());
    closure_status(|| {
        super::transforming(|| unsafe {
            sys::mlx_vjp(&mut outs.0, &mut vjps.0, f.as_raw(), p.0, c.0)
        })
    })?;
    Ok((outs.to_vec()?, vjps.to_vec()?))
}

/// Jacobian-vector product: runs `f` at `primals` and pushes `tangents` (one per primal,
/// same shapes) forward through it.
///
/// Returns `(outputs, jvps)`: the outputs of `f`, and one array per output (the Jacobian
/// times the tangents).
#[track_caller]
pub fn jvp<'a, A: AsRef<Array>, B: AsRef<Array>>(
    f: impl IntoClosure<'a>,
    primals: &[A],
    tangents: &[B],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let f = f.into_closure()?;
    let (p, t) = (
        VectorArray::from_arrays(primals),
        VectorArray::from_arrays(tangents),
    );
    let (mut outs, mut jvps) = (VectorArray::empty(), VectorArray::empty());
    closure_status(|| {
        super::transforming(|| unsafe {
            sys::mlx_jvp(&mut outs.0, &mut jvps.0, f.as_raw(), p.0, t.0)
        })
    })?;
    Ok((outs.to_vec()?, jvps.to_vec()?))
}

/// A function that computes `f`'s outputs and the gradient of its first output with
/// respect to the arguments at positions `argnums`.
///
/// The first output of `f` must be a scalar (e.g. a loss); further outputs are returned
/// as they are (auxiliary values). `argnums` must be non-empty, without repeats, and
/// each position must exist when the function is called.
///
/// ```
/// use mlx_rs::{transforms::value_and_grad, Array};
/// // loss(w, x) = sum((w * x)²) — only w gets a gradient
/// let loss = |a: &[Array]| {
///     let wx = a[0].multiply(&a[1])?;
///     let sq = wx.multiply(&wx)?;
///     Ok(vec![sq.matmul(&Array::from_slice(&[1.0f32, 1.0], &[2])?)?])
/// };
/// let vg = value_and_grad(loss, &[0])?;
/// let w = Array::from_slice(&[1.0f32, 2.0], &[2])?;
/// let x = Array::from_slice(&[3.0f32, 1.0], &[2])?;
/// let (value, grads) = vg.call(&[w, x])?;
/// assert_eq!(value[0].item::<f32>()?, 13.0);                 // 9 + 4
/// assert_eq!(grads[0].to_vec::<f32>()?, vec![18.0, 4.0]);    // 2·w·x²
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[track_caller]
pub fn value_and_grad<'a>(f: impl IntoClosure<'a>, argnums: &[i32]) -> Result<ValueAndGrad<'a>> {
    check_argnums(argnums)?;
    let f = f.into_closure()?;
    ValueAndGrad::fill(|res| unsafe {
        sys::mlx_value_and_grad(res, f.as_raw(), argnums.as_ptr(), argnums.len())
    })
}

/// The gradient of `f`'s first output (a scalar) with respect to the arguments at
/// positions `argnums`, as a function of the same arguments.
///
/// See [`value_and_grad`] for the rules; the returned closure can itself be transformed
/// (e.g. `grad(grad(f, &[0])?, &[0])` for a second derivative).
#[track_caller]
pub fn grad<'a>(f: impl IntoClosure<'a>, argnums: &[i32]) -> Result<Closure<'a>> {
    let vg = value_and_grad(f, argnums)?;
    Closure::new(move |args: &[Array]| vg.call(args).map(|(_, grads)| grads))
}

fn check_argnums(argnums: &[i32]) -> Result<()> {
    if argnums.is_empty() {
        return Err(Error::InvalidArgument(
            "argnums is empty: name at least one argument to differentiate".into(),
        ));
    }
    if let Some(&bad) = argnums.iter().find(|&&a| a < 0) {
        return Err(Error::InvalidArgument(format!(
            "argnums {argnums:?} holds a negative position ({bad})"
        )));
    }
    for (i, a) in argnums.iter().enumerate() {
        if argnums[..i].contains(a) {
            return Err(Error::InvalidArgument(format!(
                "argnums {argnums:?} repeats position {a}"
            )));
        }
    }
    Ok(())
}
