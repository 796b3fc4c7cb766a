//! Decode steps of whole decoder layers as compiled functions.
//!
//! A decode step is host-bound on a fast GPU: building and handing MLX the graph of one
//! token (some 350 ops for the 2B) takes longer than the GPU needs to run it. Here a
//! DeltaNet layer's step (mixer, residual adds, norms, MLP) and the MLP half of an
//! attention layer are each one compiled function, so a step replays MLX's recorded trace
//! instead of building every op again, and MLX fuses the element-wise chains.
//!
//! The functions take the layer's weights as inputs rather than capturing them, so one
//! trace serves every layer of the same structure (all DeltaNet layers of a model share
//! one), and no cached function keeps a model's weights alive after the model is gone.
//! The attention core (its KV cache grows every step) stays uncompiled.
//!
//! Taken when the model is loaded with `compile_layers` ([`crate::ModelOptions`]: on by
//! default on a CUDA GPU, off on the CPU and on macOS, not measured on Metal). Measured on an H200 (2B, bf16, prompt
//! 512, 256 decode steps, the two forms alternating in one session): alone, it cut the
//! host's graph building from ~0.7 to ~0.5 ms per step, but decode speed moved by −20 %
//! to +18 % from run to run, within that machine's noise. With the submit thread of
//! [`crate::generate`] (MLX's encoding on a second thread, then the bound), it cut both
//! halves in each of three pairs (building 1.0–1.1 against 1.5 ms, handing over 2.0–2.5
//! against 2.4–2.9 ms) and decode went 395 / 457 / 461 against 412 / 348 / 346 tok/s.

use super::{DecoderLayer, Mixer};
use crate::cache::LayerCache;
use crate::error::{Error, Result};
use mlx_lm::kernels::compiled::compiled;
use mlx_lm::kernels::glue;
use mlx_rs::{fast, Array};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// A placeholder for the weights of the structural copies that the compiled functions
/// capture (they take the real weights as inputs).
fn placeholder() -> impl Iterator<Item = Array> {
    std::iter::repeat_with(|| Array::scalar(0f32))
}

/// `(h + r, rmsnorm(h + r) · w)`: MLX's add and RMSNorm, or with `kernel` the CUDA
/// kernel that does both in one launch ([`glue::add_rms_norm`]).
fn add_norm(
    h: &Array,
    r: &Array,
    w: &Array,
    eps: f32,
    kernel: bool,
) -> mlx_rs::Result<(Array, Array)> {
    if kernel {
        return glue::add_rms_norm(h, r, w, eps)
            .map_err(|e| mlx_rs::Error::Closure(format!("compiled layer step: {e}")));
    }
    let h = h.add(r)?;
    let n = fast::rms_norm(&h, Some(w), eps)?;
    Ok((h, n))
}

/// The structural copy built for a compiled function, or why it could not be built.
fn skeleton<T>(s: &Result<T>) -> mlx_rs::Result<&T> {
    s.as_ref()
        .map_err(|e| mlx_rs::Error::Closure(format!("compiled layer step: {e}")))
}

fn too_few() -> mlx_rs::Error {
    mlx_rs::Error::Closure("compiled layer step: too few inputs".into())
}

