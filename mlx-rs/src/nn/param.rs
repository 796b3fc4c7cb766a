//! [`Param`], a trainable (or frozen) array, and [`KeyPath`], the dotted name of a place in
//! a module tree.

use crate::Array;
use std::fmt;
use std::ops::Deref;

/// A parameter of a module: an array plus whether it is frozen (left out of
/// [`Module::trainable_parameters`](super::Module::trainable_parameters) and so out of
/// gradients and optimizer updates).
///
/// `Param` dereferences to [`Array`], so layer code reads `x.matmul(&self.weight)`.
/// Replace the value with [`Param::set`] (or through
/// [`Module::update`](super::Module::update)); freezing is kept across replacements.
///
/// ```
/// use mlx_rs::{nn::Param, Array};
/// let mut w = Param::new(Array::from_slice(&[1.0f32, 2.0], &[2])?);
/// assert_eq!(w.shape(), &[2]);
/// w.set(w.multiply(&Array::scalar(2.0f32))?);
/// assert_eq!(w.to_vec::<f32>()?, vec![2.0, 4.0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Clone)]
pub struct Param {
    value: Array,
    frozen: bool,
}

impl Param {
    /// A trainable parameter holding `value`.
    pub fn new(value: Array) -> Param {
        Param {
            value,
            frozen: false,
        }
    }

    /// The current value.
    pub fn value(&self) -> &Array {
        &self.value
    }

    /// Replaces the value (the frozen state stays).
    pub fn set(&mut self, value: Array) {
        self.value = value;
    }

    /// Whether the parameter is frozen (not trained).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Freezes (`true`) or unfreezes (`false`) the parameter.
    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }
}

impl From<Array> for Param {
    fn from(value: Array) -> Param {
        Param::new(value)
    }
}

impl Deref for Param {
    type Target = Array;
    fn deref(&self) -> &Array {
        &self.value
    }
}

impl AsRef<Array> for Param {
    fn as_ref(&self) -> &Array {
        &self.value
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Param({:?}, {:?}{})",
            self.value.shape(),
            self.value.dtype(),
            if self.frozen { ", frozen" } else { "" }
        )
    }
}

/// The dotted name of the place a walk over a module tree has reached
/// (`layers.3.mlp.up_proj`): a string with a stack of segment boundaries.
#[derive(Debug, Clone, Default)]
pub struct KeyPath {
    buf: String,
    marks: Vec<usize>,
}

impl KeyPath {
    /// The empty path (the root module).
    pub fn new() -> KeyPath {
        KeyPath::default()
    }

    /// A path that starts at `prefix` (dotted), e.g. to walk a sub-module under its name.
    pub fn with_prefix(prefix: &str) -> KeyPath {
        KeyPath {
            buf: prefix.to_string(),
            marks: Vec::new(),
        }
    }

    /// Enters the child named `segment` (a field name or a list index).
    pub fn push(&mut self, segment: impl fmt::Display) {
        use fmt::Write;
        self.marks.push(self.buf.len());
        if !self.buf.is_empty() {
            self.buf.push('.');
        }
        let _ = write!(self.buf, "{segment}");
    }

    /// Leaves the child entered last.
    pub fn pop(&mut self) {
        if let Some(len) = self.marks.pop() {
            self.buf.truncate(len);
        }
    }

    /// The dotted path.
    pub fn as_str(&self) -> &str {
        &self.buf
    }
}

/// Whether dotted `key` is `prefix` or lies under it (whole segments: `layers.1` holds
/// `layers.1.w` but not `layers.10.w`); the empty prefix holds everything.
pub(crate) fn under(key: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || key == prefix
        || (key.starts_with(prefix) && key.as_bytes().get(prefix.len()) == Some(&b'.'))
}
