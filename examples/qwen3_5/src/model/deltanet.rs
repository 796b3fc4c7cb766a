//! Gated DeltaNet: causal depthwise conv + SiLU on the `[q|k|v]` stream, L2-normalised
//! q/k, the gated delta rule recurrence with an fp32 state, and a gated RMSNorm output.
//!
//! The recurrence itself, in all its forms (sequential, chunked prefill, compiled and
//! GPU-kernel decode), is [`mlx_lm::kernels::gated_delta`]'s.

use super::linear::{fixed, placeholder, placeholder_param, Linear, Projections};
use super::silu;
use crate::cache::RecurrentCache;
use crate::config::TextConfig;
use crate::error::Result;
use crate::options::Plan;
use mlx_lm::kernels::cpu_gemm::CpuProducts;
use mlx_lm::kernels::gated_delta::{
    self, DeltaHeads, GatedDeltaOptions, Prefill, ShortPrefill, StepPath,
};
use mlx_lm::shard::{shard_linear, shard_linear_segments, Part, Split};
use mlx_lm::tuner::AdaptableLinear;
use mlx_rs::nn::{self, Module, Param};
use mlx_rs::{ops, Array, Dtype};

/// Where the real tokens of a batch padded on the right are, for the Gated DeltaNet
/// layers (`Model`'s `prefill_rows`): the padding after a row's last token must leave its
/// state as that token left it.
pub(crate) struct RowEnds {
    /// `[rows, longest, 1]`: true on real tokens.
    valid: Array,
    /// `[rows, K − 1, 1]` int32: where each row's last `K − 1` conv inputs sit in the
    /// conv's input (the carried inputs first, then the tokens).
    conv_last: Array,
}

impl RowEnds {
    /// The ends of `rows` for a conv of `kernel` taps.
    pub(crate) fn new(rows: &mlx_lm::model::PaddedRows, kernel: i32) -> Result<RowEnds> {
        let keep = kernel - 1;
        let n = rows.lengths.len() as i32;
        let last: Vec<i32> = rows
            .lengths
            .iter()
            .flat_map(|&len| (0..keep).map(move |j| len + j))
            .collect();
        Ok(RowEnds {
            valid: ops::expand_dims(&rows.valid()?, -1)?,
            conv_last: Array::from_slice(&last, &[n, keep, 1])?,
        })
    }
}

/// One Gated DeltaNet layer: the checkpoint's `linear_attn.*` parameters and, once
/// prepared (`GatedDeltaNet::prepare`, at load), the forms the forward pass runs with.
#[derive(Clone, Module)]
pub struct GatedDeltaNet {
    in_proj_qkv: AdaptableLinear,
    in_proj_z: AdaptableLinear,
    in_proj_b: AdaptableLinear,
    in_proj_a: AdaptableLinear,
    /// Depthwise, MLX form `[C, K, 1]`.
    conv1d: nn::Conv1d,
    #[module(rename = "A_log")]
    a_log: Param,
    dt_bias: Param,
    /// The gated output norm: a plain (not `1 + w`) weight, `[Dv]`.
    norm: nn::RmsNorm,
    out_proj: AdaptableLinear,
    #[module(skip)]
    prepared: Option<Prepared>,
}

impl GatedDeltaNet {
    /// The layer with placeholder parameters, shaped by `c`.
    pub(crate) fn new(c: &TextConfig) -> Result<GatedDeltaNet> {
        let hidden = c.hidden_size;
        let (hv, dv) = (c.linear_num_value_heads, c.linear_value_head_dim);
        let conv_dim = c.linear_conv_dim();
        Ok(GatedDeltaNet {
            in_proj_qkv: placeholder(conv_dim, hidden)?,
            in_proj_z: placeholder(hv * dv, hidden)?,
            in_proj_b: placeholder(hv, hidden)?,
            in_proj_a: placeholder(hv, hidden)?,
            conv1d: nn::Conv1d {
                weight: placeholder_param(&[conv_dim, c.linear_conv_kernel_dim, 1])?,
                bias: None,
                options: ops::ConvOptions {
                    groups: conv_dim,
                    ..Default::default()
                },
            },
            a_log: placeholder_param(&[hv])?,
            dt_bias: placeholder_param(&[hv])?,
            norm: nn::RmsNorm {
                weight: placeholder_param(&[dv])?,
                eps: c.rms_norm_eps,
            },
            out_proj: placeholder(c.hidden_size, hv * dv)?,
            prepared: None,
        })
    }

