//! The tokenizer (`tokenizer.json`) and streaming detokenization that never splits UTF-8.
