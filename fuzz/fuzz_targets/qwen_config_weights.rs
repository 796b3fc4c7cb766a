//! The Qwen 3.5 config parser (`Config::from_json` on fuzzed JSON bytes) and the weight
//! loader (`qwen3_5::load` on a folder holding that config and a fuzzed
//! `model.safetensors`), then one forward step of what loads. Errors are fine; panics,
//! crashes and runaway allocations are bugs.
//!
//! Input: a little-endian u16 length, that many bytes of `config.json`, then the bytes
//! of `model.safetensors`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlx_fuzz::{scratch, split_u16};
use mlx_rs::Array;
use qwen3_5::Config;

fuzz_target!(|data: &[u8]| {
    let (config, weights) = split_u16(data);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(config) else {
        return;
    };
    let Ok(parsed) = Config::from_json(&value) else {
        return;
    };
    // What parses must be usable: the derived sizes the model uses are positive.
    let t = &parsed.text;
    assert!(t.rope_dims() > 0 && t.rope_dims() <= t.head_dim);
    assert!(t.linear_key_dim() > 0 && t.linear_value_dim() > 0 && t.linear_conv_dim() > 0);
    assert_eq!(t.layer_types.len(), t.num_hidden_layers as usize);

    let dir = scratch("model");
    std::fs::create_dir_all(&dir).expect("scratch model folder");
    std::fs::write(dir.join("config.json"), config).expect("write config");
    std::fs::write(dir.join("model.safetensors"), weights).expect("write weights");
    let Ok(model) = qwen3_5::load(&dir) else {
        return;
    };
    assert_eq!(model.config(), &parsed);
    let tokens = Array::from_slice(&[0u32], &[1, 1]).expect("token array");
    let mut cache = model.new_cache();
    if let Ok(logits) = model.forward(&tokens, &mut cache) {
        if logits.eval().is_ok() {
            assert_eq!(logits.shape(), &[1, 1, t.vocab_size]);
        }
    }
});
