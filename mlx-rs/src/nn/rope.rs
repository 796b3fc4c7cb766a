//! [`Rope`]: rotary positional encoding as a layer.

use super::module::UnaryModule;
use crate::{fast, Array, Error, Result};

/// Rotary positional encoding (Python's `mlx.nn.RoPE`) through
/// [`fast::rope`]: rotates the first `dims` features of each position of `x` (shape
/// `[B, *, T, D]`, positions along `T`) by angles `position · scale · base^(−2i/dims)`.
/// With `dims < D` the remaining features pass through unchanged.
///
/// Build it with [`Rope::new`] (Python's defaults) and change the public fields for other
/// settings. [`UnaryModule::forward`] encodes positions from 0; [`Rope::forward_at`] from an
/// offset (the length of a key-value cache).
///
/// ```
/// use mlx_rs::nn::{Rope, UnaryModule};
/// use mlx_rs::{ops, Dtype};
/// let rope = Rope { traditional: true, base: 500.0, ..Rope::new(4)? };
/// let x = ops::ones(&[1, 2, 3, 8], Dtype::Float32)?; // [batch, heads, positions, features]
/// let y = rope.forward(&x)?;
/// assert_eq!(y.shape(), x.shape());
/// // position 0 is not rotated; features past `dims` are never rotated
/// assert_eq!(&y.to_vec::<f32>()?[..8], &[1.0; 8]);
/// // the same positions, counted from 2 (e.g. after 2 cached tokens)
/// assert_eq!(rope.forward_at(&x, 2)?.shape(), &[1, 2, 3, 8]);
/// assert!(Rope::new(3).is_err()); // dims must be even
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, super::Module)]
pub struct Rope {
    /// How many leading features are rotated (even, at most the input's last axis).
    pub dims: i32,
    /// Rotate consecutive pairs of features (`true`) instead of the two halves (`false`,
    /// Python's default).
    pub traditional: bool,
    /// The base of the frequencies (Python's default is `10000`).
    pub base: f32,
    /// Multiplies the positions (Python's default is `1`).
    pub scale: f32,
}

impl Rope {
    /// Rotates `dims` features, with Python's defaults for the rest (not traditional, base
    /// `10000`, scale `1`).
    pub fn new(dims: i32) -> Result<Rope> {
        if dims <= 0 || dims % 2 != 0 {
            return Err(Error::InvalidArgument(format!(
                "Rope: dims must be positive and even, got {dims}"
            )));
        }
        Ok(Rope {
            dims,
            traditional: false,
            base: 10000.0,
            scale: 1.0,
        })
    }

    /// Encodes positions `offset, offset + 1, …` along the second-to-last axis of `x`.
    pub fn forward_at(&self, x: &Array, offset: i32) -> Result<Array> {
        fast::rope(x, self.dims, offset, self.options())
    }

    /// [`Rope::forward_at`] with the offset as an array: a scalar, or one offset per batch
    /// element (shape `[B]`). In compiled functions an `i32` offset is baked into the
    /// trace; an array offset is an input.
    pub fn forward_at_array(&self, x: &Array, offset: &Array) -> Result<Array> {
        fast::rope_dynamic(x, self.dims, offset, self.options())
    }

    fn options(&self) -> fast::RopeOptions<'static> {
        fast::RopeOptions {
            traditional: self.traditional,
            base: Some(self.base),
            scale: self.scale,
            freqs: None,
        }
    }
}

impl UnaryModule for Rope {
    /// Encodes positions from 0.
    fn forward(&self, x: &Array) -> Result<Array> {
        self.forward_at(x, 0)
    }
}
