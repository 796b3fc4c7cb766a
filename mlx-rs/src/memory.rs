//! Memory accounting and limits of MLX's allocator.
