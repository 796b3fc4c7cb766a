//! Loading and saving arrays: safetensors (files and in memory, with metadata), gguf, and `.npy`.
