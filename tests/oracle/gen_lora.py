"""LoRA / DoRA adapters made by mlx-lm 0.32.2, and what mlx-lm computes with them.

Writes
- mlx-lm/tests/fixtures/lora_layers.json: LoRALinear / DoRALinear on a small random layer
  (dense and 4-bit base): inputs, parameters, outputs, the fused weights, and the gradients
  of a scalar loss with respect to the adapter's parameters (`mx.grad`), for the layer
  tests in mlx-lm/tests/lm/lora.rs;
- examples/qwen3/tests/fixtures/lora/<case>/ and examples/qwen3_5/tests/fixtures/lora/<case>/:
  adapter folders (adapters.safetensors + adapter_config.json) exactly as mlx-lm's trainer
  saves them, made with mlx-lm's own `linear_to_lora_layers` on the tiny fixture models of
  gen_qwen3.py / gen_qwen.py (cast to float32), with `lora_b` (and DoRA's `m`) set to
  random non-zero values; and <case>.expected.json: the logits of a prompt from the base
  model loaded by mlx-lm's loader with the adapter loaded by mlx-lm's `load_adapters` (what
  `mlx_lm.load(path, adapter_path=...)` does, without the tokenizer the fixtures lack);
  for some cases <case>.grads.safetensors: mlx-lm's training loss on a small batch and its
  gradients with respect to the adapter (`nn.value_and_grad`, i.e. `mx.grad`).

The base models are the existing fixture folders, cast to float32 after loading (the Rust
tests cast them the same way), so no new base weights are written.

Needs: mlx[cpu]==0.32.2 (or mlx==0.32.2 on macOS) and mlx-lm==0.32.2; runs on CPU:
    PYTHONPATH=$(ls -d target/oracle-python/*-py3*) python3 tests/oracle/gen_lora.py
"""
import json
import shutil
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

import mlx_lm
from mlx_lm.tuner.dora import DoRALinear
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import linear_to_lora_layers, load_adapters
from mlx_lm.utils import load_model, save_config

assert mlx_lm.__version__ == "0.32.2", f"needs mlx-lm 0.32.2, found {mlx_lm.__version__}"

ROOT = Path(__file__).resolve().parent.parent.parent
LAYER_OUT = ROOT / "mlx-lm" / "tests" / "fixtures" / "lora_layers.json"

# The prompt of every model case (ids below the Qwen 3.5 fixture's real vocabulary).
PROMPT = [3, 17, 42, 99, 5, 200, 77, 11]
# Standard deviation of the random `lora_b` values.
B_STD = 0.05
# A case whose adapter moves no logit by more than this fraction of the row's largest
# |logit| would not test much: the generator refuses it.
MIN_CHANGE = 0.05

# The batch of the gradient cases: two rows, the second padded, its first two targets
# masked (as --mask-prompt masks a prompt), in mlx-lm's (offset, length) form.
GRAD_BATCH = [[3, 17, 42, 99, 5, 200, 77, 11, 8], [9, 14, 120, 33, 61, 2, 0, 0, 0]]
GRAD_LENGTHS = [[0, 9], [2, 6]]
# The cases whose gradients are recorded: (family, case).
GRAD_CASES = {
    ("qwen3", "lora-dense"),
    ("qwen3", "dora-q4"),
    ("qwen3_5", "lora-dense"),
    ("qwen3_5", "dora-dense"),
    ("qwen3_5", "dora-q4"),
}

mx.set_default_device(mx.cpu)

