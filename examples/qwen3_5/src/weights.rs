//! Loading checkpoints: single or sharded safetensors, both key layouts, quantized tensors; strict checks.
