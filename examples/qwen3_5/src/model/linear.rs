//! Linear and embedding layers, dense or MLX-quantized.