    /// Builds the inference forms from the loaded parameters for the paths of `plan` (the
    /// four input projections joined, each product in its device form) and points the
    /// parameters at their arrays, so the weights are held once. `path` names the layer
    /// in errors.
    pub(crate) fn prepare(&mut self, path: &str, c: &TextConfig, plan: &Plan) -> Result<()> {
        let names =
            ["in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"].map(|n| format!("{path}.{n}"));
        let mut layers = [
            &mut self.in_proj_qkv,
            &mut self.in_proj_z,
            &mut self.in_proj_b,
            &mut self.in_proj_a,
        ];
        let in_proj = Projections::prepare_layers(&names, &mut layers, plan.products())?;
        let out_proj = Linear::prepare_layer(
            &format!("{path}.out_proj"),
            &mut self.out_proj,
            plan.products(),
        )?;
        self.prepared = Some(Prepared {
            in_proj,
            conv_weight: self.conv1d.weight.value().clone(),
            a_log: self.a_log.value().clone(),
            dt_bias: self.dt_bias.value().clone(),
            norm: self.norm.weight.value().clone(),
            out_proj,
            hk: c.linear_num_key_heads,
            hv: c.linear_num_value_heads,
            dk: c.linear_key_head_dim,
            dv: c.linear_value_head_dim,
            kernel: c.linear_conv_kernel_dim,
            eps: c.rms_norm_eps,
            step: plan.step,
            cpu: plan.cpu,
            prefill: plan.prefill,
            short_prefill: plan.short_prefill,
        });
        Ok(())
    }

    /// Keeps this rank's share of the key and value heads (`c` is the whole model's
    /// configuration), as mlx-lm's `shard`: the `[q|k|v]` projection and the depthwise
    /// conv by channels, each of q, k and v split on its own; `z`, `b`, `a`, `A_log` and
    /// `dt_bias` by value heads; the output projection by columns. The norm is per head
    /// and stays whole. `path` names the layer in errors.
    pub(crate) fn shard(&mut self, path: &str, c: &TextConfig, part: Part) -> Result<()> {
        let what = |n: &str| format!("{path}.{n}");
        part.divide(c.linear_num_key_heads, "the DeltaNet key heads")?;
        part.divide(c.linear_num_value_heads, "the DeltaNet value heads")?;
        let kd = c.linear_num_key_heads * c.linear_key_head_dim;
        let qkv = [kd, 2 * kd];
        let all = Split::AllToSharded;
        shard_linear_segments(
            self.in_proj_qkv.unadapted_mut(&what("in_proj_qkv"))?,
            all,
            &qkv,
            part,
            &what("in_proj_qkv"),
        )?;
        shard_linear(
            self.in_proj_z.unadapted_mut(&what("in_proj_z"))?,
            all,
            part,
            &what("in_proj_z"),
        )?;
        shard_linear(
            self.in_proj_b.unadapted_mut(&what("in_proj_b"))?,
            all,
            part,
            &what("in_proj_b"),
        )?;
        shard_linear(
            self.in_proj_a.unadapted_mut(&what("in_proj_a"))?,
            all,
            part,
            &what("in_proj_a"),
        )?;
        let conv = part.slice_segments(self.conv1d.weight.value(), 0, &qkv, &what("conv1d"))?;
        self.conv1d.options.groups = conv.dim(0);
        self.conv1d.weight.set(conv);
        let a_log = part.slice(self.a_log.value(), 0, &what("A_log"))?;
        self.a_log.set(a_log);
        let dt_bias = part.slice(self.dt_bias.value(), 0, &what("dt_bias"))?;
        self.dt_bias.set(dt_bias);
        shard_linear(
            self.out_proj.unadapted_mut(&what("out_proj"))?,
            Split::ShardedToAll,
            part,
            &what("out_proj"),
        )?;
        Ok(())
    }

