"""`qwen3_5 lora` against `mlx_lm.lora` on the same data, model and MLX, in one run.

The data: the dataset descriptions that scikit-learn ships (`sklearn/datasets/descr/*.rst`,
43 KB of English prose) from the scikit-learn 1.9.1 wheel that the tests' oracle pins
(tests/oracle/src/lib.rs, SCIKIT_LEARN_WHEELS), cut into chunks of at most 200 characters
at whitespace, shuffled, 90 % train / 10 % valid. The model: a small Qwen 3.5 of random
float32 weights built with mlx-lm's own class (4 layers: 3 Gated DeltaNet + 1 attention,
hidden 128), with the tests' character tokenizer (250 ids) and its chat template, so a
CPU run takes minutes. Both sides train LoRA (rank 8, scale 20, all layers) with Adam for
the same steps on the same batches' sizes; mlx-lm runs in this process through
`mlx_lm.lora.run` (its callbacks give the numbers), ours as a subprocess.

    PYTHONPATH=$(ls -d target/oracle-python/*-py3*) python3 benches/lora_compare.py \\
        --bin target/release/qwen3_5 --wheel scikit_learn-1.9.1-...whl --out /tmp/lora-compare

Writes <out>/report.json (every reported train and validation loss of both sides,
tokens/s, peak memory) and prints the curves side by side.
"""
import argparse
import json
import random
import re
import shutil
import subprocess
import time
import types
import zipfile
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

import mlx_lm
from mlx_lm.models import qwen3_5
from mlx_lm.tuner.callbacks import TrainingCallback

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "examples" / "qwen3_5" / "tests" / "fixtures" / "char-tokenizer"

CONFIG = {
    "model_type": "qwen3_5",
    "text_config": {
        "model_type": "qwen3_5_text",
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "intermediate_size": 256,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "linear_num_key_heads": 4,
        "linear_num_value_heads": 4,
        "linear_key_head_dim": 32,
        "linear_value_head_dim": 32,
        "linear_conv_kernel_dim": 4,
        "full_attention_interval": 4,
        "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        "rms_norm_eps": 1e-6,
        "vocab_size": 256,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attn_output_gate": True,
        "max_position_embeddings": 4096,
        "eos_token_id": 249,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
        },
    },
}


