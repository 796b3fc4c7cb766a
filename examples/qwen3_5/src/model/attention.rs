//! Gated softmax attention: per-head q/k RMSNorm, partial RoPE, causal GQA attention,
//! output gated by `sigmoid(gate)` where the gate comes from the second half of each
//! query head's projection.

use super::linear::{fixed, placeholder, placeholder_param, Linear, Projections};
use crate::cache::{KvCache, Positions};
use crate::config::TextConfig;
use crate::error::{Error, Result};
use crate::options::Plan;
use mlx_lm::kernels::attention::{self as attn_kernel, AttnHeads};
use mlx_lm::kernels::compiled;
use mlx_lm::kernels::cpu_attention;
use mlx_lm::kernels::cpu_gemm::{self, CpuProducts};
use mlx_lm::kernels::gated_delta::StepPath;
use mlx_lm::shard::{shard_linear, Part, Split};
use mlx_lm::tuner::AdaptableLinear;
use mlx_rs::nn::{self, Module};
use mlx_rs::{fast, ops, Array, Dtype};

/// One gated attention layer: the checkpoint's `self_attn.*` parameters and, once
/// prepared (`Attention::prepare`, at load), the forms the forward pass runs with.
#[derive(Clone, Module)]
pub struct Attention {
    /// Queries and gate, `[H · 2D, hidden]`.
    q_proj: AdaptableLinear,
    k_proj: AdaptableLinear,
    v_proj: AdaptableLinear,
    o_proj: AdaptableLinear,
    /// `(1 + w)`-style weights, stored shifted (see `crate::weights::sanitize`).
    q_norm: nn::RmsNorm,
    k_norm: nn::RmsNorm,
    #[module(skip)]
    prepared: Option<Prepared>,
}

impl Attention {
    /// The layer with placeholder parameters, shaped by `c`.
    pub(crate) fn new(c: &TextConfig) -> Result<Attention> {
        let (h, kv, d, hidden) = (
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.hidden_size,
        );
        let norm = || -> Result<nn::RmsNorm> {
            Ok(nn::RmsNorm {
                weight: placeholder_param(&[d])?,
                eps: c.rms_norm_eps,
            })
        };
        Ok(Attention {
            q_proj: placeholder(h * d * 2, hidden)?,
            k_proj: placeholder(kv * d, hidden)?,
            v_proj: placeholder(kv * d, hidden)?,
            o_proj: placeholder(hidden, h * d)?,
            q_norm: norm()?,
            k_norm: norm()?,
            prepared: None,
        })
    }

    /// Builds the inference forms from the loaded parameters for the paths of `plan`
    /// (q/k/v joined, each product in its device form) and points the parameters at
    /// their arrays, so the weights are held once. `path` names the layer in errors.
    pub(crate) fn prepare(&mut self, path: &str, c: &TextConfig, plan: &Plan) -> Result<()> {
        let names = ["q_proj", "k_proj", "v_proj"].map(|n| format!("{path}.{n}"));
        let mut layers = [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj];
        let qkv_proj = Projections::prepare_layers(&names, &mut layers, plan.products())?;
        let o_proj =
            Linear::prepare_layer(&format!("{path}.o_proj"), &mut self.o_proj, plan.products())?;
        self.prepared = Some(Prepared {
            qkv_proj,
            o_proj,
            q_norm: self.q_norm.weight.value().clone(),
            k_norm: self.k_norm.weight.value().clone(),
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            rope_dims: c.rope_dims(),
            rope_theta: c.rope_theta,
            inv_freq: inv_freq(c.rope_theta, c.rope_dims())?,
            eps: c.rms_norm_eps,
            step: plan.step,
            cpu: plan.cpu,
        });
        Ok(())
    }

