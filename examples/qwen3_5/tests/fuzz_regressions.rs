//! Loader inputs that took the process down or ran away with memory, kept as regression
//! tests (found by the bad-input tests and the `qwen_config_weights` fuzz target).

use qwen3_5::Config;
use serde_json::{json, Value};

fn tiny_text_config() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen/mlx-q4-tied/config.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `num_hidden_layers: 2147483647` with `full_attention_interval`: the parser built a
/// 2 GiB layer list, then the model asked for a 784 GiB layer vector (abort:
/// "memory allocation of 841813589624 bytes failed").
#[test]
fn absurd_layer_counts_are_config_errors() {
    let mut c = tiny_text_config();
    c["text_config"]["num_hidden_layers"] = json!(i32::MAX);
    c["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("layer_types");
    let start = std::time::Instant::now();
    let err = Config::from_json(&c).unwrap_err().to_string();
    assert!(
        err.contains("num_hidden_layers") && err.contains("4096"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 2);
    c["text_config"]["num_hidden_layers"] = json!(qwen3_5::config::MAX_LAYERS);
    assert!(
        Config::from_json(&c).is_ok(),
        "the bound itself is accepted"
    );
}

/// Head counts × head widths past `i32::MAX`: `TextConfig::linear_key_dim()` and friends
/// overflowed (a panic in debug builds, wrong shapes in release).
#[test]
fn widths_that_overflow_32_bits_are_config_errors() {
    for (key, value) in [
        ("linear_key_head_dim", 1 << 30),
        ("linear_value_head_dim", 1 << 30),
        ("head_dim", 1 << 30),
    ] {
        let mut c = tiny_text_config();
        c["text_config"][key] = json!(value);
        if key == "head_dim" {
            // keep the rotary fraction valid
            c["text_config"]["rope_parameters"]["partial_rotary_factor"] = json!(0.5);
        }
        let err = Config::from_json(&c).unwrap_err().to_string();
        assert!(err.contains("larger than an MLX dimension"), "{key}: {err}");
    }
    // What parses, derives in range.
    let t = Config::from_json(&tiny_text_config()).unwrap().text;
    assert!(t.linear_conv_dim() > 0);
}
