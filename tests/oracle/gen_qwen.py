"""Tiny random Qwen 3.5 checkpoints and reference outputs from mlx-lm 0.32.2.

Writes examples/qwen3_5/tests/fixtures/qwen/<variant>/ (config.json + safetensors, in the
layout the variant tests) and <variant>.expected.json (prompt, logits, greedy ids) for
the Rust tests in examples/qwen3_5/tests/, and mlx-lm/tests/fixtures/sampling.expected.json
(mlx-lm's filters, penalties and seeded draws) for the sampler's tests in mlx-lm/tests/.

The models are built with mlx-lm's own qwen3_5 model class (so the forward pass is the
reference one), with random weights; the Hugging Face layout variants are written by
undoing mlx-lm's conversion (norms zero-centred, conv weights [C, 1, K], HF key names)
and are checked by loading them back through mlx-lm's loader, which must reproduce the
original model's logits exactly.

Needs: mlx[cpu]==0.32.2 (or mlx==0.32.2 on macOS) and mlx-lm==0.32.2; runs on CPU.
"""
import copy
import json
import os
import shutil
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

import mlx_lm
from mlx_lm.models import qwen3_5
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, make_logits_processors
from mlx_lm.utils import load_model, quantize_model

assert mlx_lm.__version__ == "0.32.2", f"needs mlx-lm 0.32.2, found {mlx_lm.__version__}"

ROOT = Path(__file__).resolve().parent.parent.parent
OUT = ROOT / "examples" / "qwen3_5" / "tests" / "fixtures" / "qwen"
# The sampler lives in the mlx-lm crate, and so do its fixtures.
SAMPLING_OUT = ROOT / "mlx-lm" / "tests" / "fixtures"

# Ids >= REAL_VOCAB are "padding" rows (as 248077..248319 are in Qwen 3.5): the tied
# variant gives them large logits so that greedy decoding picks them unless masked.
VOCAB = 256
REAL_VOCAB = 250
PROMPT_LEN = 11
PREFILL = 6  # the step-wise reference feeds the first PREFILL tokens at once, then one by one
GREEDY_STEPS = 20
MIN_MARGIN = 0.1  # top-1 minus top-2 logit at every greedy step (so ids are robust)

mx.set_default_device(mx.cpu)


def text_config(hv, tied):
    return {
        "model_type": "qwen3_5_text",
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": hv,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 16,
        "linear_conv_kernel_dim": 4,
        "vocab_size": VOCAB,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": tied,
        "full_attention_interval": 4,
        "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        "max_position_embeddings": 4096,
        "attention_bias": False,
        "attn_output_gate": True,
        "eos_token_id": 7,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
        },
    }


def build(seed, hv, tied):
    """A random bf16 model (A_log kept in fp32, as mlx-lm keeps it)."""
    mx.random.seed(seed)
    rng = np.random.default_rng(seed)
    tc = text_config(hv, tied)
    config = {"model_type": "qwen3_5", "text_config": tc}
    model = qwen3_5.Model(qwen3_5.ModelArgs.from_dict(copy.deepcopy(config)))
    params = dict(tree_flatten(model.parameters()))
    new = {}
    for k, v in params.items():
        shape = v.shape
        if k.endswith("norm.weight") and "linear_attn" not in k:
            # (1 + w) norms, stored shifted in the MLX layout; the final norm is made large
            # so logits spread out.
            # Values on a grid where bf16 holds both w and w - 1 exactly (so the Hugging
            # Face variants, stored as w - 1, round-trip).
            if k == "language_model.model.norm.weight":
                w = np.clip(np.round((3.0 + 0.2 * rng.standard_normal(shape)) * 64) / 64, 2.0, 3.96875)
            else:
                w = np.clip(np.round((1.0 + 0.2 * rng.standard_normal(shape)) * 128) / 128, 0.5, 1.984375)
            v = mx.array(w, dtype=mx.float32)
        elif k.endswith("linear_attn.norm.weight"):
            v = mx.array(1.0 + 0.2 * rng.standard_normal(shape), dtype=mx.float32)
        elif k.endswith("conv1d.weight"):
            v = mx.array(rng.uniform(-0.5, 0.5, shape), dtype=mx.float32)
        elif k.endswith("dt_bias"):
            v = mx.array(0.5 * rng.standard_normal(shape), dtype=mx.float32)
        elif k.endswith("A_log"):
            v = mx.array(np.log(rng.uniform(1.0, 16.0, shape)), dtype=mx.float32)
        elif k.endswith("embed_tokens.weight"):
            e = rng.standard_normal(shape) / np.sqrt(shape[1])
            if tied:
                e[REAL_VOCAB:] *= 8.0
            v = mx.array(e, dtype=mx.float32)
        if not k.endswith("A_log"):
            v = v.astype(mx.bfloat16)
        new[k] = v
    model.update(tree_unflatten(list(new.items())))
    mx.eval(model.parameters())
    return model, config


