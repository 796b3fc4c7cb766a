//! Gated DeltaNet layers (causal conv1d, gated delta rule).
