//! The SwiGLU MLP: `down(silu(gate(x)) · up(x))`.

use super::fused::{self, DecodeMode};
use super::linear::{Linear, Projections};
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
        let single = x.ndim() >= 2 && x.dim(-2)? == 1;
        let parts = self.gate_up.forward(x)?;
        let [gate, up] = parts.as_slice() else {
            return Err(crate::error::Error::InvalidArgument(format!(
                "{} MLP projections, expected 2",
                parts.len()
            )));
        };
        if single && DecodeMode::current().is_fused() {
            return self.down_proj.forward(&fused::swiglu(gate, up)?);
        }
        self.down_proj.forward(&silu(gate)?.multiply(up)?)
    }
}
