//! The chunkwise-parallel (WY / UT-transform) form of the gated delta rule, for prefill.
//!
//! The sequential form ([`super::ops::gated_delta_sequential`]) updates
//! the state once per token: `S ← g·S; S ← S + β (v − S k) kᵀ; y = S q`. Over a chunk of
//! `C` tokens the same updates can be written with a handful of `C × C` and `C × D`
//! matrix products (Yang et al., "Gated Delta Networks", 2024; the same algebra as
//! transformers' `torch_chunk_gated_delta_rule` and flash-linear-attention's
//! `chunk_gated_delta_rule`), so only the recurrence *across* chunks stays sequential.
//!
//! With `Sᵀ` (`[Dk, Dv]`) the state entering a chunk, `γ_i = Σ_{j≤i} log g_j` the
//! cumulative log decay inside the chunk and `Γ_ij = exp(γ_i − γ_j)` for `i ≥ j` (0 above
//! the diagonal):
//!
//! ```text
//! A      = strict_lower((β ⊙ K) Kᵀ ⊙ Γ)              the coupling of the C updates
//! T      = (I + A)⁻¹                                 the UT transform
//! U      = T (β ⊙ V),   W = T (β ⊙ e^γ ⊙ K)
//! V'     = U − W Sᵀ                                  the corrections actually written
//! Y      = (e^γ ⊙ Q) Sᵀ + (Q Kᵀ ⊙ Γ) V'
//! Sᵀ_new = e^{γ_C} Sᵀ + (e^{γ_C − γ} ⊙ K)ᵀ V'
//! ```
//!
//! Everything runs in float32 with plain MLX ops (no custom kernels), so it works on every
//! backend. `T` is computed by doubling the size of the inverted diagonal blocks
//! (`T₂ᵦ = Tᵦ − Tᵦ Eᵦ Tᵦ`, `Eᵦ` the coupling between neighbouring `b`-blocks): as
//! stable as forward substitution, unlike the Neumann series, whose terms grow
//! combinatorially when keys repeat (a repeated token), but in `log2 C` batched matmuls.

use crate::error::{Error, Result};
use crate::kernels::cpu_gemm::{self, CpuProducts};
use mlx_rs::{ops, Array, Dtype};

