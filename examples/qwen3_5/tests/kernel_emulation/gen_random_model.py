#!/usr/bin/env python3
"""Writes a random-weight Qwen 3.5 text checkpoint (MLX layout, bf16) for decode timing,
e.g. the `decode_speed` test of tests/fused.rs (qwen3_5) on a machine without the real weights.

Usage: python3 gen_random_model.py OUT_DIR [--shape 2b|mid|small]
  2b:    the real Qwen3.5-2B text shapes (24 layers, hidden 2048, 16/16 DeltaNet heads of
         128, vocab 248320; ~3.8 GB)
  mid:   8 layers, hidden 1024, 8/8 heads of 128, vocab 8192 (~250 MB)
  small: 8 layers, hidden 256, 4/8 heads of 64 (Hv > Hk), vocab 4096 (~19 MB)
Needs Python MLX.
"""
import argparse
import json
import os
import mlx.core as mx

def make(out, hidden, layers, inter, hk, hv, dk, dv, heads, kv, head_dim, vocab, dtype=mx.bfloat16, seed=0):
    mx.random.seed(seed)
    os.makedirs(out, exist_ok=True)
    types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)]
    cfg = {"model_type": "qwen3_5", "text_config": {
        "attention_bias": False, "attn_output_gate": True, "full_attention_interval": 4,
        "head_dim": head_dim, "hidden_size": hidden, "intermediate_size": inter, "layer_types": types,
        "linear_conv_kernel_dim": 4, "linear_key_head_dim": dk, "linear_num_key_heads": hk,
        "linear_num_value_heads": hv, "linear_value_head_dim": dv, "max_position_embeddings": 4096,
        "model_type": "qwen3_5_text", "num_attention_heads": heads, "num_hidden_layers": layers,
        "num_key_value_heads": kv, "rms_norm_eps": 1e-6,
        "rope_parameters": {"mrope_interleaved": True, "mrope_section": [11, 11, 10],
                            "partial_rotary_factor": 0.25, "rope_theta": 1e7, "rope_type": "default"},
        "tie_word_embeddings": True, "vocab_size": vocab}}
    json.dump(cfg, open(f"{out}/config.json", "w"), indent=1)
    w = {}
    def lin(name, o, i):
        w[name + ".weight"] = (mx.random.normal((o, i)) * (i ** -0.5)).astype(dtype)
    p = "language_model.model."
    w[p + "embed_tokens.weight"] = (mx.random.normal((vocab, hidden)) * 0.5).astype(dtype)
    w[p + "norm.weight"] = (1 + 0.1 * mx.random.normal((hidden,))).astype(dtype)
    for i, t in enumerate(types):
        l = f"{p}layers.{i}."
        w[l + "input_layernorm.weight"] = (1 + 0.1 * mx.random.normal((hidden,))).astype(dtype)
        w[l + "post_attention_layernorm.weight"] = (1 + 0.1 * mx.random.normal((hidden,))).astype(dtype)
        lin(l + "mlp.gate_proj", inter, hidden); lin(l + "mlp.up_proj", inter, hidden); lin(l + "mlp.down_proj", hidden, inter)
        if t == "linear_attention":
            a = l + "linear_attn."
            conv = 2 * hk * dk + hv * dv
            lin(a + "in_proj_qkv", conv, hidden); lin(a + "in_proj_z", hv * dv, hidden)
            lin(a + "in_proj_b", hv, hidden); lin(a + "in_proj_a", hv, hidden)
            w[a + "conv1d.weight"] = (mx.random.normal((conv, 4, 1)) * 0.5).astype(dtype)
            w[a + "A_log"] = mx.log(mx.random.uniform(1, 16, (hv,))).astype(mx.float32)
            w[a + "dt_bias"] = mx.ones((hv,)).astype(dtype)
            w[a + "norm.weight"] = (1 + 0.1 * mx.random.normal((dv,))).astype(dtype)
            lin(a + "out_proj", hidden, hv * dv)
        else:
            s = l + "self_attn."
            lin(s + "q_proj", heads * head_dim * 2, hidden); lin(s + "k_proj", kv * head_dim, hidden)
            lin(s + "v_proj", kv * head_dim, hidden); lin(s + "o_proj", hidden, heads * head_dim)
            w[s + "q_norm.weight"] = (1 + 0.1 * mx.random.normal((head_dim,))).astype(dtype)
            w[s + "k_norm.weight"] = (1 + 0.1 * mx.random.normal((head_dim,))).astype(dtype)
    mx.save_safetensors(f"{out}/model.safetensors", w, metadata={"format": "mlx"})

SHAPES = {
    "2b": dict(hidden=2048, layers=24, inter=6144, hk=16, hv=16, dk=128, dv=128, heads=8, kv=2,
               head_dim=256, vocab=248320),
    "mid": dict(hidden=1024, layers=8, inter=3072, hk=8, hv=8, dk=128, dv=128, heads=8, kv=2,
                head_dim=128, vocab=8192),
    "small": dict(hidden=256, layers=8, inter=768, hk=4, hv=8, dk=64, dv=64, heads=4, kv=2,
                  head_dim=64, vocab=4096),
}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", default="small", choices=sorted(SHAPES))
    args = ap.parse_args()
    make(args.out, **SHAPES[args.shape])
    print(f"wrote {args.out}")
