//! The model configuration read from `config.json` (with `text_config`).