    /// Points the adapted layers' updates at the current parameters (see
    /// `Linear::refresh_update`).
    pub(crate) fn refresh_adapters(&mut self) -> Result<()> {
        if let Some(p) = &mut self.prepared {
            p.in_proj.refresh_updates(&[
                &self.in_proj_qkv,
                &self.in_proj_z,
                &self.in_proj_b,
                &self.in_proj_a,
            ])?;
            p.out_proj.refresh_update(&self.out_proj)?;
        }
        Ok(())
    }

    /// The inference forms (an error before `GatedDeltaNet::prepare`).
    pub(crate) fn prepared(&self) -> Result<&Prepared> {
        self.prepared
            .as_ref()
            .ok_or_else(|| super::not_prepared("linear_attn"))
    }

    /// Runs the layer over `x` (`[B, S, hidden]`) with the reference ops, continuing from
    /// and updating `cache`.
    pub fn forward(&self, x: &Array, cache: &mut RecurrentCache) -> Result<Array> {
        self.prepared()?.forward(x, cache)
    }
}

/// A Gated DeltaNet layer as the forward pass runs it, built by
/// `GatedDeltaNet::prepare`.
#[derive(Clone)]
pub struct Prepared {
    /// `in_proj_{qkv,z,b,a}`, one matmul when their weights join.
    in_proj: Projections,
    /// Depthwise conv weight, MLX form `[C, K, 1]`.
    conv_weight: Array,
    a_log: Array,
    dt_bias: Array,
    /// Plain (not `1 + w`) weight of the gated output norm, `[Dv]`.
    norm: Array,
    out_proj: Linear,
    hk: i32,
    hv: i32,
    dk: i32,
    dv: i32,
    kernel: i32,
    eps: f32,
    /// The path of a decode step's delta rule (fixed at load).
    step: StepPath,
    /// How float32 products run for a model on the CPU (prefill).
    cpu: Option<CpuProducts>,
    /// The form of the delta rule over several tokens (fixed at load).
    prefill: Prefill,
    /// Short prompts on the GPU step kernel (fixed at load).
    short_prefill: Option<ShortPrefill>,
}

impl Prepared {
    /// The four input projections of `x`: `qkv`, `z`, `b` (β logits), `a`.
    fn project(&self, x: &Array) -> Result<[Array; 4]> {
        fixed(self.in_proj.forward(x)?, "DeltaNet")
    }

    /// One token from its joined projections and the carried states: the gated output
    /// norm (the out projection's input, `[.., Hv·Dv]`), the new recurrent state, the new
    /// conv state.
    fn delta_normed(
        &self,
        proj: &Array,
        conv_state: &Array,
        state: &Array,
    ) -> Result<(Array, Array, Array)> {
        let (hk, hv, dk, dv) = (self.hk, self.hv, self.dk, self.dv);
        gated_delta::gated_delta_decode(
            self.step,
            DeltaHeads { hk, hv, dk, dv },
            &gated_delta::DecodeLayer {
                proj,
                conv_state,
                conv_weight: &self.conv_weight,
                a_log: &self.a_log,
                dt_bias: &self.dt_bias,
                norm_weight: &self.norm,
                norm_eps: self.eps,
                state,
            },
        )
    }