def weights_of(model):
    return dict(tree_flatten(model.parameters()))


def reference(model):
    """Logits of the whole prompt, of prefill + single steps, and greedy continuations."""
    for attempt in range(200):
        rng = np.random.default_rng(1000 + attempt)
        prompt = [int(x) for x in rng.integers(0, REAL_VOCAB, PROMPT_LEN)]
        ids = mx.array(prompt)[None]
        full = model(ids).astype(mx.float32)[0]

        cache = model.make_cache()
        steps = [model(ids[:, :PREFILL], cache=cache).astype(mx.float32)[0]]
        for t in range(PREFILL, PROMPT_LEN):
            steps.append(model(ids[:, t : t + 1], cache=cache).astype(mx.float32)[0])
        stepwise = mx.concatenate(steps, axis=0)

        greedy = {}
        ok = True
        for masked in (False, True):
            cache = model.make_cache()
            logits = model(ids, cache=cache)[:, -1].astype(mx.float32)[0]
            out, gen_logits, margins = [], [], []
            for _ in range(GREEDY_STEPS):
                l = logits[:REAL_VOCAB] if masked else logits
                top2 = np.sort(np.array(l))[-2:]
                margins.append(float(top2[1] - top2[0]))
                tok = int(mx.argmax(l).item())
                out.append(tok)
                gen_logits.append(logits)
                logits = model(mx.array([[tok]]), cache=cache)[:, -1].astype(mx.float32)[0]
            if min(margins) < MIN_MARGIN:
                ok = False
                break
            greedy["masked" if masked else "unmasked"] = (out, mx.stack(gen_logits), min(margins))
        if ok:
            return prompt, full, stepwise, greedy
    raise RuntimeError("no prompt gives robust greedy margins")


def flat(a):
    return [float(x) for x in np.array(a, dtype=np.float32).reshape(-1)]


def save_expected(name, prompt, full, stepwise, greedy, note):
    ids_u, logits_u, margin_u = greedy["unmasked"]
    ids_m, _, margin_m = greedy["masked"]
    doc = {
        "note": note,
        "vocab_size": VOCAB,
        "real_vocab_size": REAL_VOCAB,
        "prompt": prompt,
        "prefill": PREFILL,
        "logits_full": {"shape": list(full.shape), "data": flat(full)},
        "logits_stepwise": {"shape": list(stepwise.shape), "data": flat(stepwise)},
        "greedy": ids_u,
        "greedy_logits": {"shape": list(logits_u.shape), "data": flat(logits_u)},
        "greedy_min_margin": margin_u,
        "greedy_masked": ids_m,
        "greedy_masked_min_margin": margin_m,
    }
    with open(OUT / f"{name}.expected.json", "w") as f:
        json.dump(doc, f, separators=(",", ":"))


