//! The HTTP side of `mlx_lm::serve` over real HTTP, with a stand-in engine: a thread that
//! reads the submissions and answers canned tokens of a tiny byte-level tokenizer.
//!
//! - `chat`: chat and text completions, whole and streamed: content, reasoning, tool calls
//!   (both formats), stop strings, usage, log-probabilities;
//! - `errors`: every bad input answered in OpenAI's error shape (the server still answers
//!   afterwards), queue full, not ready, a client that disconnects mid-stream.

mod chat;
mod common;
mod errors;
#[path = "../lm/tiny_tokenizer.rs"]
#[allow(dead_code)]
mod tiny_tokenizer;
