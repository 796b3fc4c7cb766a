"""Peak memory of a LoRA training step with and without `--grad-checkpoint`, ours and
`mlx_lm.lora`'s, on the same data, model and MLX.

The data: the scikit-learn dataset descriptions of `lora_compare.py`, cut into chunks of
about 1,000 characters (1,000 tokens with the character tokenizer), so that a step's
activations (batch × length × layers) outweigh the weights. The model: a random float32
Qwen 3.5 built with mlx-lm's class, 8 layers (6 Gated DeltaNet + 2 attention), hidden
256. LoRA rank 8 on every linear layer, batch 4, a few steps; each side runs once with and
once without gradient checkpointing, each in a process of its own.

    PYTHONPATH=$(ls -d target/oracle-python/*-py3*) python3 benches/grad_checkpoint_memory.py \\
        --bin target/release/qwen3_5 --wheel scikit_learn-1.9.1-...whl --out /tmp/ckpt-memory

Prints a table of peak memory and tokens/s and writes <out>/report.json.
"""
import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from mlx_lm.models import qwen3_5

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lora_compare import CONFIG as SMALL, TOKENIZER  # noqa: E402

CONFIG = json.loads(json.dumps(SMALL))
CONFIG["text_config"].update(
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=8,
    layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 2,
)


def make_data(wheel, out, vocab, chunk):
    texts = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if re.match(r"sklearn/datasets/descr/.*\.rst$", name):
                texts.append(z.read(name).decode("utf-8"))
    text = " ".join("".join(c for c in t if c in vocab) for t in texts).split()
    chunks, cur = [], []
    for w in text:
        if sum(len(x) + 1 for x in cur) + len(w) > chunk:
            chunks.append(" ".join(cur))
            cur = []
        cur.append(w)
    random.Random(0).shuffle(chunks)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in [("valid", chunks[:4]), ("train", chunks[4:])]:
        with open(out / f"{name}.jsonl", "w") as f:
            for c in part:
                f.write(json.dumps({"text": c}) + "\n")


def make_model(out):
    mx.random.seed(0)
    model = qwen3_5.Model(qwen3_5.ModelArgs.from_dict(json.loads(json.dumps(CONFIG))))
    mx.eval(model.parameters())
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    with open(out / "config.json", "w") as f:
        json.dump(CONFIG, f, indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / f, out / f)


MLX_LM = """
import json, sys, types
import mlx.core as mx
from mlx_lm.lora import CONFIG_DEFAULTS, run
from mlx_lm.tuner.callbacks import TrainingCallback
import mlx_lm.lora as lora_mod
class Rec(TrainingCallback):
    def __init__(self): self.train = []
    def on_train_loss_report(self, info): self.train.append(info)
model, data, adapter, iters, batch, ckpt = sys.argv[1:]
args = dict(CONFIG_DEFAULTS)
args.update(model=model, train=True, data=data, adapter_path=adapter, fine_tune_type="lora",
    num_layers=-1, batch_size=int(batch), iters=int(iters), learning_rate=1e-4,
    steps_per_report=int(iters), steps_per_eval=1000, save_every=1000, val_batches=1,
    max_seq_length=2048, seed=0, grad_checkpoint=ckpt == "1",
    lora_parameters={"rank": 8, "scale": 20.0, "dropout": 0.0})
rec = Rec()
lora_mod.get_reporting_callbacks = lambda *x, **k: rec
mx.set_default_device(mx.cpu)
run(types.SimpleNamespace(**args), training_callback=rec)
r = rec.train[-1]
print(json.dumps({"peak_memory": r["peak_memory"], "tokens_per_second": r["tokens_per_second"],
                  "train_loss": r["train_loss"]}))
"""


def run_ours(binary, model, data, adapter, a, ckpt):
    cmd = [
        str(binary), "lora", "--device", "cpu", "--train", "--model", str(model),
        "--data", str(data), "--adapter-path", str(adapter), "--num-layers", "-1",
        "--batch-size", str(a.batch_size), "--iters", str(a.iters), "--learning-rate", "1e-4",
        "--steps-per-report", str(a.iters), "--steps-per-eval", "1000", "--save-every", "1000",
        "--val-batches", "1", "--max-seq-length", "2048", "--rank", "8", "--scale", "20",
    ] + (["--grad-checkpoint"] if ckpt else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"Train loss ([\d.]+),.*Tokens/sec ([\d.]+),.*Peak mem ([\d.]+) GB", out)
    return {"train_loss": float(m[1]), "tokens_per_second": float(m[2]),
            "peak_memory": float(m[3])}


def run_mlx_lm(model, data, adapter, a, ckpt):
    out = subprocess.run(
        [sys.executable, "-c", MLX_LM, str(model), str(data), str(adapter), str(a.iters),
         str(a.batch_size), "1" if ckpt else "0"],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True, help="the qwen3_5 binary")
    p.add_argument("--wheel", required=True, help="the scikit-learn 1.9.1 wheel")
    p.add_argument("--out", required=True)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--chunk", type=int, default=1000, help="characters per example")
    a = p.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    vocab = set(json.load(open(TOKENIZER / "tokenizer.json"))["model"]["vocab"])
    make_data(a.wheel, out / "data", vocab, a.chunk)
    make_model(out / "model")
    rows = {}
    for ckpt in (False, True):
        suffix = "-ckpt" if ckpt else ""
        rows["ours" + suffix] = run_ours(
            a.bin, out / "model", out / "data", out / ("ours" + suffix), a, ckpt)
        rows["mlx_lm" + suffix] = run_mlx_lm(
            out / "model", out / "data", out / ("mlx_lm" + suffix), a, ckpt)
    print(f"{'run':<14} {'peak GB':>8} {'tok/s':>7} {'loss':>7}")
    for k, r in rows.items():
        print(f"{k:<14} {r['peak_memory']:>8.3f} {r['tokens_per_second']:>7.0f} {r['train_loss']:>7.3f}")
    with open(out / "report.json", "w") as f:
        json.dump({"config": CONFIG, "iters": a.iters, "batch_size": a.batch_size,
                   "chunk": a.chunk, "runs": rows}, f, indent=2)


if __name__ == "__main__":
    main()
