//! Gated full attention layers (q/k norms, partial RoPE, GQA, output gate).
