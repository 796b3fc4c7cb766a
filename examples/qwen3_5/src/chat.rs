//! The chat template from `tokenizer_config.json`, rendered with minijinja.
