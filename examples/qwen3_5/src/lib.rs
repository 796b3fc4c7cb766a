//! Qwen 3.5 (text) inference on MLX from Rust.
//!
//! Load a model folder (or a Hugging Face model id), then generate a stream of tokens.
#![deny(missing_docs)]

pub mod cache;
pub mod chat;
pub mod config;
pub mod error;
pub mod generate;
pub mod hub;
pub mod model;
pub mod sampling;
pub mod tokenizer;
pub mod weights;