impl DecoderLayer {
    /// One token through this layer: `h` the residual stream `[B, hidden]`, `x` its
    /// norm; returns the new residual stream and its norm under `next_norm` (the next
    /// layer's input norm, or the final norm). Updates `cache`. With `glue_kernels` each
    /// residual add and the norm after it, and the MLP's SwiGLU, are one CUDA launch each
    /// ([`glue`]).
    pub(crate) fn decode_compiled(
        &self,
        h: &Array,
        x: &Array,
        next_norm: &Array,
        cache: &mut LayerCache,
        eps: f32,
        glue_kernels: bool,
    ) -> Result<(Array, Array)> {
        let k = glue_kernels;
        let mlp = self.mlp.prepared()?;
        match (self.mixer()?, cache) {
            (Mixer::DeltaNet(m), LayerCache::Recurrent(c)) => {
                let (conv_state, state) = m.decode_state(x, c)?;
                let mut inputs = vec![h.clone(), x.clone(), conv_state, state];
                inputs.extend(m.weights());
                inputs.push(self.post_norm().clone());
                inputs.extend(mlp.weights());
                inputs.push(next_norm.clone());
                let mut hasher = DefaultHasher::new();
                m.hash_structure(&mut hasher);
                mlp.hash_structure(&mut hasher);
                (eps.to_bits(), k).hash(&mut hasher);
                let refs: Vec<&Array> = inputs.iter().collect();
                let out = compiled(
                    "deltanet_layer_step",
                    hasher.finish(),
                    false,
                    || {
                        let mixer = m.with_weights(&mut placeholder());
                        let mlp = mlp.with_weights(&mut placeholder());
                        move |inp: &[Array]| {
                            let (mixer, mlp) = (skeleton(&mixer)?, skeleton(&mlp)?);
                            let mut it = inp.iter().cloned();
                            let mut next = || it.next().ok_or_else(too_few);
                            let (h, x, conv, state) = (next()?, next()?, next()?, next()?);
                            let mut rest = inp[4..].iter().cloned();
                            let mixer = mixer.with_weights(&mut rest)?;
                            let post = rest.next().ok_or_else(too_few)?;
                            let mlp = mlp.with_weights(&mut rest)?;
                            let next_norm = rest.next().ok_or_else(too_few)?;
                            let (r, conv, state) = mixer.decode_step(&x, &conv, &state)?;
                            let (h, x) = add_norm(&h, &r, &post, eps, k)?;
                            let m = mlp.decode_glued(&x, k)?;
                            let (h, x) = add_norm(&h, &m, &next_norm, eps, k)?;
                            Ok(vec![h, x, conv, state])
                        }
                    },
                    &refs,
                )?;
                let [h, x, conv, state]: [Array; 4] = out.try_into().map_err(|o: Vec<_>| {
                    Error::InvalidArgument(format!("compiled layer step: {} outputs", o.len()))
                })?;
                c.conv = Some(conv);
                c.recurrent = Some(state);
                c.offset += 1;
                Ok((h, x))
            }
            (Mixer::Attention(m), LayerCache::Attention(c)) => {
                let r = m.decode(x, c)?;
                let mut inputs = vec![h.clone(), r, self.post_norm().clone()];
                inputs.extend(mlp.weights());
                inputs.push(next_norm.clone());
                let mut hasher = DefaultHasher::new();
                mlp.hash_structure(&mut hasher);
                (eps.to_bits(), k).hash(&mut hasher);
                let refs: Vec<&Array> = inputs.iter().collect();
                let out = compiled(
                    "mlp_block_step",
                    hasher.finish(),
                    false,
                    || {
                        let mlp = mlp.with_weights(&mut placeholder());
                        move |inp: &[Array]| {
                            let mlp = skeleton(&mlp)?;
                            let mut it = inp.iter().cloned();
                            let mut next = || it.next().ok_or_else(too_few);
                            let (h, r, post) = (next()?, next()?, next()?);
                            let mut rest = inp[3..].iter().cloned();
                            let mlp = mlp.with_weights(&mut rest)?;
                            let next_norm = rest.next().ok_or_else(too_few)?;
                            let (h, x) = add_norm(&h, &r, &post, eps, k)?;
                            let m = mlp.decode_glued(&x, k)?;
                            let (h, x) = add_norm(&h, &m, &next_norm, eps, k)?;
                            Ok(vec![h, x])
                        }
                    },
                    &refs,
                )?;
                let [h, x]: [Array; 2] = out.try_into().map_err(|o: Vec<_>| {
                    Error::InvalidArgument(format!("compiled MLP step: {} outputs", o.len()))
                })?;
                Ok((h, x))
            }
            _ => Err(Error::InvalidArgument(
                "a cache layer does not match the model's layer type".into(),
            )),
        }
    }
}
