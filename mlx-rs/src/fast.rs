//! Fused kernels: rms_norm, layer_norm, rope, scaled dot-product attention, and custom CUDA / Metal kernels.
