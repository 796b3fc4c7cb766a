"""Tiny random Qwen3 checkpoints and reference outputs from mlx-lm 0.32.2.

Writes examples/qwen3/tests/fixtures/<variant>/ (config.json + safetensors) and
<variant>.expected.json (prompt, full-prompt logits, step-wise logits, greedy ids) for the
Rust tests in examples/qwen3/tests/qwen3.rs.

The models are mlx-lm's own qwen3.Model with random bf16 weights. Every folder is loaded
back with mlx-lm's loader (sanitize, quantization from the config, strict update), and the
reference outputs come from that loaded model, so they are what mlx-lm computes for the
folder.

Needs: mlx[cpu]==0.32.2 (or mlx==0.32.2 on macOS) and mlx-lm==0.32.2; runs on CPU:
    PYTHONPATH=$(ls -d target/oracle-python/*-py3*) python3 tests/oracle/gen_qwen3.py
"""
import copy
import json
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

import mlx_lm
from mlx_lm.models import qwen3
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import load_model, quantize_model

assert mlx_lm.__version__ == "0.32.2", f"needs mlx-lm 0.32.2, found {mlx_lm.__version__}"

ROOT = Path(__file__).resolve().parent.parent.parent
OUT = ROOT / "examples" / "qwen3" / "tests" / "fixtures"

VOCAB = 256
PROMPT_LEN = 8
PREFILL = 5  # the step-wise reference feeds PREFILL tokens at once, then one at a time
GREEDY_STEPS = 12
MIN_MARGIN = 0.1  # top-1 minus top-2 logit at every greedy step (so ids are robust)

mx.set_default_device(mx.cpu)