# (family, base fixture, case, fine_tune_type, num_layers, keys, scale, dropout)
CASES = [
    ("qwen3", "bf16-untied", "lora-dense", "lora", 1, None, 2.0, 0.0),
    ("qwen3", "q4-tied", "lora-q4", "lora", -1, ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"], 4.0, 0.1),
    ("qwen3", "bf16-untied", "dora-dense", "dora", -1, None, 2.0, 0.0),
    ("qwen3", "q4-tied", "dora-q4", "dora", 1, None, 2.0, 0.0),
    # Layers 2 (DeltaNet) and 3 (attention) of 4.
    ("qwen3_5", "mlx-bf16-tied", "lora-dense", "lora", 2, None, 2.0, 0.0),
    ("qwen3_5", "mlx-q4-tied", "lora-q4", "lora", -1, None, 2.0, 0.1),
    # Hv = 2 Hk, untied head.
    ("qwen3_5", "mlx-bf16-untied", "dora-dense", "dora", -1, None, 2.0, 0.0),
    (
        "qwen3_5",
        "mlx-q4-tied",
        "dora-q4",
        "dora",
        2,
        ["linear_attn.in_proj_qkv", "linear_attn.out_proj", "self_attn.q_proj", "mlp.up_proj"],
        2.0,
        0.0,
    ),
]

FIXTURES = {
    "qwen3": ROOT / "examples" / "qwen3" / "tests" / "fixtures",
    "qwen3_5": ROOT / "examples" / "qwen3_5" / "tests" / "fixtures" / "qwen",
}
LORA_OUT = {
    "qwen3": ROOT / "examples" / "qwen3" / "tests" / "fixtures" / "lora",
    "qwen3_5": ROOT / "examples" / "qwen3_5" / "tests" / "fixtures" / "lora",
}


def numbers(a):
    """Float32 values, each written with the fewest digits that read back the same."""
    a = np.array(mx.array(a).astype(mx.float32), dtype=np.float32).reshape(-1)
    return [float(np.format_float_positional(x, unique=True)) for x in a]


def tensor(a):
    a = mx.array(a)
    return {"shape": list(a.shape), "data": numbers(a)}


def load_base(folder):
    """mlx-lm's loader on a fixture folder, the parameters cast to float32."""
    model, _ = load_model(folder)
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    return model


def make_adapter(family, base, case, kind, num_layers, keys, scale, dropout, seed):
    folder = FIXTURES[family] / base
    model = load_base(folder)
    model.freeze()
    params = {"rank": 4, "scale": scale, "dropout": dropout}
    if keys is not None:
        params["keys"] = keys
    mx.random.seed(seed)
    linear_to_lora_layers(model, num_layers, params, use_dora=(kind == "dora"))
    rng = np.random.default_rng(seed)
    new = {}
    for k, v in tree_flatten(model.trainable_parameters()):
        if k.endswith("lora_b"):
            new[k] = mx.array(B_STD * rng.standard_normal(v.shape), dtype=mx.float32)
        elif k.endswith(".m"):
            new[k] = v * mx.array(1.0 + 0.1 * rng.standard_normal(v.shape), dtype=mx.float32)
    model.update(tree_unflatten(list(new.items())))
    weights = dict(tree_flatten(model.trainable_parameters()))
    assert weights, f"{case}: no adapter parameters"

    out = LORA_OUT[family] / case
    out.mkdir(parents=True)
    # As mlx-lm's trainer saves them (tuner/trainer.py, lora.py's train_model).
    mx.save_safetensors(str(out / "adapters.safetensors"), weights)
    config = {
        "model": f"{family} fixture {base}",
        "fine_tune_type": kind,
        "num_layers": num_layers,
        "lora_parameters": params,
        "batch_size": 4,
        "iters": 0,
        "learning_rate": 1e-5,
        "seed": seed,
    }
    save_config(config, out / "adapter_config.json")

    # What mlx_lm.load(path, adapter_path=out) computes (load_adapters, then eval()).
    ids = mx.array(PROMPT)[None]
    plain = load_base(folder)(ids).astype(mx.float32)[0]
    adapted_model = load_base(folder)
    load_adapters(adapted_model, str(out))
    adapted_model.eval()
    logits = adapted_model(ids).astype(mx.float32)[0]
    scale_row = mx.max(mx.abs(logits), axis=-1)
    change = float(mx.max(mx.max(mx.abs(logits - plain), axis=-1) / scale_row))
    assert change > MIN_CHANGE, f"{case}: the adapter hardly changes the logits ({change})"
    doc = {
        "note": f"{kind} adapter on {base} (float32), num_layers {num_layers}, keys {keys}",
        "base": base,
        "prompt": PROMPT,
        "adapter_tensors": sorted(weights),
        "largest_change": change,
        "logits": tensor(logits),
    }
    with open(LORA_OUT[family] / f"{case}.expected.json", "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    if (family, case) in GRAD_CASES:
        save_gradients(folder, out, LORA_OUT[family] / f"{case}.grads.safetensors")
    print(f"{family}/{case}: {len(weights)} tensors, largest change {change:.3f} of a row's scale")


def save_gradients(folder, adapter, path):
    """mlx-lm's training loss (`default_loss`) on GRAD_BATCH and its gradient with respect
    to the adapter's parameters (the base frozen, as its trainer has it), by `mx.grad`
    through `nn.value_and_grad`; saved with the loss under the key `loss`."""
    model = load_base(folder)
    load_adapters(model, str(adapter))
    model.freeze()
    model.unfreeze(keys=["lora_a", "lora_b", "m"], strict=False)
    model.train()
    batch = mx.array(GRAD_BATCH)
    lengths = mx.array(GRAD_LENGTHS)
    (loss, ntoks), grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    grads = dict(tree_flatten(grads))
    assert grads and all(k.rsplit(".", 1)[-1] in ("lora_a", "lora_b", "m") for k in grads)
    grads["loss"] = loss
    mx.save_safetensors(str(path), grads)


def layer_cases():
    """LoRALinear and DoRALinear on one random layer: forward, fuse, gradients."""
    rng = np.random.default_rng(7)
    cases = []
    in_dims, out_dims, rank = 32, 16, 4
    for kind in ("lora", "dora"):
        for quantized in (False, True):
            w = mx.array(rng.standard_normal((out_dims, in_dims)) / np.sqrt(in_dims), dtype=mx.float32)
            base = nn.Linear(in_dims, out_dims, bias=False)
            base.weight = w
            if quantized:
                base = nn.QuantizedLinear.from_linear(base, group_size=32, bits=4)
            cls = DoRALinear if kind == "dora" else LoRALinear
            layer = cls.from_base(base, r=rank, dropout=0.0, scale=3.0)
            layer.lora_a = mx.array(rng.standard_normal((in_dims, rank)) / np.sqrt(in_dims), dtype=mx.float32)
            layer.lora_b = mx.array(0.2 * rng.standard_normal((rank, out_dims)), dtype=mx.float32)
            if kind == "dora":
                layer.m = layer.m * mx.array(1.0 + 0.1 * rng.standard_normal((out_dims,)), dtype=mx.float32)
            x = mx.array(rng.standard_normal((2, 3, in_dims)), dtype=mx.float32)
            cot = mx.array(rng.standard_normal((2, 3, out_dims)), dtype=mx.float32)
            y = layer(x)

            names = ["lora_a", "lora_b"] + (["m"] if kind == "dora" else [])

            def loss(params):
                layer.update(params)
                return mx.sum(layer(x) * cot)

            start = {n: getattr(layer, n) for n in names}
            grads = mx.grad(loss)(start)
            layer.update(start)
            fused = layer.fuse(dequantize=True).weight
            fused_q = layer.fuse(dequantize=False)
            case = {
                "kind": kind,
                "quantized": quantized,
                "scale": 3.0,
                "weight": tensor(w),
                "x": tensor(x),
                "cotangent": tensor(cot),
                "output": tensor(y),
                "fused_weight": tensor(fused),
                # The re-quantized fused layer's output (4 bits, group 32) when the base was
                # quantized, else the fused dense layer's.
                "fused_output": tensor(fused_q(x)),
            }
            for n in names:
                case[n] = tensor(start[n])
                case[f"grad_{n}"] = tensor(grads[n])
            cases.append(case)
    return cases


def main():
    for family in LORA_OUT.values():
        if family.exists():
            shutil.rmtree(family)
        family.mkdir(parents=True)
    for seed, case in enumerate(CASES):
        make_adapter(*case, seed=100 + seed)
    with open(LAYER_OUT, "w") as f:
        json.dump({"mlx_lm_version": mlx_lm.__version__, "cases": layer_cases()}, f, separators=(",", ":"))
    total = sum(f.stat().st_size for d in LORA_OUT.values() for f in d.rglob("*") if f.is_file())
    total += LAYER_OUT.stat().st_size
    print(f"wrote {total / 1e6:.2f} MB")
    assert total < 1e6, "fixtures must stay under 1 MB"


if __name__ == "__main__":
    main()
