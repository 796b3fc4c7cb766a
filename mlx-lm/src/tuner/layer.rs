//! [`AdaptableLinear`], the field type of a model's linear layers that adapters can wrap,
//! and [`LowRank`], an adapter's update in the form a prepared forward pass runs.

use crate::error::{Error, Result};
use mlx_rs::nn::{self, KeyPath, MaybeQuantized, Module, UnaryModule, Visitor, VisitorMut};
use mlx_rs::Array;

use super::{DoraLinear, LoraLinear};

/// A linear layer of a model that an adapter can wrap: the base layer (dense or
/// quantized) as loaded, or its LoRA or DoRA form. Model authors write
/// `q_proj: AdaptableLinear` where they would write `MaybeQuantized<nn::Linear>`; loading,
/// quantizing and the forward pass work the same, and [`apply_adapter`](super::apply_adapter)
/// and [`fuse`](super::fuse) swap the form in place.
///
/// Parameter names are mlx-lm's: the base's own (`q_proj.weight`) for a plain layer;
/// `q_proj.linear.weight`, `q_proj.lora_a`, `q_proj.lora_b` (and `q_proj.m` for DoRA) for
/// an adapted one.
#[derive(Clone)]
pub enum AdaptableLinear {
    /// The layer as loaded.
    Base(MaybeQuantized<nn::Linear>),
    /// With a LoRA update.
    Lora(LoraLinear),
    /// With a DoRA update.
    Dora(DoraLinear),
}

impl AdaptableLinear {
    /// The base layer (inside the adapter, if any).
    pub fn base(&self) -> &MaybeQuantized<nn::Linear> {
        match self {
            AdaptableLinear::Base(l) => l,
            AdaptableLinear::Lora(l) => &l.linear,
            AdaptableLinear::Dora(l) => &l.linear,
        }
    }

    /// The base layer, mutably (inside the adapter, if any): for changes that keep the
    /// base's shape and values, such as pointing its parameters at another form of the
    /// same arrays.
    pub fn base_mut(&mut self) -> &mut MaybeQuantized<nn::Linear> {
        match self {
            AdaptableLinear::Base(l) => l,
            AdaptableLinear::Lora(l) => &mut l.linear,
            AdaptableLinear::Dora(l) => &mut l.linear,
        }
    }

    /// The layer, mutably, for changes that an adapter would not follow (splitting it
    /// across processes); `what` names the change in the error.
    ///
    /// # Errors
    /// The layer has an adapter (fuse it into the weights first).
    pub fn unadapted_mut(&mut self, what: &str) -> Result<&mut MaybeQuantized<nn::Linear>> {
        match self {
            AdaptableLinear::Base(l) => Ok(l),
            _ => Err(Error::InvalidArgument(format!(
                "{what}: the layer has an adapter (fuse it into the weights first)"
            ))),
        }
    }

    /// Whether the layer has an adapter.
    pub fn is_adapted(&self) -> bool {
        !matches!(self, AdaptableLinear::Base(_))
    }

    /// The adapter's update in the form a prepared forward pass runs ([`LowRank`]), or
    /// `None` for a plain layer. For DoRA the row factor is computed now from the current
    /// parameters (lazily, its norm not differentiated, as in training); the dropout comes
    /// with its training flag.
    pub fn low_rank(&self) -> Result<Option<LowRank>> {
        Ok(match self {
            AdaptableLinear::Base(_) => None,
            AdaptableLinear::Lora(l) => Some(LowRank {
                a: l.lora_a.value().clone(),
                b: l.lora_b.value().clone(),
                scale: l.scale,
                row_scale: None,
                dropout: l.dropout,
            }),
            AdaptableLinear::Dora(l) => Some(LowRank {
                a: l.lora_a.value().clone(),
                b: l.lora_b.value().clone(),
                scale: l.scale,
                row_scale: Some(l.row_scale()?),
                dropout: l.dropout,
            }),
        })
    }

    /// A placeholder used while the layer is being swapped.
    pub(crate) fn placeholder() -> AdaptableLinear {
        let w = nn::Param::new(Array::scalar(0f32));
        AdaptableLinear::Base(MaybeQuantized::Dense(nn::Linear {
            weight: w,
            bias: None,
        }))
    }
}

