//! `serve`: an OpenAI-compatible HTTP server over a [`LanguageModel`](crate::LanguageModel),
//! with continuous batching and a prefix cache that works for hybrid (recurrent +
//! attention) models.
//!
//! - [`protocol`]: what the HTTP side and the engine say to each other;
//! - [`engine`]: the model's thread: one batched forward per step over every active
//!   sequence, newcomers prefilled in chunks between steps, finished or cancelled ones
//!   leaving at once;
//! - [`prefix`]: the prefix cache (states saved at request boundaries, LRU by bytes).

pub mod engine;
pub mod prefix;
pub mod protocol;
