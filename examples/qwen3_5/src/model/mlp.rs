//! The SwiGLU MLP: `down(silu(gate(x)) · up(x))`.

use super::fused::{self, DecodeMode};
use super::linear::{fixed, Linear, Projections};
use super::silu;
use crate::error::Result;
use crate::weights::Weights;
use mlx_rs::Array;

/// The feed-forward block of every decoder layer.
pub struct Mlp {
    /// `gate_proj` and `up_proj`, one matmul when their weights join.
    gate_up: Projections,
    down_proj: Linear,
}

impl Mlp {
    /// Takes `prefix.{gate,up,down}_proj` from the checkpoint.
    pub fn load(w: &mut Weights, prefix: &str, hidden: i32, intermediate: i32) -> Result<Mlp> {
        Ok(Mlp {
            gate_up: Projections::new(vec![
                w.linear(&format!("{prefix}.gate_proj"), intermediate, hidden)?,
                w.linear(&format!("{prefix}.up_proj"), intermediate, hidden)?,
            ])?,
            down_proj: w
                .linear(&format!("{prefix}.down_proj"), hidden, intermediate)?
                .for_current_device()?,
        })
    }

    /// Applies the block to `x` (`[.., hidden]`). A single token (`[.., 1, hidden]`) takes
    /// the compiled SwiGLU in the fused decode mode.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        // A single token: `[.., 1, hidden]`, or `[B, hidden]` (decode without the length axis).
        let single = x.ndim() == 2 || (x.ndim() > 2 && x.dim(-2)? == 1);
        let [gate, up] = fixed(self.gate_up.forward(x)?, "MLP")?;
        if single && DecodeMode::current().is_fused() {
            return self.down_proj.forward(&fused::swiglu(&gate, &up)?);
        }
        self.down_proj.forward(&silu(&gate)?.multiply(&up)?)
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