def make_data(wheel, out, vocab):
    """Chunks of the descriptions, only characters the tokenizer has."""
    texts = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if re.match(r"sklearn/datasets/descr/.*\.rst$", name):
                texts.append(z.read(name).decode("utf-8"))
    chunks = []
    for text in texts:
        text = "".join(c for c in text if c in vocab)
        words = text.split()
        cur = []
        for w in words:
            if sum(len(x) + 1 for x in cur) + len(w) > 200:
                chunks.append(" ".join(cur))
                cur = []
            cur.append(w)
        if cur:
            chunks.append(" ".join(cur))
    random.Random(0).shuffle(chunks)
    n_valid = max(8, len(chunks) // 10)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in [("valid", chunks[:n_valid]), ("train", chunks[n_valid:])]:
        with open(out / f"{name}.jsonl", "w") as f:
            for c in part:
                f.write(json.dumps({"text": c}) + "\n")
    return len(chunks) - n_valid, n_valid, sum(len(c) for c in chunks)


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


class Record(TrainingCallback):
    def __init__(self):
        self.train, self.val = [], []

    def on_train_loss_report(self, info):
        self.train.append(info)

    def on_val_loss_report(self, info):
        self.val.append(info)


def run_mlx_lm(model, data, adapter, a):
    from mlx_lm.lora import CONFIG_DEFAULTS, run

    args = dict(CONFIG_DEFAULTS)
    args.update(
        model=str(model), train=True, data=str(data), adapter_path=str(adapter),
        fine_tune_type="lora", num_layers=-1, batch_size=a.batch_size, iters=a.iters,
        learning_rate=a.learning_rate, steps_per_report=a.steps_per_report,
        steps_per_eval=a.steps_per_eval, save_every=a.iters, val_batches=-1,
        max_seq_length=512, seed=0,
        lora_parameters={"rank": 8, "scale": 20.0, "dropout": 0.0},
    )
    rec = Record()
    mx.reset_peak_memory()
    start = time.perf_counter()
    import mlx_lm.lora as lora_mod

    lora_mod.get_reporting_callbacks = lambda *x, **k: rec
    run(types.SimpleNamespace(**args), training_callback=rec)
    return rec, time.perf_counter() - start


def run_ours(binary, model, data, adapter, a):
    cmd = [
        str(binary), "lora", "--device", "cpu", "--train", "--model", str(model),
        "--data", str(data), "--adapter-path", str(adapter), "--fine-tune-type", "lora",
        "--num-layers", "-1", "--batch-size", str(a.batch_size), "--iters", str(a.iters),
        "--learning-rate", str(a.learning_rate), "--steps-per-report", str(a.steps_per_report),
        "--steps-per-eval", str(a.steps_per_eval), "--save-every", str(a.iters),
        "--val-batches", "-1", "--max-seq-length", "512", "--rank", "8", "--scale", "20",
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    train, val = [], []
    for line in out.stdout.splitlines():
        m = re.match(r"Iter (\d+): Val loss ([\d.]+)", line)
        if m:
            val.append({"iteration": int(m[1]), "val_loss": float(m[2])})
        m = re.match(
            r"Iter (\d+): Train loss ([\d.]+),.*Tokens/sec ([\d.]+),.*Peak mem ([\d.]+) GB", line
        )
        if m:
            train.append({"iteration": int(m[1]), "train_loss": float(m[2]),
                          "tokens_per_second": float(m[3]), "peak_memory": float(m[4])})
    return train, val, seconds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True, help="the qwen3_5 binary")
    p.add_argument("--wheel", required=True, help="the scikit-learn 1.9.1 wheel")
    p.add_argument("--out", required=True)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--steps-per-report", type=int, default=20)
    p.add_argument("--steps-per-eval", type=int, default=50)
    a = p.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    vocab = set(json.load(open(TOKENIZER / "tokenizer.json"))["model"]["vocab"])
    n_train, n_valid, chars = make_data(a.wheel, out / "data", vocab)
    make_model(out / "model")
    print(f"data: {n_train} train / {n_valid} valid chunks, {chars} characters; MLX {mx.__version__}, mlx-lm {mlx_lm.__version__}")

    ours_train, ours_val, ours_s = run_ours(a.bin, out / "model", out / "data", out / "ours", a)
    rec, theirs_s = run_mlx_lm(out / "model", out / "data", out / "mlx-lm", a)
    theirs_train = [{"iteration": r["iteration"], "train_loss": r["train_loss"],
                     "tokens_per_second": r["tokens_per_second"], "peak_memory": r["peak_memory"]}
                    for r in rec.train]
    theirs_val = [{"iteration": r["iteration"], "val_loss": r["val_loss"]} for r in rec.val]

    print(f"\n{'step':>6} {'train ours':>11} {'train mlx-lm':>13} {'tok/s ours':>11} {'tok/s mlx-lm':>13}")
    for o, t in zip(ours_train, theirs_train):
        print(f"{o['iteration']:>6} {o['train_loss']:>11.3f} {t['train_loss']:>13.3f} "
              f"{o['tokens_per_second']:>11.0f} {t['tokens_per_second']:>13.0f}")
    print(f"\n{'step':>6} {'val ours':>9} {'val mlx-lm':>11}")
    for o, t in zip(ours_val, theirs_val):
        print(f"{o['iteration']:>6} {o['val_loss']:>9.3f} {t['val_loss']:>11.3f}")
    peak_o = max(r["peak_memory"] for r in ours_train)
    peak_t = max(r["peak_memory"] for r in theirs_train)
    print(f"\nwall time: ours {ours_s:.1f} s, mlx-lm {theirs_s:.1f} s; peak memory: ours {peak_o:.3f} GB, mlx-lm {peak_t:.3f} GB")
    report = {
        "config": CONFIG, "iters": a.iters, "batch_size": a.batch_size,
        "learning_rate": a.learning_rate, "data": {"train": n_train, "valid": n_valid, "characters": chars},
        "ours": {"train": ours_train, "val": ours_val, "seconds": ours_s},
        "mlx_lm": {"train": theirs_train, "val": theirs_val, "seconds": theirs_s},
    }
    with open(out / "report.json", "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