impl From<MaybeQuantized<nn::Linear>> for AdaptableLinear {
    fn from(layer: MaybeQuantized<nn::Linear>) -> Self {
        AdaptableLinear::Base(layer)
    }
}

impl From<nn::Linear> for AdaptableLinear {
    fn from(layer: nn::Linear) -> Self {
        AdaptableLinear::Base(layer.into())
    }
}

impl Module for AdaptableLinear {
    fn visit(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> mlx_rs::Result<()> {
        match self {
            AdaptableLinear::Base(l) => l.visit(path, visitor),
            AdaptableLinear::Lora(l) => l.visit(path, visitor),
            AdaptableLinear::Dora(l) => l.visit(path, visitor),
        }
    }
    fn visit_mut(
        &mut self,
        path: &mut KeyPath,
        visitor: &mut dyn VisitorMut,
    ) -> mlx_rs::Result<()> {
        visitor.slot(path.as_str(), self)?;
        match self {
            AdaptableLinear::Base(l) => l.visit_mut(path, visitor),
            AdaptableLinear::Lora(l) => l.visit_mut(path, visitor),
            AdaptableLinear::Dora(l) => l.visit_mut(path, visitor),
        }
    }
}

impl UnaryModule for AdaptableLinear {
    fn forward(&self, x: &Array) -> mlx_rs::Result<Array> {
        match self {
            AdaptableLinear::Base(l) => l.forward(x),
            AdaptableLinear::Lora(l) => l.forward(x),
            AdaptableLinear::Dora(l) => l.forward(x),
        }
    }
}

/// An adapter's update of a bias-free linear layer in the form a prepared forward pass
/// runs beside its own product of the base: `out = (base(x) + scale · (dropout(x) A) B)
/// · r`, with the DoRA row factor `r` (`m / ‖W + scale · Bᵀ Aᵀ‖_row`, the norm not
/// differentiated) computed when the form is built (for LoRA there is none).
#[derive(Clone)]
pub struct LowRank {
    /// `[in, rank]`.
    pub a: Array,
    /// `[rank, out]`.
    pub b: Array,
    /// The factor of the update.
    pub scale: f32,
    /// DoRA's factor per output row, `[out]`.
    pub row_scale: Option<Array>,
    /// Dropout on the update's input (active in training mode only).
    pub dropout: nn::Dropout,
}

impl LowRank {
    /// The adapted output for input `x` from the base layer's output `y` (`x Wᵀ`, no
    /// bias), in `x`'s dtype, as [`LoraLinear`] and [`DoraLinear`] compute it.
    pub fn apply(&self, x: &Array, y: &Array) -> Result<Array> {
        let z = self.dropout.forward(x)?.matmul(&self.a)?.matmul(&self.b)?;
        let out = y.add(&z.multiply_scalar(self.scale)?.astype(x.dtype())?)?;
        Ok(match &self.row_scale {
            Some(r) => r.astype(x.dtype())?.multiply(&out)?,
            None => out,
        })
    }

    /// The arrays the update reads, in a fixed order (`a`, `b`, then the row factor).
    pub fn arrays(&self) -> Vec<Array> {
        let mut v = vec![self.a.clone(), self.b.clone()];
        v.extend(self.row_scale.clone());
        v
    }

    /// The same update with the next arrays of `arrays` (order of [`LowRank::arrays`]).
    pub fn with_arrays(&self, arrays: &mut impl Iterator<Item = Array>) -> Result<LowRank> {
        let mut next = || {
            arrays
                .next()
                .ok_or_else(|| Error::InvalidArgument("too few arrays for an adapter".into()))
        };
        Ok(LowRank {
            a: next()?,
            b: next()?,
            scale: self.scale,
            row_scale: match self.row_scale {
                Some(_) => Some(next()?),
                None => None,
            },
            dropout: self.dropout,
        })
    }

    /// Feeds what a compiled function of this update depends on besides its arrays'
    /// shapes and dtypes (the scale, DoRA or not) to `h`.
    pub fn hash_structure(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        self.scale.to_bits().hash(h);
        self.row_scale.is_some().hash(h);
        (self.dropout.p().to_bits(), self.dropout.training.0).hash(h);
    }
}
