"""Shared writer for oracle fixtures: cases of named ops run by Python MLX.

Each generator script (gen_*.py beside this file) builds a list of cases with `case()`
and saves them with `save()` to mlx-rs/tests/fixtures/<name>.json, which the Rust tests
read through mlx-rs/tests/common/mod.rs. Inputs come from a seeded NumPy generator, so
the files are reproducible.
"""
import json
import os

import mlx.core as mx
import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "mlx-rs", "tests", "fixtures")

RNG = np.random.default_rng(1234)


def rand(shape, dtype="float32", low=-2.0, high=2.0):
    """A random input array (float values, or integers in [low, high) for int dtypes)."""
    if dtype in ("float32", "float16", "bfloat16", "float64"):
        data = RNG.uniform(low, high, size=shape).astype(np.float32)
        return mx.array(data).astype(getattr(mx, dtype))
    if dtype == "bool":
        return mx.array(RNG.integers(0, 2, size=shape).astype(np.bool_))
    data = RNG.integers(int(low), int(high), size=shape)
    return mx.array(data).astype(getattr(mx, dtype))


def tensor(a):
    """JSON form of an MLX array: dtype name, shape, row-major values (as float/int)."""
    a = mx.array(a)
    dtype = str(a.dtype).replace("mlx.core.", "")
    if dtype == "complex64":
        flat = np.array(a).reshape(-1)
        data = [[float(x.real), float(x.imag)] for x in flat]
    elif dtype in ("float16", "bfloat16", "float32", "float64"):
        data = [float(x) for x in np.array(a.astype(mx.float32)).reshape(-1)]
    elif dtype == "bool":
        data = [int(x) for x in np.array(a).reshape(-1)]
    else:
        data = [int(x) for x in np.array(a).reshape(-1)]
    return {"dtype": dtype, "shape": list(a.shape), "data": data}


def case(op, inputs, output, args=None, rtol=1e-5, atol=1e-6, name=None):
    """One case: `op` (the Rust function name) applied to `inputs` with `args` gives
    `output` (an array or a list of arrays)."""
    outs = output if isinstance(output, (list, tuple)) else [output]
    return {
        "name": name or op,
        "op": op,
        "args": args or {},
        "inputs": [tensor(x) for x in inputs],
        "outputs": [tensor(o) for o in outs],
        "rtol": rtol,
        "atol": atol,
    }


def save(name, cases):
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"mlx_version": mx.__version__, "cases": cases}, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {os.path.relpath(path)}")
