//! The SwiGLU MLP: `down(silu(gate(x)) · up(x))`.

use super::linear::{fixed, Linear, Projections};
use super::silu;
use crate::error::Result;
use crate::options::Plan;
use crate::weights::Weights;
use mlx_lm::kernels::compiled;
use mlx_rs::Array;

/// The feed-forward block of every decoder layer.
pub struct Mlp {
    /// `gate_proj` and `up_proj`, one matmul when their weights join.
    gate_up: Projections,
    down_proj: Linear,
}

impl Mlp {
    /// Takes `prefix.{gate,up,down}_proj` from the checkpoint, in the device form of
    /// `plan`.
    pub fn load(
        w: &mut Weights,
        prefix: &str,
        hidden: i32,
        intermediate: i32,
        plan: &Plan,
    ) -> Result<Mlp> {
        Ok(Mlp {
            gate_up: Projections::new(
                vec![
                    w.linear(&format!("{prefix}.gate_proj"), intermediate, hidden)?,
                    w.linear(&format!("{prefix}.up_proj"), intermediate, hidden)?,
                ],
                plan.cpu,
            )?,
            down_proj: w
                .linear(&format!("{prefix}.down_proj"), hidden, intermediate)?
                .for_device(plan.cpu)?,
        })
    }

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

    /// The block's arrays in a fixed order: how a compiled step takes them as inputs.
    pub(crate) fn weights(&self) -> Vec<Array> {
        let mut w = self.gate_up.weights();
        w.extend(self.down_proj.weights());
        w
    }

    /// The same block with the next arrays of `weights` (order of [`Self::weights`]).
    pub(crate) fn with_weights(&self, weights: &mut impl Iterator<Item = Array>) -> Result<Mlp> {
        Ok(Mlp {
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