def write_folder(name, config, tensors, shards=1):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    with open(d / "config.json", "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    names = sorted(tensors)
    if shards == 1:
        mx.save_safetensors(str(d / "model.safetensors"), tensors, metadata={"format": "mlx"})
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


SHIFTED_NORMS = (".input_layernorm.weight", ".post_attention_layernorm.weight", ".q_norm.weight", ".k_norm.weight")


def to_hf(weights, prefix):
    """Undo mlx-lm's conversion: HF key names, zero-centred (1 + w) norms, conv [C, 1, K]."""
    out = {}
    for k, v in weights.items():
        if k == "language_model.lm_head.weight":
            out["lm_head.weight"] = v
            continue
        assert k.startswith("language_model.model."), k
        rest = k[len("language_model.model.") :]
        if rest == "norm.weight" or any(rest.endswith(s) for s in SHIFTED_NORMS):
            v = v - 1.0
            assert mx.array_equal(v + 1.0, weights[k]).item(), f"{k}: shift does not round-trip"
        if rest.endswith("conv1d.weight"):
            v = v.moveaxis(2, 1)  # [C, K, 1] -> [C, 1, K]
        out[prefix + rest] = v
    return out


def check_roundtrip(folder, model, prompt):
    """mlx-lm's loader (sanitize: +1 on norms, conv transpose) must rebuild the model."""
    loaded, _ = load_model(folder)
    ids = mx.array(prompt)[None]
    a, b = model(ids), loaded(ids)
    assert mx.array_equal(a, b).item(), f"{folder}: mlx-lm reload differs"


def sampling_cases():
    """mlx-lm's filters and penalties on fixed logits, and seeded categorical draws."""
    rng = np.random.default_rng(7)
    logits = mx.array(rng.standard_normal((3, 64)) * 2.0, dtype=mx.float32)
    logits_saved = flat(logits)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    filters = []
    for params in [
        {"top_p": 0.9},
        {"top_p": 0.3},
        {"min_p": 0.1},
        {"min_p": 0.5, "min_tokens_to_keep": 3},
        {"top_k": 5},
        {"top_p": 0.8, "min_p": 0.05, "top_k": 10},
    ]:
        lp = logprobs
        if "top_p" in params:
            lp = apply_top_p(lp, params["top_p"])
        if "min_p" in params:
            lp = apply_min_p(lp, params["min_p"], params.get("min_tokens_to_keep", 1))
        if "top_k" in params:
            lp = apply_top_k(lp, params["top_k"])
        kept = np.isfinite(np.array(lp))
        filters.append({"params": params, "kept": kept.astype(int).reshape(-1).tolist()})

    history = [3, 10, 3, 60, 12, 10, 5]
    penalties = []
    for params in [
        {"repetition_penalty": 1.5, "repetition_context_size": 20},
        {"repetition_penalty": 1.3, "repetition_context_size": 3},
        {"presence_penalty": 0.75, "presence_context_size": 20},
        {"repetition_penalty": 1.2, "repetition_context_size": 5, "presence_penalty": 0.5, "presence_context_size": 4},
    ]:
        procs = make_logits_processors(**params)
        out = logits + 0.0  # the processors assign in place: work on a copy
        for proc in procs:
            out = proc(mx.array(history), out)
        penalties.append({"params": params, "logits": flat(out)})

    # Seeded draws: key(seed), then per draw (key, sub) = split(key), categorical with sub.
    draws = {}
    for temp, top_k in [(0.8, 20), (1.5, 0)]:
        key = mx.random.key(11)
        lp = logprobs[:1]
        if top_k:
            lp = apply_top_k(lp, top_k)
        out = []
        for _ in range(40):
            ks = mx.random.split(key)
            key, sub = ks[0], ks[1]
            out.append(int(mx.random.categorical(lp * (1.0 / temp), key=sub).item()))
        draws[f"{temp}/{top_k}"] = out

    doc = {
        "logits": {"shape": list(logits.shape), "data": logits_saved},
        "history": history,
        "filters": filters,
        "penalties": penalties,
        "seed": 11,
        "draws": draws,
    }
    assert flat(logits) == logits_saved, "the logits were modified in place"
    with open(SAMPLING_OUT / "sampling.expected.json", "w") as f:
        json.dump(doc, f, separators=(",", ":"))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()

    # 1. Tied, Hv = Hk, MLX layout, multimodal-style config (text_config), one file.
    tied, tied_cfg = build(seed=1, hv=2, tied=True)
    ref_tied = reference(tied)
    d = write_folder("mlx-bf16-tied", tied_cfg, weights_of(tied))
    check_roundtrip(d, tied, ref_tied[0])
    save_expected("mlx-bf16-tied", *ref_tied, "mlx-lm layout, bf16, tied, Hv = Hk")

    # 2. Untied, Hv > Hk, MLX layout, bare text config, one file.
    untied, untied_cfg = build(seed=2, hv=4, tied=False)
    ref_untied = reference(untied)
    bare = dict(untied_cfg["text_config"], model_type="qwen3_5")
    d = write_folder("mlx-bf16-untied", bare, weights_of(untied))
    check_roundtrip(d, untied, ref_untied[0])
    save_expected("mlx-bf16-untied", *ref_untied, "mlx-lm layout, bf16, untied, Hv = 2 Hk, bare text config")

    # 3. Hugging Face layout of model 2, sharded, with vision and MTP tensors to skip.
    hf = to_hf(weights_of(untied), "model.language_model.")
    hf["model.visual.blocks.0.attn.qkv.weight"] = mx.zeros((6, 4), dtype=mx.bfloat16)
    hf["mtp.fc.weight"] = mx.zeros((4, 8), dtype=mx.bfloat16)
    hf_cfg = copy.deepcopy(untied_cfg)
    hf_cfg["architectures"] = ["Qwen3_5ForConditionalGeneration"]
    hf_cfg["vision_config"] = {"depth": 1, "hidden_size": 4}
    hf_cfg["tie_word_embeddings"] = False
    d = write_folder("hf-bf16-untied", hf_cfg, hf, shards=2)
    check_roundtrip(d, untied, ref_untied[0])
    save_expected("hf-bf16-untied", *ref_untied, "Hugging Face layout (sharded) of mlx-bf16-untied")

    # 4. Hugging Face text-only naming (model.*) of model 1, tied, with a stray lm_head
    #    (ignored, as transformers and mlx-lm do); tie_word_embeddings only at the top.
    hf = to_hf(weights_of(tied), "model.")
    hf["lm_head.weight"] = weights_of(tied)["language_model.model.embed_tokens.weight"]
    hf_cfg = copy.deepcopy(tied_cfg)
    del hf_cfg["text_config"]["tie_word_embeddings"]
    hf_cfg["tie_word_embeddings"] = True
    d = write_folder("hf-bf16-tied", hf_cfg, hf)
    check_roundtrip(d, tied, ref_tied[0])
    save_expected("hf-bf16-tied", *ref_tied, "Hugging Face text-only naming of mlx-bf16-tied")

    # 5. Model 1 quantized to 4 bits (group 32), embedding included, as mlx_lm.convert does.
    q_tied, _ = build(seed=1, hv=2, tied=True)
    q_tied, q_cfg = quantize_model(q_tied, copy.deepcopy(tied_cfg), group_size=32, bits=4)
    ref = reference(q_tied)
    d = write_folder("mlx-q4-tied", q_cfg, weights_of(q_tied))
    check_roundtrip(d, q_tied, ref[0])
    save_expected("mlx-q4-tied", *ref, "model 1 quantized: 4 bits, group 32")

    # 6. Model 2 quantized, mixed: 4 bits / group 32, one MLP projection and the head at
    #    8 bits / group 64 (per-layer entries in the config, as mixed-precision quants have).
    def predicate(path, module):
        if path.endswith("layers.0.mlp.down_proj") or path.endswith("lm_head"):
            return {"group_size": 64, "bits": 8}
        return True

    q_untied, _ = build(seed=2, hv=4, tied=False)
    q_untied, q_cfg = quantize_model(
        q_untied, copy.deepcopy(untied_cfg), group_size=32, bits=4, quant_predicate=predicate
    )
    ref = reference(q_untied)
    d = write_folder("mlx-q4-untied-mixed", q_cfg, weights_of(q_untied))
    check_roundtrip(d, q_untied, ref[0])
    save_expected("mlx-q4-untied-mixed", *ref, "model 2 quantized: 4 bits / group 32, two layers 8 bits / group 64")

    sampling_cases()

    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
