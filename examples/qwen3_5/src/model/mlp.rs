//! The SwiGLU MLP.
