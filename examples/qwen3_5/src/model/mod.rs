//! The Qwen 3.5 text model: embedding, decoder layers, final norm and tied/untied head.
