"""Oracle for mlx-rs/tests/nn_layers.rs: mlx.nn layers, activations and losses run by
Python MLX.

Each layer case stores the layer's parameters under args["weights"], keyed by Python's
names (`tree_flatten(layer.parameters())`), so the Rust test loads them with a strict
`Module::update` (which proves the names match). Weights come from MLX's seeded RNG (the
layers' own initialisation) and are then replaced by the fixture RNG's values, so that
biases and norm weights are not the trivial zeros and ones. Quantized cases also store
Python's quantized parameters under args["quantized"], to be matched bit for bit.

Floats are written with the fewest digits that give back the same float32, to keep the
file small.
"""
import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from fixture import RNG, case, rand, save, tensor

mx.set_default_device(mx.cpu)
mx.random.seed(7)

F32 = (1e-5, 1e-6)
F16 = (1e-3, 1e-3)
FLOATS = ("float32", "float16", "bfloat16")


def params(module):
    return {k: tensor(v) for k, v in tree_flatten(module.parameters())}


def randomize(module, low=-1.0, high=1.0):
    """Replaces every float parameter by fixture-RNG values (keeps shapes and names)."""
    new = [(k, rand(v.shape, low=low, high=high)) for k, v in tree_flatten(module.parameters())]
    module.update(tree_unflatten(new))
    mx.eval(module.parameters())
    return module


def ints(shape, high):
    return rand(shape, "int32", 0, high)


def layer_cases():
    out = []
    x = rand((2, 3, 8))
    for bias in (True, False):
        layer = randomize(nn.Linear(8, 5, bias=bias))
        out.append(case("linear", [x], layer(x), name=f"linear_bias_{bias}",
                        args={"weights": params(layer), "bias": bias}))

    seq = randomize(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8, bias=False),
                                  nn.GELU(), nn.Linear(8, 3)))
    x = rand((4, 6))
    out.append(case("sequential", [x], seq(x), args={"weights": params(seq)}))

    emb = randomize(nn.Embedding(12, 6))
    ids, h = ints((2, 3), 12), rand((2, 3, 6))
    out.append(case("embedding", [ids, h], [emb(ids), emb.as_linear(h)],
                    args={"weights": params(emb)}))

    x = rand((2, 3, 16))
    for eps in (1e-5, 1e-3):
        layer = randomize(nn.RMSNorm(16, eps=eps))
        out.append(case("rms_norm", [x], layer(x), name=f"rms_norm_{eps}",
                        args={"weights": params(layer), "eps": eps}))
    for affine, bias in ((True, True), (True, False), (False, False)):
        layer = randomize(nn.LayerNorm(16, eps=1e-5, affine=affine, bias=bias))
        out.append(case("layer_norm", [x], layer(x), name=f"layer_norm_{affine}_{bias}",
                        args={"weights": params(layer), "eps": 1e-5, "affine": affine,
                              "bias": bias}))

    # rope: [B, H, T, D]
    x = rand((1, 2, 4, 16))
    for dims, traditional, base, scale, offset in ((16, False, 10000.0, 1.0, 0),
                                                   (16, True, 10000.0, 1.0, 3),
                                                   (8, False, 500.0, 0.5, 7),
                                                   (6, True, 10000.0, 2.0, 1)):
        layer = nn.RoPE(dims, traditional=traditional, base=base, scale=scale)
        out.append(case("rope", [x], layer(x, offset=offset),
                        name=f"rope_{dims}_{traditional}_{offset}", rtol=1e-5, atol=1e-5,
                        args={"dims": dims, "traditional": traditional, "base": base,
                              "scale": scale, "offset": offset}))

    # convolutions, channels last
    for cin, cout, k, stride, pad, dil, groups, bias in ((4, 6, 3, 1, 0, 1, 1, True),
                                                         (4, 6, 3, 2, 1, 2, 2, True),
                                                         (4, 4, 3, 1, 1, 1, 4, False),
                                                         (3, 2, 1, 1, 0, 1, 1, True)):
        layer = randomize(nn.Conv1d(cin, cout, k, stride=stride, padding=pad, dilation=dil,
                                    groups=groups, bias=bias))
        x = rand((2, 9, cin))
        out.append(case("conv1d", [x], layer(x),
                        name=f"conv1d_{cin}_{cout}_k{k}_s{stride}_p{pad}_d{dil}_g{groups}",
                        args={"weights": params(layer), "in": cin, "out": cout, "kernel": k,
                              "stride": stride, "padding": pad, "dilation": dil,
                              "groups": groups, "bias": bias}))
    for cin, cout, k, stride, pad, dil, groups, bias in ((3, 4, (3, 2), (1, 1), (0, 0), (1, 1), 1, True),
                                                         (4, 6, (3, 3), (2, 1), (1, 2), (1, 2), 2, True),
                                                         (4, 4, (3, 3), (1, 1), (1, 1), (1, 1), 4, False)):
        layer = randomize(nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil,
                                    groups=groups, bias=bias))
        x = rand((1, 6, 7, cin))
        out.append(case("conv2d", [x], layer(x),
                        name=f"conv2d_{cin}_{cout}_k{k[0]}{k[1]}_g{groups}",
                        args={"weights": params(layer), "in": cin, "out": cout,
                              "kernel": list(k), "stride": list(stride), "padding": list(pad),
                              "dilation": list(dil), "groups": groups, "bias": bias}))

    # attention: [B, L, D]
    q, kv = rand((2, 3, 8)), rand((2, 5, 8))
    for bias in (False, True):
        mha = randomize(nn.MultiHeadAttention(8, 2, bias=bias))
        out.append(case("mha", [q, kv, kv], mha(q, kv, kv), name=f"mha_bias_{bias}",
                        args={"weights": params(mha), "dims": 8, "num_heads": 2, "bias": bias}))
    mha = randomize(nn.MultiHeadAttention(8, 2))
    mask = nn.MultiHeadAttention.create_additive_causal_mask(3)
    out.append(case("mha", [q, q, q, mask], mha(q, q, q, mask), name="mha_causal_mask",
                    args={"weights": params(mha), "dims": 8, "num_heads": 2, "bias": False}))
    for dtype in ("float32", "float16"):
        m = nn.MultiHeadAttention.create_additive_causal_mask(4, getattr(mx, dtype))
        out.append(case("causal_mask", [], m, name=f"causal_mask_{dtype}", rtol=0, atol=0,
                        args={"n": 4, "dtype": dtype}))
    return out


