//! Vectorizing a function over an axis of its inputs.

use super::closure::{closure_status, Closure, IntoClosure};
use crate::raw::VectorArray;
use crate::{Array, Error, Result};
use mlx_sys as sys;

/// Vectorizes `f` over one axis of its inputs: the returned function runs `f` on every
/// slice along the mapped axes (in one batched graph, not a loop) and stacks the results.
///
/// - `in_axes[i]`: the mapped axis of input `i` (negative counts from the end), or `None`
///   to pass input `i` unchanged to every slice. Empty means axis 0 for every input.
/// - `out_axes[i]`: where the mapped axis goes in output `i` (negative counts from the
///   end). Empty means axis 0 for every output.
///
/// At least one input must be mapped, and mapped axes must have the same size.
///
/// ```
/// use mlx_rs::{transforms::vmap, Array};
/// // a dot product, vectorized over the rows of x
/// let dot = |a: &[Array]| Ok(vec![a[0].matmul(&a[1])?]);
/// let rows_dot = vmap(dot, &[Some(0), None], &[])?;
/// let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// let y = Array::from_slice(&[1.0f32, 1.0], &[2])?;
/// assert_eq!(rows_dot.call(&[x, y])?[0].to_vec::<f32>()?, vec![3.0, 7.0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn vmap<'a>(
    f: impl IntoClosure<'a>,
    in_axes: &[Option<i32>],
    out_axes: &[i32],
) -> Result<Closure<'a>> {
    let f = f.into_closure()?;
    let (in_axes, out_axes) = (in_axes.to_vec(), out_axes.to_vec());
    Closure::new(move |inputs: &[Array]| vmap_call(&f, inputs, &in_axes, &out_axes))
}

fn vmap_call(
    f: &Closure<'_>,
    inputs: &[Array],
    in_axes: &[Option<i32>],
    out_axes: &[i32],
) -> Result<Vec<Array>> {
    let in_axes = resolve_in_axes(inputs, in_axes)?;
    let x = VectorArray::from_arrays(inputs);
    let (mut s_in, mut s_out) = (VectorArray::empty(), VectorArray::empty());
    closure_status(|| {
        super::transforming(|| unsafe {
            sys::mlx_detail_vmap_trace(
                &mut s_in.0,
                &mut s_out.0,
                f.as_raw(),
                x.0,
                in_axes.as_ptr(),
                in_axes.len(),
            )
        })
    })?;
    let out_axes = resolve_out_axes(&s_out.to_vec()?, out_axes)?;
    let mut res = VectorArray::empty();
    closure_status(|| unsafe {
        sys::mlx_detail_vmap_replace(
            &mut res.0,
            x.0,
            s_in.0,
            s_out.0,
            in_axes.as_ptr(),
            in_axes.len(),
            out_axes.as_ptr(),
            out_axes.len(),
        )
    })?;
    res.to_vec()
}

/// MLX's form of the input axes: non-negative, or -1 for "not mapped". MLX does not
/// check all of this itself (an axis equal to `ndim` is undefined behaviour there).
fn resolve_in_axes(inputs: &[Array], in_axes: &[Option<i32>]) -> Result<Vec<i32>> {
    let given: Vec<Option<i32>> = if in_axes.is_empty() {
        vec![Some(0); inputs.len()]
    } else if in_axes.len() == inputs.len() {
        in_axes.to_vec()
    } else {
        return Err(Error::InvalidArgument(format!(
            "vmap: {} in_axes for {} inputs",
            in_axes.len(),
            inputs.len()
        )));
    };
    let mut axes = Vec::with_capacity(inputs.len());
    for (i, (x, ax)) in inputs.iter().zip(&given).enumerate() {
        let Some(ax) = *ax else {
            axes.push(-1);
            continue;
        };
        let ndim = x.ndim() as i32;
        let a = if ax < 0 { ax + ndim } else { ax };
        if a < 0 || a >= ndim {
            return Err(Error::InvalidArgument(format!(
                "vmap: in_axes[{i}] = {ax} is out of range for input {i} of shape {:?}",
                x.shape()
            )));
        }
        axes.push(a);
    }
    if !inputs.is_empty() && axes.iter().all(|&a| a == -1) {
        return Err(Error::InvalidArgument(
            "vmap: at least one input must be mapped (all in_axes are None)".into(),
        ));
    }
    Ok(axes)
}

/// Non-negative output axes, counted in the outputs with the mapped axis inserted.
fn resolve_out_axes(traced: &[Array], out_axes: &[i32]) -> Result<Vec<i32>> {
    if out_axes.is_empty() {
        return Ok(vec![0; traced.len()]);
    }
    if out_axes.len() != traced.len() {
        return Err(Error::InvalidArgument(format!(
            "vmap: {} out_axes for a function with {} outputs",
            out_axes.len(),
            traced.len()
        )));
    }
    traced
        .iter()
        .zip(out_axes)
        .enumerate()
        .map(|(i, (y, &ax))| {
            let ndim = y.ndim() as i32 + 1;
            let a = if ax < 0 { ax + ndim } else { ax };
            if a < 0 || a >= ndim {
                return Err(Error::InvalidArgument(format!(
                    "vmap: out_axes[{i}] = {ax} is out of range for output {i}, which has \
                     {ndim} dimensions once mapped"
                )));
            }
            Ok(a)
        })
        .collect()
}
