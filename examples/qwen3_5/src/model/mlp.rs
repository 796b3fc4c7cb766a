//! The SwiGLU MLP: `down(silu(gate(x)) · up(x))`.

use super::fused::{self, DecodeMode};
use super::linear::Linear;
use super::silu;
use crate::error::Result;
use crate::weights::Weights;
use mlx_rs::Array;

/// The feed-forward block of every decoder layer.
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    /// Takes `prefix.{gate,up,down}_proj` from the checkpoint.
    pub fn load(w: &mut Weights, prefix: &str, hidden: i32, intermediate: i32) -> Result<Mlp> {
        Ok(Mlp {
            gate_proj: w.linear(&format!("{prefix}.gate_proj"), intermediate, hidden)?,
            up_proj: w.linear(&format!("{prefix}.up_proj"), intermediate, hidden)?,
            down_proj: w.linear(&format!("{prefix}.down_proj"), hidden, intermediate)?,
        })
    }

    /// Applies the block to `x` (`[.., hidden]`). A single token (`[.., 1, hidden]`) takes
    /// the compiled SwiGLU in the fused decode mode.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let single = x.ndim() >= 2 && x.dim(-2)? == 1;
        if single && DecodeMode::current().is_fused() {
            let gate = self.gate_proj.forward(x)?;
            let up = self.up_proj.forward(x)?;
            return self.down_proj.forward(&fused::swiglu(&gate, &up)?);
        }
        let gate = silu(&self.gate_proj.forward(x)?)?;
        let up = self.up_proj.forward(x)?;
        self.down_proj.forward(&gate.multiply(&up)?)
    }
}
