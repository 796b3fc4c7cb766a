//! Compiled graphs: a per-thread cache of compiled functions ([`compiled`]), and the
//! small element-wise pieces of a decoder layer's decode step built on it (SwiGLU, the
//! attention output gate, the RMSNorm, the residual add + RMSNorm). On the CPU MLX runs
//! these as separate element-wise ops, which compile fuses; the gated delta rule's own
//! compiled graphs are in [`super::gated_delta::compiled`].
//!
//! Compiled closures are cached per thread (MLX keeps its compile cache per thread) and
//! per value of the constants they capture (head counts, `eps`); they are never freed
//! (a few per thread), which avoids racing MLX's own per-thread cache at thread exit.

use crate::error::Result;
use mlx_rs::transforms::{compile, Closure};
use mlx_rs::{fast, ops, Array, DeviceType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;

/// (function, captured constants, stream the trace's ops run on).
type CompiledKey = (&'static str, u64, (bool, i32));

thread_local! {
    static COMPILED: RefCell<HashMap<CompiledKey, ManuallyDrop<Closure<'static>>>> =
        RefCell::new(HashMap::new());
}

/// The current stream as a cache key: (on the GPU, stream index).
fn stream_key() -> Result<(bool, i32)> {
    let s = mlx_rs::current_stream()?;
    Ok((s.device()?.kind()? == DeviceType::Gpu, s.index()?))
}

/// Calls the compiled form of the function `make()` builds, cached on this thread under
/// `(name, key)` and the current stream: `key` must change whenever a constant the
/// function captures does.
///
/// The stream is part of the key because a trace records the stream of each op, while
/// MLX looks its traces up by input shapes and *its* default device only, not by the
/// stream this crate's [`mlx_rs::with_stream`] / [`mlx_rs::with_device`] choose: one
/// closure per stream keeps a CPU trace from being replayed on a GPU stream.
///
/// # Errors
/// What MLX reports when compiling or calling the function, and what the function
/// returns.
pub fn compiled<F>(
    name: &'static str,
    key: u64,
    shapeless: bool,
    make: impl FnOnce() -> F,
    args: &[&Array],
) -> Result<Vec<Array>>
where
    F: FnMut(&[Array]) -> mlx_rs::Result<Vec<Array>> + 'static,
{
    let full_key = (name, key, stream_key()?);
    let f = COMPILED.with(|c| -> Result<Closure<'static>> {
        if let Some(f) = c.borrow().get(&full_key) {
            return Ok(Closure::clone(f));
        }
        let f = compile(make(), shapeless)?;
        c.borrow_mut()
            .insert(full_key, ManuallyDrop::new(f.clone()));
        Ok(f)
    })?;
    // `f` is a clone; dropping it after the call only releases this reference.
    Ok(f.call(args)?)
}

/// A captured `f32` constant as (part of) a cache key of [`compiled`].
pub(crate) fn f32_key(x: f32) -> u64 {
    x.to_bits() as u64
}

/// `x · sigmoid(x)`.
fn silu(x: &Array) -> mlx_rs::Result<Array> {
    x.multiply(&ops::sigmoid(x)?)
}

/// `silu(gate) · up`, compiled (shapeless: prefill and decode share one trace).
pub fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    let out = compiled(
        "swiglu",
        0,
        true,
        || |x: &[Array]| Ok(vec![silu(&x[0])?.multiply(&x[1])?]),
        &[gate, up],
    )?;
    Ok(out[0].clone())
}

/// `x · sigmoid(gate)` (the output gate of attention), compiled (shapeless).
pub fn sigmoid_gate(x: &Array, gate: &Array) -> Result<Array> {
    let out = compiled(
        "sigmoid_gate",
        0,
        true,
        || |x: &[Array]| Ok(vec![x[0].multiply(&ops::sigmoid(&x[1])?)?]),
        &[x, gate],
    )?;
    Ok(out[0].clone())
}

/// `rms_norm(x) · w` (`w` already `1 + w` for the zero-centred norms), compiled: on the
/// CPU MLX runs the norm as element-wise ops and a mean, which compile fuses; on the GPU
/// it stays MLX's own norm kernel.
pub fn rms_norm(x: &Array, w: &Array, eps: f32) -> Result<Array> {
    let out = compiled(
        "rms_norm",
        f32_key(eps),
        false,
        || move |x: &[Array]| Ok(vec![fast::rms_norm(&x[0], Some(&x[1]), eps)?]),
        &[x, w],
    )?;
    Ok(out[0].clone())
}

/// The residual add and the following norm: `(h + r, rms_norm(h + r) · w)`, compiled.
pub fn add_rms_norm(h: &Array, r: &Array, w: &Array, eps: f32) -> Result<(Array, Array)> {
    let out = compiled(
        "add_rms_norm",
        f32_key(eps),
        false,
        || {
            move |x: &[Array]| {
                let h = x[0].add(&x[1])?;
                let n = fast::rms_norm(&h, Some(&x[2]), eps)?;
                Ok(vec![h, n])
            }
        },
        &[h, r, w],
    )?;
    Ok((out[0].clone(), out[1].clone()))
}
