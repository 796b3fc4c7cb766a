"""Python peer of `bench` (`mlx_lm::cli`): mlx-lm 0.32.2's own model and generation loop
on random weights of the given shapes, for any model_type mlx-lm knows.

Builds mlx-lm's model of the config's `model_type` (as `mlx_lm.utils.load_model` picks
it) from a config.json, fills it with the same deterministic random weights as the Rust
side (`mlx_lm::cli::RandomWeights`: tensor i of the sorted parameter names drawn with
`mx.random.key(seed * 100000 + i)`: weights normal(0, 0.02), conv1d weights normal(0,
0.5), norm weights and dt_bias ones, A_log = log(uniform(1, 16)) kept in float32), casts
to the dtype, optionally quantizes (affine, group 64, every Linear/Embedding whose input
width is a multiple of 64, as mlx-lm's converter does), then runs `mlx_lm.generate.generate_step` (greedy) on a prompt of random ids: one
warm-up run, then timed runs. Prints one JSON object on stdout:

    {"mlx_version": "...", "mlx_lm_version": "...", "device": "...",
     "prefill_tps": ..., "decode_tps": ..., "peak_mem_bytes": ..., "tokens": [...],
     "runs": [{"prefill_tps": ..., "decode_tps": ..., "peak_mem_bytes": ...}, ...]}

(medians over the timed runs; peak memory is the largest; `*_tps_cpu` are the same
rates per second of process CPU time, steadier than wall-clock time on a shared
machine). Timing follows the Rust side: prefill = prompt tokens / time until the first
generated token is available; decode = (generated − 1) / time from the first to the last
token.

    python3 benches/mlx_lm_peer.py --config cfg.json --dtype float32 --prompt 512 --gen 64
"""
import argparse
import json
import platform
import statistics
import time

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

DTYPES = {"bfloat16": mx.bfloat16, "float16": mx.float16, "float32": mx.float32}


def prompt_ids(n, limit, seed):
    """The same pseudo-random ids in range(limit) as the Rust side (a 64-bit LCG)."""
    x = (seed + 1) & 0xFFFFFFFFFFFFFFFF
    ids = []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        ids.append((x >> 33) % limit)
    return ids


def random_value(name, shape, index, seed, dtype):
    key = mx.random.key(seed * 100000 + index)
    if name.endswith("A_log"):
        return mx.log(mx.random.uniform(1.0, 16.0, shape, key=key))
    if name.endswith("norm.weight") or name.endswith("dt_bias"):
        return mx.ones(shape, dtype=mx.float32).astype(dtype)
    scale = 0.5 if name.endswith("conv1d.weight") else 0.02
    return (scale * mx.random.normal(shape, key=key)).astype(dtype)


def build_model(config, dtype, quantize, seed):
    from mlx_lm.utils import _get_classes

    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    shapes = {k: v.shape for k, v in tree_flatten(model.parameters())}
    weights = []
    for i, name in enumerate(sorted(shapes)):
        w = random_value(name, shapes[name], i, seed, dtype)
        mx.eval(w)
        weights.append((name, w))
    model.update(tree_unflatten(weights))
    if quantize:
        nn.quantize(
            model,
            group_size=64,
            bits=quantize,
            class_predicate=lambda _, m: hasattr(m, "to_quantized")
            and m.weight.shape[-1] % 64 == 0,
        )
    mx.eval(model.parameters())
    return model


def run_once(model, prompt, gen, prefill_step):
    from mlx_lm.generate import generate_step

    tokens = []
    start, cpu_start = time.perf_counter(), time.process_time()
    first = last = None
    for token, _ in generate_step(
        mx.array(prompt, dtype=mx.uint32),
        model,
        max_tokens=gen,
        prefill_step_size=prefill_step,
    ):
        now = time.perf_counter()
        tokens.append(int(token))
        if first is None:
            first, cpu_first = now, time.process_time()
            prefill_peak = mx.get_peak_memory()
        last = now
    cpu_last = time.process_time()

    def rate(n, s):
        return n / s if s > 0 else 0.0

    return {
        "prefill_tps": rate(len(prompt), first - start),
        "decode_tps": rate(len(tokens) - 1, last - first),
        "prefill_tps_cpu": rate(len(prompt), cpu_first - cpu_start),
        "decode_tps_cpu": rate(len(tokens) - 1, cpu_last - cpu_first),
        "prefill_peak_mem_bytes": prefill_peak,
        "tokens": tokens,
    }


def device_name(device):
    if device == "gpu":
        try:
            info = mx.device_info()
            return info.get("device_name") or info.get("architecture") or "gpu"
        except Exception:
            return "gpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="config.json of the model shapes")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--gen", type=int, default=64)
    p.add_argument("--quantize", type=int, choices=[4, 8])
    p.add_argument("--device", choices=["cpu", "gpu"], default=None)
    p.add_argument("--memory-limit", type=float, help="GB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--vocab-limit",
        type=int,
        help="prompt ids are drawn below this (default: the config's vocab_size)",
    )
    p.add_argument("--runs", type=int, default=1, help="timed runs after the warm-up")
    p.add_argument("--prefill-step", type=int, default=2048)
    a = p.parse_args()
    if a.prompt < 1 or a.gen < 1 or a.runs < 1:
        p.error("--prompt, --gen and --runs must be at least 1")

    device = a.device or ("gpu" if mx.is_available(mx.gpu) else "cpu")
    mx.set_default_device(mx.gpu if device == "gpu" else mx.cpu)
    if a.memory_limit:
        mx.set_memory_limit(int(a.memory_limit * 1e9))

    with open(a.config) as f:
        config = json.load(f)
    text = config.get("text_config", config)
    model = build_model(config, DTYPES[a.dtype], a.quantize, a.seed)
    vocab = text["vocab_size"]
    prompt = prompt_ids(a.prompt, min(vocab, a.vocab_limit or vocab), a.seed)

    run_once(model, prompt, min(a.gen, 4), a.prefill_step)  # warm-up
    runs = []
    peak = 0
    for _ in range(a.runs):
        mx.clear_cache()
        mx.reset_peak_memory()
        r = run_once(model, prompt, a.gen, a.prefill_step)
        r["peak_mem_bytes"] = mx.get_peak_memory()
        peak = max(peak, r["peak_mem_bytes"])
        runs.append(r)

    import mlx_lm

    print(
        json.dumps(
            {
                "mlx_version": mx.__version__,
                "mlx_lm_version": mlx_lm.__version__,
                "device": f"{device} ({device_name(device)})",
                "prefill_tps": statistics.median(r["prefill_tps"] for r in runs),
                "decode_tps": statistics.median(r["decode_tps"] for r in runs),
                "peak_mem_bytes": peak,
                "prefill_peak_mem_bytes": max(r["prefill_peak_mem_bytes"] for r in runs),
                "prefill_tps_cpu": statistics.median(r["prefill_tps_cpu"] for r in runs),
                "decode_tps_cpu": statistics.median(r["decode_tps_cpu"] for r in runs),
                "tokens": runs[-1]["tokens"],
                "runs": [{k: v for k, v in r.items() if k != "tokens"} for r in runs],
            }
        )
    )


if __name__ == "__main__":
    main()