# Every bits value and every group size of the affine mode at least once, and the three
# floating-point modes at their only (default) sizes.
QUANT = [("affine", 2, 32), ("affine", 3, 64), ("affine", 4, 128), ("affine", 5, 32),
         ("affine", 6, 64), ("affine", 8, 128), ("affine", 4, 32), ("affine", 8, 64),
         ("mxfp4", 4, 32), ("mxfp8", 8, 32), ("nvfp4", 4, 16)]


def quantized_cases():
    out = []
    for i, (mode, bits, group) in enumerate(QUANT):
        cin = max(group, 64)
        lin = randomize(nn.Linear(cin, 4, bias=i % 2 == 0))
        ql = nn.QuantizedLinear.from_linear(lin, group, bits, mode=mode)
        x = rand((2, cin))
        out.append(case("quantized_linear", [x], ql(x), name=f"qlinear_{mode}_{bits}_{group}",
                        args={"weights": params(lin), "quantized": params(ql), "mode": mode,
                              "bits": bits, "group_size": group, "bias": i % 2 == 0}))
    for mode, bits, group in (("affine", 4, 32), ("affine", 8, 64), ("mxfp4", 4, 32)):
        emb = randomize(nn.Embedding(5, 64))
        qe = nn.QuantizedEmbedding.from_embedding(emb, group, bits, mode=mode)
        ids, h = ints((2, 3), 5), rand((2, 64))
        out.append(case("quantized_embedding", [ids, h], [qe(ids), qe.as_linear(h)],
                        name=f"qembedding_{mode}_{bits}_{group}",
                        args={"weights": params(emb), "quantized": params(qe), "mode": mode,
                              "bits": bits, "group_size": group}))

    # nn.quantize over a small model: which layers are swapped, under which names
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(8, 32)
            self.norm = nn.RMSNorm(32)
            self.mlp = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16, bias=False))

        def __call__(self, ids):
            h = self.norm(self.embed(ids))
            return self.mlp(h), self.embed.as_linear(h)

    net = randomize(Net())
    dense = params(net)
    nn.quantize(net, group_size=32, bits=4)
    ids = ints((2, 3), 8)
    out.append(case("quantize_model", [ids], list(net(ids)),
                    args={"weights": dense, "quantized": params(net), "group_size": 32,
                          "bits": 4}))
    return out


def silu(x):
    return x * mx.sigmoid(x)


ACTIVATIONS = {
    "sigmoid": nn.sigmoid, "relu": nn.relu, "softplus": nn.softplus, "silu": nn.silu,
    "gelu": nn.gelu, "gelu_approx": nn.gelu_approx, "gelu_fast_approx": nn.gelu_fast_approx,
    "tanh": nn.tanh,
}


