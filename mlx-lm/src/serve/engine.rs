//! The engine: the model's own thread (written next).