    /// Keeps this rank's share of the heads (`c` is the whole model's configuration), as
    /// mlx-lm's `shard`: queries (with their gates) and keys/values by rows, the output
    /// projection by columns. With fewer key/value heads than ranks, each rank keeps the
    /// one key/value head its query heads use (mlx-lm repeats the heads, then splits).
    /// `path` names the layer in errors.
    pub(crate) fn shard(&mut self, path: &str, c: &TextConfig, part: Part) -> Result<()> {
        let what = |n: &str| format!("{path}.{n}");
        part.divide(c.num_attention_heads, "the attention heads")?;
        let kv = c.num_key_value_heads;
        let kv_part = if kv >= part.size {
            part.divide(kv, "the key/value heads")?;
            part
        } else if part.size % kv == 0 {
            // Rank r's query heads use key/value head r / (size / kv).
            Part {
                rank: part.rank * kv / part.size,
                size: kv,
            }
        } else {
            return Err(Error::InvalidArgument(format!(
                "cannot shard the key/value heads ({kv}) across {} processes: neither \
                 divides the other",
                part.size
            )));
        };
        shard_linear(
            self.q_proj.unadapted_mut(&what("q_proj"))?,
            Split::AllToSharded,
            part,
            &what("q_proj"),
        )?;
        shard_linear(
            self.k_proj.unadapted_mut(&what("k_proj"))?,
            Split::AllToSharded,
            kv_part,
            &what("k_proj"),
        )?;
        shard_linear(
            self.v_proj.unadapted_mut(&what("v_proj"))?,
            Split::AllToSharded,
            kv_part,
            &what("v_proj"),
        )?;
        shard_linear(
            self.o_proj.unadapted_mut(&what("o_proj"))?,
            Split::ShardedToAll,
            part,
            &what("o_proj"),
        )?;
        Ok(())
    }

    /// Points the adapted layers' updates at the current parameters (see
    /// `Linear::refresh_update`).
    pub(crate) fn refresh_adapters(&mut self) -> Result<()> {
        if let Some(p) = &mut self.prepared {
            p.qkv_proj
                .refresh_updates(&[&self.q_proj, &self.k_proj, &self.v_proj])?;
            p.o_proj.refresh_update(&self.o_proj)?;
        }
        Ok(())
    }

    /// The inference forms (an error before `Attention::prepare`).
    pub(crate) fn prepared(&self) -> Result<&Prepared> {
        self.prepared
            .as_ref()
            .ok_or_else(|| super::not_prepared("self_attn"))
    }

    /// Attends `x` (`[B, L, hidden]`) over the cached positions plus its own, causally,
    /// with the reference ops.
    pub fn forward(&self, x: &Array, cache: &mut KvCache) -> Result<Array> {
        self.prepared()?.forward(x, cache)
    }
}

/// A gated attention layer as the forward pass runs it, built by `Attention::prepare`.
#[derive(Clone)]
pub struct Prepared {
    /// `q_proj` (queries and gate), `k_proj`, `v_proj`: one matmul when they join.
    qkv_proj: Projections,
    o_proj: Linear,
    q_norm: Array,
    k_norm: Array,
    heads: i32,
    kv_heads: i32,
    head_dim: i32,
    rope_dims: i32,
    rope_theta: f32,
    /// RoPE frequencies `θ^(-2i / rope_dims)`, fp32, for the CUDA decode kernels.
    inv_freq: Array,
    eps: f32,
    /// The decode step's path (fixed at load): the attention kernels on CUDA.
    step: StepPath,
    /// How float32 products run for a model on the CPU (prefill).
    cpu: Option<CpuProducts>,
}

impl Prepared {
    /// Attends `x` (`[B, L, hidden]`) over the cached positions plus its own, causally,
    /// with the reference ops.
    pub fn forward(&self, x: &Array, cache: &mut KvCache) -> Result<Array> {
        self.attend(x, cache, false)
    }

    /// One token (`x` `[B, hidden]` or `[B, 1, hidden]`; the output has the same form),
    /// fused: on CUDA the attention decode kernels (they took the 2B from 274 to 370
    /// tokens/s on an H200), elsewhere MLX's attention with compiled norms and gate.
    pub(crate) fn decode(&self, x: &Array, cache: &mut KvCache) -> Result<Array> {
        self.attend(x, cache, true)
    }