def activation_cases():
    out = []
    x = rand((3, 7), low=-6.0, high=6.0)
    for name, f in ACTIVATIONS.items():
        out.append(case("activation", [x], f(x), name=f"act_{name}", args={"fn": name}))
    for slope in (0.01, 0.2):
        out.append(case("activation", [x], nn.leaky_relu(x, slope), name=f"act_leaky_{slope}",
                        args={"fn": "leaky_relu", "slope": slope}))
    gate, y = rand((3, 7)), rand((7,))
    out.append(case("activation", [gate, y], silu(gate) * y, name="act_swiglu",
                    args={"fn": "swiglu"}))
    xh = x.astype(mx.float16)
    for name in ("silu", "gelu_approx", "relu"):
        out.append(case("activation", [xh], ACTIVATIONS[name](xh), name=f"act_{name}_f16",
                        rtol=F16[0], atol=F16[1], args={"fn": name}))
    return out


def loss_cases():
    out = []
    logits, targets = rand((4, 5)), ints((4,), 5)
    probs = mx.softmax(rand((4, 5)), axis=-1)
    w = rand((4,), low=0.0, high=2.0)
    for red in ("none", "mean", "sum"):
        out.append(case("loss", [logits, targets], nn.losses.cross_entropy(logits, targets, reduction=red),
                        name=f"ce_{red}", args={"fn": "cross_entropy", "reduction": red}))
    out.append(case("loss", [logits, targets],
                    nn.losses.cross_entropy(logits, targets, label_smoothing=0.1, reduction="mean"),
                    name="ce_smoothing", args={"fn": "cross_entropy", "reduction": "mean",
                                               "label_smoothing": 0.1}))
    out.append(case("loss", [logits, targets, w],
                    nn.losses.cross_entropy(logits, targets, weights=w, reduction="sum"),
                    name="ce_weights", args={"fn": "cross_entropy", "reduction": "sum",
                                             "weights": True}))
    out.append(case("loss", [logits, probs], nn.losses.cross_entropy(logits, probs),
                    name="ce_probs", args={"fn": "cross_entropy", "reduction": "none"}))
    out.append(case("loss", [logits, probs],
                    nn.losses.cross_entropy(logits, probs, label_smoothing=0.2, reduction="mean"),
                    name="ce_probs_smoothing", args={"fn": "cross_entropy", "reduction": "mean",
                                                     "label_smoothing": 0.2}))
    lt, tt = rand((5, 4)), ints((4,), 5)
    out.append(case("loss", [lt, tt], nn.losses.cross_entropy(lt, tt, axis=0),
                    name="ce_axis0", args={"fn": "cross_entropy", "reduction": "none", "axis": 0}))

    x, t = rand((6,), low=-3.0, high=3.0), rand((6,), low=0.0, high=1.0)
    p = mx.sigmoid(x)
    for red in ("none", "mean", "sum"):
        out.append(case("loss", [x, t], nn.losses.binary_cross_entropy(x, t, reduction=red),
                        name=f"bce_logits_{red}",
                        args={"fn": "binary_cross_entropy", "reduction": red, "with_logits": True}))
    out.append(case("loss", [p, t],
                    nn.losses.binary_cross_entropy(p, t, with_logits=False, reduction="mean"),
                    name="bce_probs", args={"fn": "binary_cross_entropy", "reduction": "mean",
                                            "with_logits": False}))
    bw = rand((6,), low=0.0, high=2.0)
    out.append(case("loss", [x, t, bw], nn.losses.binary_cross_entropy(x, t, weights=bw),
                    name="bce_weights", args={"fn": "binary_cross_entropy", "reduction": "mean",
                                              "with_logits": True, "weights": True}))

    a, b = rand((3, 4)), rand((3, 4))
    for red in ("none", "mean", "sum"):
        out.append(case("loss", [a, b], nn.losses.mse_loss(a, b, reduction=red),
                        name=f"mse_{red}", args={"fn": "mse_loss", "reduction": red}))
        out.append(case("loss", [a, b], nn.losses.l1_loss(a, b, reduction=red),
                        name=f"l1_{red}", args={"fn": "l1_loss", "reduction": red}))
    logp = nn.log_softmax(logits)
    for red in ("none", "mean"):
        out.append(case("loss", [logp, targets], nn.losses.nll_loss(logp, targets, reduction=red),
                        name=f"nll_{red}", args={"fn": "nll_loss", "reduction": red}))
    return out


def shortest_floats(obj):
    """Rewrites float tensors' values with the fewest digits that round-trip in float32."""
    if isinstance(obj, dict):
        if obj.get("dtype") in FLOATS and isinstance(obj.get("data"), list):
            obj["data"] = [float(str(np.float32(v))) for v in obj["data"]]
        for v in obj.values():
            shortest_floats(v)
    elif isinstance(obj, list):
        for v in obj:
            shortest_floats(v)
    return obj


if __name__ == "__main__":
    cases = layer_cases() + quantized_cases() + activation_cases() + loss_cases()
    save("nn", shortest_floats(cases))
