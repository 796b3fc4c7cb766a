//! Quantization and quantized / gathered matrix products.
