//! Per-sequence state: the KV cache of attention layers and the conv and recurrent state
//! of DeltaNet layers (`mlx-lm`'s caches).

pub use mlx_lm::cache::{Cache, KvCache, LayerCache, Positions, RecurrentCache, Snapshot};
