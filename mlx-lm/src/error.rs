//! The error type of this crate.

use crate::chat::ChatError;
use crate::hub::HubError;
use crate::tokenizer::TokenizerError;

/// Everything that can go wrong in this crate.
///
/// The modules that stand alone ([`tokenizer`](crate::tokenizer), [`chat`](crate::chat),
/// [`hub`](crate::hub)) return their own error types; each converts into this one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// MLX rejected an operation (or an array could not be built).
    #[error(transparent)]
    Mlx(#[from] mlx_rs::Error),
    /// An argument that cannot be valid (bad sampling parameters, a token id out of the
    /// vocabulary, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The tokenizer could not be loaded, or text could not be encoded/decoded.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The chat template could not be loaded or rendered.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// A model could not be found or downloaded.
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
