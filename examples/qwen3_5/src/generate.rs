//! Streaming generation: prefill, pipelined decode, stop tokens, statistics.
