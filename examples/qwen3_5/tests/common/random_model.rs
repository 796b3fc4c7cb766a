//! A random-weight Qwen 3.5 model written to a temporary folder.

use mlx_rs::{random, Array, Dtype};
use std::path::PathBuf;

/// Writes a random-weight model (three DeltaNet layers then one attention layer) whose
/// DeltaNet heads fit the GPU kernels (Dk = 32, two value heads per key head), its float
/// weights (all but `A_log`) in `bf`, into a fresh temporary folder named after `tag`.
pub fn random_model(tag: &str, bf: Dtype) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3_5-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (hidden, inter, vocab) = (64, 96, 128);
    let (hk, hv, dk, dv, heads, kv, head_dim) = (1, 2, 32, 32, 2, 1, 32);
    let types = [
        "linear_attention",
        "linear_attention",
        "linear_attention",
        "full_attention",
    ];
    let config = serde_json::json!({
        "model_type": "qwen3_5",
        "text_config": {
            "attention_bias": false, "attn_output_gate": true, "full_attention_interval": 4,
            "head_dim": head_dim, "hidden_size": hidden, "intermediate_size": inter,
            "layer_types": types, "linear_conv_kernel_dim": 4, "linear_key_head_dim": dk,
            "linear_num_key_heads": hk, "linear_num_value_heads": hv, "linear_value_head_dim": dv,
            "max_position_embeddings": 4096, "model_type": "qwen3_5_text",
            "num_attention_heads": heads, "num_hidden_layers": types.len(),
            "num_key_value_heads": kv, "rms_norm_eps": 1e-6,
            "rope_parameters": {"mrope_interleaved": true, "mrope_section": [2, 1, 1],
                "partial_rotary_factor": 0.25, "rope_theta": 10000.0, "rope_type": "default"},
            "tie_word_embeddings": true, "vocab_size": vocab
        }
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut seed = 0u64;
    let mut w: Vec<(String, Array)> = Vec::new();
    let mut put = |name: String, shape: &[i32], loc: f32, scale: f32, dtype: Dtype| {
        seed += 1;
        let a = random::normal(
            shape,
            Dtype::Float32,
            loc,
            scale,
            Some(&random::key(seed).unwrap()),
        )
        .unwrap()
        .astype(dtype)
        .unwrap();
        w.push((name, a));
    };
    let p = "language_model.model.";
    let lin = |o: i32, i: i32| (vec![o, i], (i as f32).powf(-0.5));
    put(
        format!("{p}embed_tokens.weight"),
        &[vocab, hidden],
        0.0,
        0.5,
        bf,
    );
    put(format!("{p}norm.weight"), &[hidden], 1.0, 0.1, bf);
    for (i, t) in types.iter().enumerate() {
        let l = format!("{p}layers.{i}.");
        put(
            format!("{l}input_layernorm.weight"),
            &[hidden],
            1.0,
            0.1,
            bf,
        );
        put(
            format!("{l}post_attention_layernorm.weight"),
            &[hidden],
            1.0,
            0.1,
            bf,
        );
        for (name, (shape, sc)) in [
            ("mlp.gate_proj", lin(inter, hidden)),
            ("mlp.up_proj", lin(inter, hidden)),
            ("mlp.down_proj", lin(hidden, inter)),
        ] {
            put(format!("{l}{name}.weight"), &shape, 0.0, sc, bf);
        }
        if *t == "linear_attention" {
            let a = format!("{l}linear_attn.");
            let conv = 2 * hk * dk + hv * dv;
            for (name, (shape, sc)) in [
                ("in_proj_qkv", lin(conv, hidden)),
                ("in_proj_z", lin(hv * dv, hidden)),
                ("in_proj_b", lin(hv, hidden)),
                ("in_proj_a", lin(hv, hidden)),
                ("out_proj", lin(hidden, hv * dv)),
            ] {
                put(format!("{a}{name}.weight"), &shape, 0.0, sc, bf);
            }
            put(format!("{a}conv1d.weight"), &[conv, 4, 1], 0.0, 0.5, bf);
            put(format!("{a}A_log"), &[hv], 1.0, 0.5, Dtype::Float32);
            put(format!("{a}dt_bias"), &[hv], 1.0, 0.2, bf);
            put(format!("{a}norm.weight"), &[dv], 1.0, 0.1, bf);
        } else {
            let s = format!("{l}self_attn.");
            for (name, (shape, sc)) in [
                ("q_proj", lin(heads * head_dim * 2, hidden)),
                ("k_proj", lin(kv * head_dim, hidden)),
                ("v_proj", lin(kv * head_dim, hidden)),
                ("o_proj", lin(hidden, heads * head_dim)),
            ] {
                put(format!("{s}{name}.weight"), &shape, 0.0, sc, bf);
            }
            put(format!("{s}q_norm.weight"), &[head_dim], 1.0, 0.1, bf);
            put(format!("{s}k_norm.weight"), &[head_dim], 1.0, 0.1, bf);
        }
    }
    mlx_rs::io::save_safetensors(dir.join("model.safetensors"), w, [("format", "mlx")]).unwrap();
    dir
}
