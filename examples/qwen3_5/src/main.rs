//! The `qwen3_5` command: generate, chat, logits, bench.

fn main() {}