    /// [`Attention::forward`] (`fused` false) or [`Attention::decode`] (`fused` true).
    fn attend(&self, x: &Array, cache: &mut KvCache, fused: bool) -> Result<Array> {
        let (b, l) = if x.ndim() == 2 {
            (x.dim(0), 1)
        } else {
            (x.try_dim(0)?, x.try_dim(1)?)
        };
        // The shape of the gate and of the output: x's, with the projection width.
        let out_shape = |width: i32| -> Vec<i32> {
            if x.ndim() == 2 {
                vec![b, width]
            } else {
                vec![b, l, width]
            }
        };
        let (h, kv, d) = (self.heads, self.kv_heads, self.head_dim);

        let [q_full, keys, values] = fixed(self.qkv_proj.forward(x)?, "attention")?;
        let heads = AttnHeads {
            heads: h,
            kv_heads: kv,
            head_dim: d,
            rope_dims: self.rope_dims,
        };
        // The CUDA kernels take a padded batch (sequences of different lengths) as it is:
        // each row skips its padding and rotates at its own position.
        if fused && self.step == StepPath::CudaKernel && attn_kernel::fits(heads, q_full.dtype()) {
            let out = self.attend_kernels(heads, &q_full, &keys, &values, cache)?;
            return self.o_proj.forward(&out.reshape(&out_shape(h * d))?);
        }
        let q_full = q_full.reshape(&[b, l, h, 2 * d])?;
        let halves = ops::split(&q_full, 2, -1)?;
        let (queries, gate) = (&halves[0], &halves[1]);
        let gate = gate.reshape(&out_shape(h * d))?;

        let keys = keys.reshape(&[b, l, kv, d])?;
        let values = values.reshape(&[b, l, kv, d])?;

        let norm = |x: &Array, w: &Array| -> Result<Array> {
            if fused {
                compiled::rms_norm(x, w, self.eps)
            } else {
                Ok(fast::rms_norm(x, Some(w), self.eps)?)
            }
        };
        let queries = norm(queries, &self.q_norm)?.transpose_axes(&[0, 2, 1, 3])?;
        let keys = norm(&keys, &self.k_norm)?.transpose_axes(&[0, 2, 1, 3])?;
        let values = values.transpose_axes(&[0, 2, 1, 3])?;

        // A scalar offset and no mask unless the batch holds padded sequences.
        let offset = cache.offset();
        let positions = cache.positions()?;
        let padding_mask = cache.mask(l)?;
        let queries = self.rope(&queries, &positions)?;
        let keys = self.rope(&keys, &positions)?;
        let scale = (d as f32).powf(-0.5);
        let cpu = self.cpu.filter(|c| c.gemm && padding_mask.is_none());
        // A fused decode step on the CPU attends outside MLX, over the cache's buffers.
        let mut done = None;
        let (keys, values) = match cpu.filter(|_| fused && l == 1) {
            Some(c) => {
                let (k_buf, v_buf) = cache.update_buffers(&keys, &values)?;
                let len = cache.offset();
                done = cpu_attention::attend_one(&queries, &k_buf, &v_buf, len, scale, c.threads)?;
                (cache.valid(&k_buf)?, cache.valid(&v_buf)?)
            }
            None => cache.update_and_fetch(&keys, &values)?,
        };
        let mask = match &padding_mask {
            Some(m) => fast::AttentionMask::Array(m),
            None if l > 1 => fast::AttentionMask::Causal,
            None => fast::AttentionMask::None,
        };
        let out = match done {
            Some(out) => out,
            None => match cpu_attention(&queries, &keys, &values, scale, offset, cpu)? {
                Some(out) => out,
                None => fast::scaled_dot_product_attention(&queries, &keys, &values, scale, mask)?,
            },
        };
        let out = out
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&out_shape(h * d))?;
        let gated = if fused {
            compiled::sigmoid_gate(&out, &gate)?
        } else {
            out.multiply(&ops::sigmoid(&gate)?)?
        };
        self.o_proj.forward(&gated)
    }

    /// One token's attention on a CUDA GPU from its projections (`q_full`, `keys`,
    /// `values`, `[B, ..]` or `[B, 1, ..]`): the norms + RoPE kernel, the cache writes, the
    /// attention + gate kernel, each row of a padded batch at its own position. Returns
    /// `[B, H·D]`.
    fn attend_kernels(
        &self,
        heads: AttnHeads,
        q_full: &Array,
        keys: &Array,
        values: &Array,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let (b, h, kv, d) = (q_full.dim(0), self.heads, self.kv_heads, self.head_dim);
        let q_full = q_full.reshape(&[b, h * 2 * d])?;
        let meta = cache.step_meta(b)?;
        let (q, k) = attn_kernel::qk_prep(
            heads,
            &q_full,
            &keys.reshape(&[b, kv * d])?,
            &self.q_norm,
            &self.k_norm,
            &self.inv_freq,
            &meta,
            self.eps,
        )?;
        let v = values.reshape(&[b, kv, 1, d])?;
        let (key_buf, value_buf) = cache.update_buffers(&k, &v)?;
        let (out, next) = attn_kernel::attend(heads, &q, &key_buf, &value_buf, &q_full, &meta)?;
        cache.keep_step_meta(next);
        Ok(out)
    }

    fn rope(&self, x: &Array, positions: &Positions) -> Result<Array> {
        let options = fast::RopeOptions {
            base: Some(self.rope_theta),
            ..Default::default()
        };
        positions.rope(x, self.rope_dims, options)
    }
}

