//! The SwiGLU MLP: `down(silu(gate(x)) · up(x))`.

use super::linear::{fixed, placeholder, Linear, Projections};
use super::silu;
use crate::error::Result;
use crate::options::Plan;
use mlx_lm::kernels::{compiled, glue};
use mlx_lm::shard::{shard_mlp, Part};
use mlx_lm::tuner::AdaptableLinear;
use mlx_rs::nn::Module;
use mlx_rs::Array;

/// The feed-forward block of every decoder layer: the checkpoint's `mlp.{gate,up,down}_proj`
/// and, once prepared (`Mlp::prepare`, at load), the forms the forward pass runs with.
#[derive(Clone, Module)]
pub struct Mlp {
    gate_proj: AdaptableLinear,
    up_proj: AdaptableLinear,
    down_proj: AdaptableLinear,
    #[module(skip)]
    prepared: Option<Prepared>,
}

impl Mlp {
    /// The block with placeholder parameters, for `hidden` → `intermediate` → `hidden`.
    pub(crate) fn new(hidden: i32, intermediate: i32) -> Result<Mlp> {
        Ok(Mlp {
            gate_proj: placeholder(intermediate, hidden)?,
            up_proj: placeholder(intermediate, hidden)?,
            down_proj: placeholder(hidden, intermediate)?,
            prepared: None,
        })
    }

    /// Builds the inference forms from the loaded parameters (gate and up joined, each in
    /// its device form for `plan`) and points the parameters at their arrays, so the
    /// weights are held once. `path` names the block in errors.
    pub(crate) fn prepare(&mut self, path: &str, plan: &Plan) -> Result<()> {
        let names = ["gate_proj", "up_proj"].map(|n| format!("{path}.{n}"));
        let mut layers = [&mut self.gate_proj, &mut self.up_proj];
        let gate_up = Projections::prepare_layers(&names, &mut layers, plan.products())?;
        let down_proj = Linear::prepare_layer(
            &format!("{path}.down_proj"),
            &mut self.down_proj,
            plan.products(),
        )?;
        self.prepared = Some(Prepared { gate_up, down_proj });
        Ok(())
    }

    /// Keeps this rank's share of the hidden units (gate and up by rows, down by columns),
    /// before `Mlp::prepare`. `path` names the block in errors.
    pub(crate) fn shard(&mut self, path: &str, part: Part) -> Result<()> {
        shard_mlp(
            self.gate_proj.unadapted_mut(path)?,
            self.up_proj.unadapted_mut(path)?,
            self.down_proj.unadapted_mut(path)?,
            part,
            path,
        )
    }

    /// Points the adapted layers' updates at the current parameters (see
    /// `Linear::refresh_update`).
    pub(crate) fn refresh_adapters(&mut self) -> Result<()> {
        if let Some(p) = &mut self.prepared {
            p.gate_up
                .refresh_updates(&[&self.gate_proj, &self.up_proj])?;
            p.down_proj.refresh_update(&self.down_proj)?;
        }
        Ok(())
    }

    /// The inference forms (an error before `Mlp::prepare`).
    pub(crate) fn prepared(&self) -> Result<&Prepared> {
        self.prepared
            .as_ref()
            .ok_or_else(|| super::not_prepared("mlp"))
    }

    /// Applies the block to `x` (`[.., hidden]`) with the reference ops.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        self.prepared()?.forward(x)
    }
}

/// The block as the forward pass runs it, built by `Mlp::prepare`.
#[derive(Clone)]
pub struct Prepared {
    /// `gate_proj` and `up_proj`, one matmul when their weights join.
    gate_up: Projections,
    down_proj: Linear,
}

impl Prepared {
    /// Applies the block to `x` (`[.., hidden]`) with the reference ops.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let [gate, up] = fixed(self.gate_up.forward(x)?, "MLP")?;
        self.down_proj.forward(&silu(&gate)?.multiply(&up)?)
    }

    /// The block for one token (`[B, hidden]` or `[B, 1, hidden]`), fused: the SwiGLU
    /// compiled.
    pub(crate) fn decode(&self, x: &Array) -> Result<Array> {
        let [gate, up] = fixed(self.gate_up.forward(x)?, "MLP")?;
        self.down_proj.forward(&compiled::swiglu(&gate, &up)?)
    }

    /// [`Prepared::decode`]; with `kernel`, for `[B, hidden]` rows, SwiGLU straight from
    /// the joined gate / up projection in one CUDA launch ([`glue::swiglu`]).
    pub(crate) fn decode_glued(&self, x: &Array, kernel: bool) -> Result<Array> {
        if !kernel || x.ndim() != 2 {
            return self.decode(x);
        }
        let gu = self.gate_up.forward_joined(x)?;
        self.down_proj.forward(&glue::swiglu(&gu)?)
    }

    /// The block's arrays in a fixed order: how a compiled step takes them as inputs.
    pub(crate) fn weights(&self) -> Vec<Array> {
        let mut w = self.gate_up.weights();
        w.extend(self.down_proj.weights());
        w
    }

    /// The same block with the next arrays of `weights` (order of [`Self::weights`]).
    pub(crate) fn with_weights(
        &self,
        weights: &mut impl Iterator<Item = Array>,
    ) -> Result<Prepared> {
        Ok(Prepared {
            gate_up: self.gate_up.with_weights(weights)?,
            down_proj: self.down_proj.with_weights(weights)?,
        })
    }

    /// Feeds the block's structure to `h`.
    pub(crate) fn hash_structure(&self, h: &mut impl std::hash::Hasher) {
        self.gate_up.hash_structure(h);
        self.down_proj.hash_structure(h);
    }
}