/// The gated delta rule in chunks of `chunk` tokens.
///
/// Shapes: `q`, `k` `[B, T, Hk, Dk]`; `v` `[B, T, Hv, Dv]`; `log_g` (the log of the
/// per-token decay, ≤ 0) and `beta` `[B, T, Hv]`; `state` `[B, Hv, Dv, Dk]` (float32),
/// the state before the first token (zeros for a fresh sequence). `Hv` must be a
/// multiple of `Hk`; value head `j` reads key head `j / (Hv / Hk)`. Any `T ≥ 1` works
/// (the last chunk is padded with tokens that leave the state unchanged).
///
/// Returns `y` `[B, T, Hv, Dv]` in q's dtype and the state after the last token
/// (`[B, Hv, Dv, Dk]`, float32), equal to the sequential form's up to rounding.
///
/// `cpu`: how the float32 products run for a model on the CPU (`None`: in MLX).
#[allow(clippy::too_many_arguments)]
pub fn gated_delta_chunked(
    q: &Array,
    k: &Array,
    v: &Array,
    log_g: &Array,
    beta: &Array,
    state: &Array,
    chunk: i32,
    cpu: Option<CpuProducts>,
) -> Result<(Array, Array)> {
    let mm = |a: &Array, b: &Array| product(a, b, cpu);
    let (b, t, _hk, dk, hv, dv) = check_shapes(q, k, v, log_g, beta, state)?;
    if chunk < 1 {
        return Err(Error::InvalidArgument(format!(
            "gated_delta_chunked: chunk size must be at least 1, got {chunk}"
        )));
    }
    let out_dtype = q.dtype();
    let f32 = Dtype::Float32;
    let c = chunk;
    let n = (t + c - 1) / c;
    let pad = n * c - t;

    // [B, T, H, D] → [B, H, N, C, D] in float32, value heads for q and k too.
    let heads = |x: &Array, d: i32| -> Result<Array> {
        let x = if x.dim(2) != hv {
            ops::repeat_axis(x, hv / x.dim(2), 2)?
        } else {
            x.clone()
        };
        let x = x.astype(f32)?.swapaxes(1, 2)?;
        let x = pad_time(&x, 2, pad)?;
        Ok(x.reshape(&[b, hv, n, c, d])?)
    };
    // [B, T, H] → [B, H, N, C] in float32.
    let per_token = |x: &Array| -> Result<Array> {
        let x = x.astype(f32)?.swapaxes(1, 2)?;
        Ok(pad_time(&x, 2, pad)?.reshape(&[b, hv, n, c])?)
    };
    let q = heads(q, dk)?;
    let k = heads(k, dk)?;
    let v = heads(v, dv)?;
    // Padded tokens have β = 0 (no write) and log g = 0 (no decay): the state passes
    // through them unchanged.
    let beta = per_token(beta)?;
    let log_g = per_token(log_g)?;

    // Cumulative log decay inside each chunk, and the pairwise decays Γ (0 above the
    // diagonal; masked before exp so that no positive exponent can overflow).
    let gamma = ops::cumsum_axis(&log_g, -1, false, true, None)?;
    let lower = ops::tri(c, c, 0, Dtype::Bool)?;
    let diff = ops::expand_dims(&gamma, -1)?.subtract(&ops::expand_dims(&gamma, -2)?)?;
    let neg_inf = Array::scalar(f32::NEG_INFINITY);
    let decay_pairs = ops::exp(&ops::r#where(&lower, &diff, &neg_inf)?)?;
    let gamma_exp = ops::exp(&gamma)?;
    let gamma_last = ops::slice(&gamma, &[0, 0, 0, c - 1], &[b, hv, n, c], &[1, 1, 1, 1])?;

    let beta_col = ops::expand_dims(&beta, -1)?;
    let k_beta = k.multiply(&beta_col)?;
    let v_beta = v.multiply(&beta_col)?;
    let k_t = k.swapaxes(-1, -2)?;

    // The UT transform.
    let a = ops::tril(&mm(&k_beta, &k_t)?.multiply(&decay_pairs)?, -1)?;
    let t_inv = unit_lower_inverse(&a, c, cpu)?;
    let u = mm(&t_inv, &v_beta)?;
    let w = mm(
        &t_inv,
        &k_beta.multiply(&ops::expand_dims(&gamma_exp, -1)?)?,
    )?;

    // Read-outs inside the chunk and the decays applied to the carried state.
    let intra = mm(&q, &k_t)?.multiply(&decay_pairs)?;
    let q_decayed = q.multiply(&ops::expand_dims(&gamma_exp, -1)?)?;
    let k_decayed = k.multiply(&ops::expand_dims(
        &ops::exp(&gamma_last.subtract(&gamma)?)?,
        -1,
    )?)?;
    let chunk_decay = ops::exp(&gamma_last)?; // [B, H, N, 1]

    // The recurrence across chunks, on Sᵀ = [B, H, Dk, Dv].
    let mut s_t = state.astype(f32)?.swapaxes(-1, -2)?;
    let mut ys = Vec::with_capacity(n as usize);
    let at = |x: &Array, i: i32| -> Result<Array> {
        let shape = x.shape();
        let mut start = vec![0; shape.len()];
        let mut stop = shape.to_vec();
        start[2] = i;
        stop[2] = i + 1;
        let mut squeezed = shape.to_vec();
        squeezed.remove(2);
        Ok(ops::slice(x, &start, &stop, &vec![1; shape.len()])?.reshape(&squeezed)?)
    };
    for i in 0..n {
        let v_new = at(&u, i)?.subtract(&mm(&at(&w, i)?, &s_t)?)?;
        let y = mm(&at(&q_decayed, i)?, &s_t)?.add(&mm(&at(&intra, i)?, &v_new)?)?;
        ys.push(y);
        let carry = ops::expand_dims(&at(&chunk_decay, i)?, -1)?; // [B, H, 1, 1]
        s_t = s_t
            .multiply(&carry)?
            .add(&mm(&at(&k_decayed, i)?.swapaxes(-1, -2)?, &v_new)?)?;
    }

    // [B, H, N·C, Dv] → [B, T, H, Dv].
    let y = ops::concatenate_axis(&ys, 2)?;
    let y = ops::slice(&y, &[0, 0, 0, 0], &[b, hv, t, dv], &[1, 1, 1, 1])?
        .swapaxes(1, 2)?
        .astype(out_dtype)?;
    let state = ops::contiguous(&s_t.swapaxes(-1, -2)?, false)?;
    Ok((y, state))
}

/// `a · b` (batched): for a model on the CPU with `cpu.gemm` on, float32 products go
/// through [`cpu_gemm`] (MLX's Linux CPU BLAS is the slow reference one).
fn product(a: &Array, b: &Array, cpu: Option<CpuProducts>) -> Result<Array> {
    if let Some(cpu) = cpu.filter(|c| c.gemm) {
        if let Some(y) = cpu_gemm::batched(a, b, cpu.threads)? {
            return Ok(y);
        }
    }
    Ok(ops::matmul(a, b)?)
}

/// `(I + A)⁻¹` for strictly lower-triangular `A` (`[.., C, C]`, float32).
///
/// Keeps `T`, the inverses of the diagonal blocks of size `b` (a block-diagonal matrix),
/// and doubles `b`: with `E` the part of `A` that couples the two `b`-blocks inside each
/// `2b`-block, `[[T₁, 0], [A₂₁, T₂]]`'s inverse is `[[T₁, 0], [−T₂A₂₁T₁, T₂]]`, i.e.
/// `T ← T − T E T`. Blocks are taken by index (`i / b`), so any `C` works.
fn unit_lower_inverse(a: &Array, c: i32, cpu: Option<CpuProducts>) -> Result<Array> {
    let mm = |a: &Array, b: &Array| product(a, b, cpu);
    // Size-1 blocks: T = I. First doubling: T E T = E.
    let mut t = ops::identity(c, Dtype::Float32)?.subtract(&a.multiply(&coupling_mask(c, 1)?)?)?;
    let mut size = 2;
    while size < c {
        let e = a.multiply(&coupling_mask(c, size)?)?;
        t = t.subtract(&mm(&mm(&t, &e)?, &t)?)?;
        size *= 2;
    }
    Ok(t)
}

/// The `C × C` float mask of entries `(i, j)` in the same `2b`-block but different
/// `b`-blocks (the lower one of the pair holds `A`'s entries).
fn coupling_mask(c: i32, size: i32) -> Result<Array> {
    let mut m = vec![0f32; (c * c) as usize];
    for i in 0..c {
        for j in 0..c {
            if i / (2 * size) == j / (2 * size) && i / size != j / size {
                m[(i * c + j) as usize] = 1.0;
            }
        }
    }
    Ok(Array::from_slice(&m, &[c, c])?)
}

/// Appends `pad` zeros along `axis`.
fn pad_time(x: &Array, axis: i32, pad: i32) -> Result<Array> {
    if pad == 0 {
        return Ok(x.clone());
    }
    Ok(ops::pad(
        x,
        &[axis],
        &[0],
        &[pad],
        &Array::scalar(0f32).astype(x.dtype())?,
        "constant",
    )?)
}

/// Checks the shapes of the inputs; returns `(B, T, Hk, Dk, Hv, Dv)`.
fn check_shapes(
    q: &Array,
    k: &Array,
    v: &Array,
    log_g: &Array,
    beta: &Array,
    state: &Array,
) -> Result<(i32, i32, i32, i32, i32, i32)> {
    let bad = |what: String| Err(Error::InvalidArgument(format!("gated delta rule: {what}")));
    if q.ndim() != 4 || v.ndim() != 4 {
        return bad(format!(
            "q and v must be [B, T, H, D], found {:?} and {:?}",
            q.shape(),
            v.shape()
        ));
    }
    let (b, t, hk, dk) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    let (hv, dv) = (v.dim(2), v.dim(3));
    if k.shape() != q.shape() {
        return bad(format!("k {:?} differs from q {:?}", k.shape(), q.shape()));
    }
    if v.dim(0) != b || v.dim(1) != t {
        return bad(format!(
            "v {:?} does not match q {:?} in batch and length",
            v.shape(),
            q.shape()
        ));
    }
    if t < 1 {
        return bad("no tokens".into());
    }
    if hk < 1 || hv % hk != 0 {
        return bad(format!(
            "{hv} value heads are not a multiple of {hk} key heads"
        ));
    }
    for (name, x) in [("log_g", log_g), ("beta", beta)] {
        if x.shape() != [b, t, hv] {
            return bad(format!(
                "{name} has shape {:?}, expected {:?}",
                x.shape(),
                [b, t, hv]
            ));
        }
    }
    if state.shape() != [b, hv, dv, dk] {
        return bad(format!(
            "state has shape {:?}, expected {:?}",
            state.shape(),
            [b, hv, dv, dk]
        ));
    }
    Ok((b, t, hk, dk, hv, dv))
}
