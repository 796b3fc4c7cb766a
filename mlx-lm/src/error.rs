//! The error type of this crate.

use crate::chat::ChatError;
use crate::hub::HubError;
use crate::tokenizer::TokenizerError;
use std::path::PathBuf;

/// Everything that can go wrong in this crate.
///
/// The modules that stand alone ([`tokenizer`](crate::tokenizer), [`chat`](crate::chat),
/// [`hub`](crate::hub)) return their own error types; each converts into this one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// MLX rejected an operation (or an array could not be built).
    #[error(transparent)]
    Mlx(mlx_rs::Error),
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
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// `config.json` lacks a field, has an invalid value, or describes a model the crate
    /// does not run. The message names the field.
    #[error("config: {0}")]
    Config(String),
    /// The checkpoint does not match the configuration: a missing, unexpected or
    /// mis-shaped tensor, a bad dtype, an unreadable safetensors file. The message names
    /// the tensor (or file).
    #[error("weights: {0}")]
    Weights(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<mlx_rs::Error> for Error {
    /// An error of this crate that went through MLX (returned inside a closure that a
    /// transform called) comes back as itself; any other MLX error becomes [`Error::Mlx`].
    fn from(e: mlx_rs::Error) -> Self {
        e.downcast_external().unwrap_or_else(Error::Mlx)
    }
}

impl From<Error> for mlx_rs::Error {
    /// Lets closures passed to MLX's transforms (which return `mlx_rs::Result`) use `?` on
    /// this crate's results.
    fn from(e: Error) -> Self {
        match e {
            Error::Mlx(e) => e,
            other => mlx_rs::Error::external(other),
        }
    }
}

/// The message a panic carried (`panic!("…")` payloads are `&str` or `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