    /// Runs the layer over `x` (`[B, S, hidden]`) with the reference ops, continuing from
    /// and updating `cache`.
    pub fn forward(&self, x: &Array, cache: &mut RecurrentCache) -> Result<Array> {
        self.forward_rows(x, cache, None)
    }

    /// [`Prepared::forward`]; with `rows`, `x` is a batch padded on the right from a fresh
    /// cache, and each row's states are left at its last real token: on the padding the
    /// decay is 1 and the write strength 0 (their logits pushed far below zero, so the
    /// softplus and the sigmoid give 0), and the carried conv inputs are each row's own
    /// last ones.
    pub(crate) fn forward_rows(
        &self,
        x: &Array,
        cache: &mut RecurrentCache,
        rows: Option<&RowEnds>,
    ) -> Result<Array> {
        let (b, s) = (x.dim(0), x.dim(1));
        let (hk, hv, dk, dv) = (self.hk, self.hv, self.dk, self.dv);
        let key_dim = hk * dk;
        let conv_dim = 2 * key_dim + hv * dv;

        let [qkv, z, beta_logits, a] = self.project(x)?;
        let z = z.reshape(&[b, s, hv, dv])?;

        // Causal depthwise conv over time, continuing from the carried inputs.
        let keep = self.kernel - 1;
        let conv_state = match &cache.conv {
            Some(c) => c.clone(),
            None => ops::zeros(&[b, keep, conv_dim], x.dtype())?,
        };
        let conv_input = ops::concatenate_axis(&[conv_state, qkv], 1)?;
        let total = s + keep;
        // The last `keep` inputs, gathered (always a copy): MLX's `contiguous` of the slice
        // keeps a view when the whole buffer is at most 16 KB larger, and such a view held
        // by a saved state (the prefix cache) keeps all of `conv_input` alive while the
        // state counts three rows (the server's memory test on the tiny fixture: MLX held
        // 182.5 MB against the prefix cache's 108.3; with the gather 112.1 against 108.3).
        cache.conv = Some(match rows {
            Some(r) => ops::take_along_axis(&conv_input, &r.conv_last, 1)?,
            None => {
                let last = ops::arange((total - keep) as f64, total as f64, 1.0, Dtype::Int32)?;
                ops::take_axis(&conv_input, &last, 1)?
            }
        });
        let (a, beta_logits) = match rows {
            Some(r) => {
                let off = Array::scalar(-1e4f32).astype(a.dtype())?;
                (
                    ops::r#where(&r.valid, &a, &off)?,
                    ops::r#where(&r.valid, &beta_logits, &off)?,
                )
            }
            None => (a, beta_logits),
        };
        let conv_out = silu(&gated_delta::compiled::causal_conv(
            &conv_input,
            &self.conv_weight,
        )?)?;

        let parts = ops::split_sections(&conv_out, &[key_dim, 2 * key_dim], -1)?;
        let q = parts[0].reshape(&[b, s, hk, dk])?;
        let k = parts[1].reshape(&[b, s, hk, dk])?;
        let v = parts[2].reshape(&[b, s, hv, dv])?;
        let (q, k) = gated_delta::ops::normalize_qk(&q, &k, dk)?;

        let state = match &cache.recurrent {
            Some(st) => st.clone(),
            None => ops::zeros(&[b, hv, dv, dk], Dtype::Float32)?,
        };
        // The reference ops for one token; the prefill form of the options for more.
        let options = GatedDeltaOptions {
            step: StepPath::Ops,
            prefill: self.prefill,
            cpu: self.cpu,
            short_prefill: self.short_prefill,
        };
        let (out, state) = gated_delta::gated_delta_update(
            &q,
            &k,
            &v,
            &a,
            &beta_logits,
            &self.a_log,
            &self.dt_bias,
            &state,
            &options,
        )?;
        cache.recurrent = Some(state);
        cache.offset += s;

        let out = gated_delta::ops::gated_rms_norm(&out, &z, &self.norm, self.eps)?;
        self.out_proj.forward(&out.reshape(&[b, s, hv * dv])?)
    }
}

