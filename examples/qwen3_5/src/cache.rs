//! Per-sequence state: KV cache of attention layers, conv and recurrent state of DeltaNet layers.