def hf_config(tied, nested_rope=False):
    """A Qwen3ForCausalLM config.json as Hugging Face writes it, tiny."""
    c = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 96,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-6,
        "vocab_size": VOCAB,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "hidden_act": "silu",
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_sliding_window": False,
        "sliding_window": None,
    }
    if nested_rope:  # transformers >= 5
        c["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    else:
        c["rope_theta"] = 1000000.0
        c["rope_scaling"] = None
    return c


def build(seed, config):
    """mlx-lm's qwen3.Model with random bf16 weights (norms near 1, the final one larger
    so that logits spread out)."""
    rng = np.random.default_rng(seed)
    model = qwen3.Model(qwen3.ModelArgs.from_dict(copy.deepcopy(config)))
    new = {}
    for k, v in tree_flatten(model.parameters()):
        shape = v.shape
        if k == "model.norm.weight":
            w = 3.0 + 0.2 * rng.standard_normal(shape)
        elif k.endswith("norm.weight"):
            w = 1.0 + 0.2 * rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / np.sqrt(shape[-1])
        new[k] = mx.array(w, dtype=mx.float32).astype(mx.bfloat16)
    model.update(tree_unflatten(list(new.items())))
    mx.eval(model.parameters())
    return model


def write_folder(name, config, tensors, shards=1):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    with open(d / "config.json", "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    names = sorted(tensors)
    if shards == 1:
        mx.save_safetensors(str(d / "model.safetensors"), tensors, metadata={"format": "pt"})
        return d
    per = (len(names) + shards - 1) // shards
    weight_map = {}
    for i in range(shards):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: tensors[k] for k in names[i * per : (i + 1) * per]}
        mx.save_safetensors(str(d / fname), part, metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    total = sum(v.nbytes for v in tensors.values())
    with open(d / "model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return d


def reference(model):
    """Logits of the whole prompt (no cache), of prefill + single steps (KV cache), and the
    greedy continuation (prefill, then one token at a time)."""
    for attempt in range(200):
        rng = np.random.default_rng(1000 + attempt)
        prompt = [int(x) for x in rng.integers(0, VOCAB, PROMPT_LEN)]
        ids = mx.array(prompt)[None]
        full = model(ids).astype(mx.float32)[0]

        cache = make_prompt_cache(model)
        steps = [model(ids[:, :PREFILL], cache=cache).astype(mx.float32)[0]]
        for t in range(PREFILL, PROMPT_LEN):
            steps.append(model(ids[:, t : t + 1], cache=cache).astype(mx.float32)[0])
        stepwise = mx.concatenate(steps, axis=0)

        cache = make_prompt_cache(model)
        logits = model(ids, cache=cache)[:, -1].astype(mx.float32)[0]
        out, margins = [], []
        for _ in range(GREEDY_STEPS):
            top2 = np.sort(np.array(logits))[-2:]
            margins.append(float(top2[1] - top2[0]))
            tok = int(mx.argmax(logits).item())
            out.append(tok)
            logits = model(mx.array([[tok]]), cache=cache)[:, -1].astype(mx.float32)[0]
        if min(margins) >= MIN_MARGIN:
            return prompt, full, stepwise, out, min(margins)
    raise RuntimeError("no prompt gives robust greedy margins")


def numbers(a):
    """Float32 values, each written with the fewest digits that read back the same."""
    return [float(np.format_float_positional(x, unique=True)) for x in np.array(a, dtype=np.float32).reshape(-1)]


def save_expected(name, folder, note):
    model, _ = load_model(folder)
    prompt, full, stepwise, greedy, margin = reference(model)
    doc = {
        "note": note,
        "prompt": prompt,
        "prefill": PREFILL,
        "logits_full": {"shape": list(full.shape), "data": numbers(full)},
        "logits_stepwise": {"shape": list(stepwise.shape), "data": numbers(stepwise)},
        "greedy": greedy,
        "greedy_min_margin": margin,
    }
    with open(OUT / f"{name}.expected.json", "w") as f:
        json.dump(doc, f, separators=(",", ":"))


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    # 1. Tied, Hugging Face config, one file, with a stray lm_head (sanitize drops it).
    cfg = hf_config(tied=True)
    tied = build(1, cfg)
    w = dict(tree_flatten(tied.parameters()))
    w["lm_head.weight"] = w["model.embed_tokens.weight"]
    d = write_folder("bf16-tied", cfg, w)
    save_expected("bf16-tied", d, "bf16, tied, stray lm_head.weight")

    # 2. Untied, transformers-5 config (rope_parameters), two shards with an index.
    cfg = hf_config(tied=False, nested_rope=True)
    untied = build(2, cfg)
    d = write_folder("bf16-untied", cfg, dict(tree_flatten(untied.parameters())), shards=2)
    save_expected("bf16-untied", d, "bf16, untied, rope_parameters, sharded")

    # 3. Model 1 quantized to 4 bits (group 32), embedding included, as mlx_lm.convert does.
    cfg = hf_config(tied=True)
    q, q_cfg = quantize_model(build(1, cfg), copy.deepcopy(cfg), group_size=32, bits=4)
    d = write_folder("q4-tied", q_cfg, dict(tree_flatten(q.parameters())))
    save_expected("q4-tied", d, "model 1 quantized: 4 bits, group 32")

    # 4. Model 2 quantized, mixed: one projection and the head at 8 bits / group 64
    #    (per-layer entries in the config).
    def predicate(path, module):
        if path.endswith("layers.0.self_attn.o_proj") or path == "lm_head":
            return {"group_size": 64, "bits": 8}
        return True

    cfg = hf_config(tied=False)
    q, q_cfg = quantize_model(build(2, cfg), copy.deepcopy(cfg), group_size=32, bits=4, quant_predicate=predicate)
    d = write_folder("q4-untied-mixed", q_cfg, dict(tree_flatten(q.parameters())))
    save_expected("q4-untied-mixed", d, "model 2 quantized: 4 bits / group 32, two layers 8 bits / group 64")

    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")
    assert total < 1e6, "fixtures must stay under 1 MB"


if __name__ == "__main__":
    main()
