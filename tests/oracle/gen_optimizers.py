"""Oracle for mlx-rs/tests/nn_optimizers.rs: training runs of a tiny model with every
optimizer of mlx_rs::optimizers, learning-rate schedules and gradient clipping, computed
by Python MLX (mlx.optimizers).

A `train` case stores the batch and the initial parameters (inputs), and the loss at each
of the 20 steps, the parameters after them and the optimizer state after them (outputs);
`args` names the optimizer and its options, the schedule (as a nested spec the Rust test
turns into an `optimizers::Schedule`), the clipping norm, and the key order of the
parameters and of the state. Schedules are stored as a spec and their values for steps
0..30; clipping as gradients in, clipped gradients and total norm out.
"""
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from fixture import case, rand, save

STEPS = 20
SCHEDULE_STEPS = 31


class Net(nn.Module):
    """Linear 4→3, tanh, Linear 3→2 (the Rust test builds the same with two `Linear`s)."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(4, 3)
        self.l2 = nn.Linear(3, 2)

    def __call__(self, x):
        return self.l2(mx.tanh(self.l1(x)))


def make_schedule(spec):
    """A Python schedule from its spec (the same spec the Rust test reads)."""
    kind = spec["kind"]
    if kind == "cosine_decay":
        return optim.cosine_decay(spec["init"], spec["decay_steps"], spec["end"])
    if kind == "linear_schedule":
        return optim.linear_schedule(spec["init"], spec["end"], spec["steps"])
    if kind == "step_decay":
        return optim.step_decay(spec["init"], spec["decay_rate"], spec["step_size"])
    if kind == "exponential_decay":
        return optim.exponential_decay(spec["init"], spec["decay_rate"])
    if kind == "join_schedules":
        parts = [make_schedule(s) for s in spec["schedules"]]
        return optim.join_schedules(parts, spec["boundaries"])
    raise ValueError(kind)


WARMUP_COSINE = {
    "kind": "join_schedules",
    "schedules": [
        {"kind": "linear_schedule", "init": 0.0, "end": 0.02, "steps": 5},
        {"kind": "cosine_decay", "init": 0.02, "decay_steps": 15, "end": 0.002},
    ],
    "boundaries": [5],
}

SCHEDULES = {
    "cosine": {"kind": "cosine_decay", "init": 0.1, "decay_steps": 20, "end": 0.0},
    "cosine_end": {"kind": "cosine_decay", "init": 1e-2, "decay_steps": 7, "end": 1e-3},
    "linear_warmup": {"kind": "linear_schedule", "init": 0.0, "end": 0.1, "steps": 10},
    "linear_down": {"kind": "linear_schedule", "init": 0.5, "end": 0.1, "steps": 13},
    "step": {"kind": "step_decay", "init": 0.1, "decay_rate": 0.9, "step_size": 4},
    "exponential": {"kind": "exponential_decay", "init": 0.1, "decay_rate": 0.95},
    "warmup_cosine": WARMUP_COSINE,
    "three_parts": {
        "kind": "join_schedules",
        "schedules": [
            {"kind": "linear_schedule", "init": 0.0, "end": 0.1, "steps": 3},
            {"kind": "exponential_decay", "init": 0.1, "decay_rate": 0.8},
            {"kind": "step_decay", "init": 0.05, "decay_rate": 0.5, "step_size": 2},
        ],
        "boundaries": [3, 12],
    },
}

# name → (optimizer, options, learning rate (a float or a schedule spec), clip max_norm)
CONFIGS = {
    "sgd": ("sgd", {}, 0.1, None),
    "sgd_momentum": ("sgd", {"momentum": 0.9}, 0.05, None),
    "sgd_nesterov_wd": ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, 0.05, None),
    "sgd_dampening": ("sgd", {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.001}, 0.1, None),
    "sgd_exponential": ("sgd", {"momentum": 0.5}, SCHEDULES["exponential"], None),
    "adam": ("adam", {}, 0.01, None),
    "adam_bias_correction": ("adam", {"bias_correction": True, "betas": [0.8, 0.95]}, 0.01, None),
    "adam_warmup_cosine": ("adam", {"bias_correction": True}, WARMUP_COSINE, None),
    "adamw": ("adamw", {}, 0.01, None),
    "adamw_wd_bc": ("adamw", {"weight_decay": 0.1, "bias_correction": True, "eps": 1e-6}, 0.02, None),
    "adamw_clip": ("adamw", {}, 0.02, 0.05),
    "lion": ("lion", {}, 0.003, None),
    "lion_wd_step": ("lion", {"weight_decay": 0.1, "betas": [0.95, 0.98]}, SCHEDULES["step"], None),
    "sgd_clip_cosine": ("sgd", {"momentum": 0.9}, SCHEDULES["cosine"], 0.1),
}


def make_optimizer(kind, options, lr):
    lr = make_schedule(lr) if isinstance(lr, dict) else lr
    cls = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW, "lion": optim.Lion}[kind]
    return cls(learning_rate=lr, **options)


def train_cases():
    cases = []
    x, y = rand((8, 4)), rand((8, 2), low=-1.0, high=1.0)
    model = Net()
    initial = {k: rand(v.shape, low=-0.5, high=0.5) for k, v in tree_flatten(model.parameters())}
    keys = sorted(initial)

    def loss_fn(model):
        return mx.mean(mx.square(model(x) - y))

    for name, (kind, options, lr, clip) in CONFIGS.items():
        model.update(tree_unflatten(list(initial.items())))
        optimizer = make_optimizer(kind, options, lr)
        loss_and_grad = nn.value_and_grad(model, loss_fn)
        losses = []
        for _ in range(STEPS):
            loss, grads = loss_and_grad(model)
            if clip is not None:
                grads, _ = optim.clip_grad_norm(grads, clip)
            optimizer.update(model, grads)
            mx.eval(model.parameters(), optimizer.state)
            losses.append(loss.item())
        final = dict(tree_flatten(model.parameters()))
        state = dict(tree_flatten(optimizer.state))
        state_keys = sorted(state)
        cases.append(
            case(
                "train",
                [x, y] + [initial[k] for k in keys],
                [mx.array(losses)] + [final[k] for k in keys] + [state[k] for k in state_keys],
                args={
                    "optimizer": kind,
                    "options": options,
                    "learning_rate": lr,
                    "clip": clip,
                    "steps": STEPS,
                    "params": keys,
                    "state": state_keys,
                },
                rtol=1e-4,
                atol=1e-5,
                name=f"train_{name}",
            )
        )
    return cases


def schedule_cases():
    cases = []
    for name, spec in SCHEDULES.items():
        schedule = make_schedule(spec)
        values = mx.stack([schedule(mx.array(s, mx.uint64)) for s in range(SCHEDULE_STEPS)])
        cases.append(
            case("schedule", [], values, args={"schedule": spec}, rtol=1e-6, atol=1e-7,
                 name=f"schedule_{name}")
        )
    return cases


def clip_cases():
    cases = []
    for name, max_norm, scale in [("clipped", 1.0, 1.0), ("unchanged", 100.0, 1.0),
                                  ("zero_max", 0.0, 1.0), ("tiny", 0.5, 1e-3)]:
        grads = {"a.weight": rand((3, 4)) * scale, "a.bias": rand((3,)) * scale, "b": rand((2, 2)) * scale}
        keys = sorted(grads)
        clipped, total = optim.clip_grad_norm(grads, max_norm)
        cases.append(
            case(
                "clip_grad_norm",
                [grads[k] for k in keys],
                [clipped[k] for k in keys] + [total],
                args={"keys": keys, "max_norm": max_norm},
                name=f"clip_grad_norm_{name}",
            )
        )
    return cases


save("optimizers", train_cases() + schedule_cases() + clip_cases())