/// Causal attention of many float32 queries on the CPU with the products done by
/// [`cpu_gemm`]: `queries` `[B, H, L, D]` at positions `offset..offset + L`, `keys`
/// and `values` `[B, KV, S, D]` (positions `0..S`, `S = offset + L`). The `H / KV` query
/// heads of a key head are one batch of rows, so each product is one GEMM per key head.
/// The softmax is MLX's (precise, fp32). `None` (take MLX's attention) for a model off
/// the CPU or with the GEMM off (`cpu`; the caller passes `None` for a padded batch, whose
/// mask this causal form does not apply), for other dtypes and for fewer than
/// [`cpu_gemm::MIN_ROWS`] queries.
fn cpu_attention(
    queries: &Array,
    keys: &Array,
    values: &Array,
    scale: f32,
    offset: i32,
    cpu: Option<CpuProducts>,
) -> Result<Option<Array>> {
    let Some(cpu) = cpu.filter(|c| c.gemm) else {
        return Ok(None);
    };
    let [b, h, l, d] = queries.shape()[..] else {
        return Ok(None);
    };
    let [_, kv, s, _] = keys.shape()[..] else {
        return Ok(None);
    };
    if (l as usize) < cpu_gemm::MIN_ROWS
        || queries.dtype() != Dtype::Float32
        || keys.dtype() != Dtype::Float32
        || kv == 0
        || h % kv != 0
        || s != offset + l
    {
        return Ok(None);
    }
    let rep = h / kv;
    let q = queries
        .multiply(&Array::scalar(scale))?
        .reshape(&[b, kv, rep * l, d])?;
    let Some(scores) = cpu_gemm::batched(&q, &keys.swapaxes(-1, -2)?, cpu.threads)? else {
        return Ok(None);
    };
    // Query i (position offset + i) sees keys 0..=offset + i.
    let q_pos =
        ops::arange(offset as f64, (offset + l) as f64, 1.0, Dtype::Int32)?.reshape(&[l, 1])?;
    let k_pos = ops::arange(0.0, s as f64, 1.0, Dtype::Int32)?.reshape(&[1, s])?;
    let visible = k_pos.less_equal(&q_pos)?;
    let scores = scores.reshape(&[b, kv, rep, l, s])?;
    let scores = ops::r#where(&visible, &scores, &Array::scalar(f32::NEG_INFINITY))?;
    let probs = ops::softmax_axis(&scores, -1, true)?.reshape(&[b, kv, rep * l, s])?;
    let Some(out) = cpu_gemm::batched(&probs, values, cpu.threads)? else {
        return Ok(None);
    };
    Ok(Some(out.reshape(&[b, h, l, d])?))
}

/// `θ^(-2i / dims)` for `i < dims / 2`, fp32 (what RoPE turns by at position 1).
fn inv_freq(theta: f32, dims: i32) -> Result<Array> {
    let f: Vec<f32> = (0..dims / 2)
        .map(|i| (theta as f64).powf(-2.0 * i as f64 / dims as f64) as f32)
        .collect();
    Ok(Array::from_slice(&f, &[dims / 2])?)
}