// ---------------------------------------------------------------------------------------
// Single-token decode: the fused forms of mlx_lm::kernels (same values as `forward`).
// ---------------------------------------------------------------------------------------

impl Prepared {
    /// One token (`x` `[B, hidden]` or `[B, 1, hidden]`), fused: on a GPU the conv, norms,
    /// gates and delta step as one kernel; on the CPU the conv, norms and gates as one
    /// compiled graph and the step as compiled ops; the gated output norm compiled.
    pub(crate) fn decode(&self, x: &Array, cache: &mut RecurrentCache) -> Result<Array> {
        let (conv_state, state) = self.decode_state(x, cache)?;
        let (out, conv_state, state) = self.decode_step(x, &conv_state, &state)?;
        cache.conv = Some(conv_state);
        cache.recurrent = Some(state);
        cache.offset += 1;
        Ok(out)
    }

    /// The carried conv inputs and recurrent state of `cache`, zeros for a fresh one.
    pub(crate) fn decode_state(&self, x: &Array, cache: &RecurrentCache) -> Result<(Array, Array)> {
        let b = x.dim(0);
        let (hk, hv, dk, dv) = (self.hk, self.hv, self.dk, self.dv);
        let conv_state = match &cache.conv {
            Some(c) => c.clone(),
            None => ops::zeros(&[b, self.kernel - 1, 2 * hk * dk + hv * dv], x.dtype())?,
        };
        let state = match &cache.recurrent {
            Some(st) => st.clone(),
            None => ops::zeros(&[b, hv, dv, dk], Dtype::Float32)?,
        };
        Ok((conv_state, state))
    }

    /// One token as a pure function: `(x, conv_state, state)` → (output, new conv state,
    /// new state). `x` is `[B, 1, hidden]` or, with the length axis dropped, `[B, hidden]`
    /// (the output has the same form).
    pub(crate) fn decode_step(
        &self,
        x: &Array,
        conv_state: &Array,
        state: &Array,
    ) -> Result<(Array, Array, Array)> {
        let proj = self.in_proj.forward_joined(x)?;
        let (out, state, conv_state) = self.delta_normed(&proj, conv_state, state)?;
        Ok((self.out_proj.forward(&out)?, conv_state, state))
    }

    /// The layer's arrays in a fixed order: how a compiled step takes them as inputs.
    pub(crate) fn weights(&self) -> Vec<Array> {
        let mut w = self.in_proj.weights();
        w.extend([
            self.conv_weight.clone(),
            self.a_log.clone(),
            self.dt_bias.clone(),
            self.norm.clone(),
        ]);
        w.extend(self.out_proj.weights());
        w
    }

    /// The same layer with the next arrays of `weights` (order of [`Self::weights`]).
    pub(crate) fn with_weights(
        &self,
        weights: &mut impl Iterator<Item = Array>,
    ) -> Result<Prepared> {
        let in_proj = self.in_proj.with_weights(weights)?;
        let mut next = || {
            weights.next().ok_or_else(|| {
                crate::error::Error::InvalidArgument("too few weights for a DeltaNet layer".into())
            })
        };
        let (conv_weight, a_log, dt_bias, norm) = (next()?, next()?, next()?, next()?);
        Ok(Prepared {
            in_proj,
            conv_weight,
            a_log,
            dt_bias,
            norm,
            out_proj: self.out_proj.with_weights(weights)?,
            ..*self
        })
    }

    /// Feeds what a compiled step depends on besides its inputs' shapes to `h`.
    pub(crate) fn hash_structure(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        (self.hk, self.hv, self.dk, self.dv, self.kernel, self.step).hash(h);
        self.eps.to_bits().hash(h);
        self.in_proj.hash_structure(h);
        self.out_proj.hash_structure(h);
    }
}
