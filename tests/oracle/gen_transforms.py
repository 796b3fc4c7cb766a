"""Oracle for mlx-rs/tests/transforms/: gradients, VJPs, JVPs and vmaps of small
functions, computed by Python MLX. The Rust test defines the same functions (by `op`
name) with mlx-rs and compares."""
import mlx.core as mx

from fixture import case, rand, save

# The functions, mirrored one-to-one in transforms.rs (`fn function(name)`).
FUNCTIONS = {
    # sum(sin(x) * x²)
    "sin_sq": lambda x: (mx.sum(mx.sin(x) * x * x),),
    # mean((x @ w - y)²): linear regression loss, parameters first
    "mse": lambda w, x, y: (mx.mean(mx.square(x @ w - y)),),
    # sum(exp(x) * tanh(y)), plus an auxiliary output x + y
    "exp_tanh": lambda x, y: (mx.sum(mx.exp(x) * mx.tanh(y)), x + y,),
    # softplus summed: sum(log(1 + exp(x)))
    "softplus": lambda x: (mx.sum(mx.log(1 + mx.exp(x))),),
    # two outputs of two inputs (for vjp / jvp)
    "pair": lambda x, y: (x * y, mx.sin(x) + y,),
    # logistic regression loss with weights w and bias b
    "logistic": lambda w, b, x, t: (
        mx.mean(mx.log(1 + mx.exp(-t * (x @ w + b)))),
    ),
}


def grad_cases():
    cases = []

    def vg(name, args, argnums, dtype="float32", tol=(1e-5, 1e-6)):
        f = FUNCTIONS[name]
        value_and_grad = mx.value_and_grad(lambda *a: f(*a), argnums=argnums)
        values, grads = value_and_grad(*args)
        grads = list(grads) if isinstance(grads, (list, tuple)) else [grads]
        cases.append(
            case(
                "value_and_grad",
                list(args),
                list(values) + grads,
                args={"function": name, "argnums": argnums, "n_values": len(values)},
                rtol=tol[0],
                atol=tol[1],
                name=f"value_and_grad_{name}_{argnums}_{dtype}",
            )
        )

    vg("sin_sq", [rand((3, 4))], [0])
    vg("sin_sq", [rand((5,), "float16")], [0], "float16", (1e-2, 1e-2))
    vg("sin_sq", [rand((2, 3), "bfloat16")], [0], "bfloat16", (5e-2, 5e-2))
    vg("mse", [rand((4, 2)), rand((6, 4)), rand((6, 2))], [0])
    vg("mse", [rand((4, 2)), rand((6, 4)), rand((6, 2))], [0, 1])
    vg("mse", [rand((4, 2)), rand((6, 4)), rand((6, 2))], [2])
    vg("exp_tanh", [rand((2, 3)), rand((2, 3))], [0, 1])
    vg("exp_tanh", [rand((3,)), rand((2, 3))], [1])  # broadcasting
    vg("softplus", [rand((7,), low=-4, high=4)], [0])
    t = mx.where(rand((8,)) > 0, 1.0, -1.0)
    vg("logistic", [rand((3,)), rand(()), rand((8, 3)), t], [0, 1])

    def vjp(name, primals, cotangents):
        f = FUNCTIONS[name]
        outs, vjps = mx.vjp(lambda *a: f(*a), primals, cotangents)
        cases.append(
            case(
                "vjp",
                primals + cotangents,
                list(outs) + list(vjps),
                args={"function": name, "n_primals": len(primals)},
                name=f"vjp_{name}",
            )
        )

    def jvp(name, primals, tangents):
        f = FUNCTIONS[name]
        outs, jvps = mx.jvp(lambda *a: f(*a), primals, tangents)
        cases.append(
            case(
                "jvp",
                primals + tangents,
                list(outs) + list(jvps),
                args={"function": name, "n_primals": len(primals)},
                name=f"jvp_{name}",
            )
        )

    vjp("pair", [rand((2, 3)), rand((2, 3))], [rand((2, 3)), rand((2, 3))])
    vjp("sin_sq", [rand((4,))], [rand(())])
    vjp("mse", [rand((3, 1)), rand((5, 3)), rand((5, 1))], [rand(())])
    jvp("pair", [rand((2, 3)), rand((2, 3))], [rand((2, 3)), rand((2, 3))])
    jvp("exp_tanh", [rand((4,)), rand((4,))], [rand((4,)), rand((4,))])
    jvp("softplus", [rand((3, 2))], [rand((3, 2))])

    # second derivative of sum(sin(x)·x²), elementwise: d²/dx² (sin x · x²)
    x = rand((5,))
    g = mx.grad(lambda x: mx.sum(mx.grad(lambda y: FUNCTIONS["sin_sq"](y)[0])(x)))
    cases.append(case("grad_grad", [x], [g(x)], args={"function": "sin_sq"}, rtol=1e-4, atol=1e-5))

    # vmap of `pair` over axis 1 of x and axis 0 of y, outputs stacked on axis 1 / 0
    x, y = rand((2, 4)), rand((4, 2))
    vf = mx.vmap(lambda x, y: FUNCTIONS["pair"](x, y), in_axes=(1, 0), out_axes=(1, 0))
    cases.append(
        case(
            "vmap",
            [x, y],
            list(vf(x, y)),
            args={"function": "pair", "in_axes": [1, 0], "out_axes": [1, 0]},
        )
    )
    return cases


def export_cases():
    """Functions exported by Python MLX (binary .mlxfn files beside the fixture) that the
    Rust test imports and runs."""
    import os

    from fixture import FIXTURES

    cases = []
    x, y = rand((2, 3)), rand((2, 3))
    f = lambda x, y: (mx.sin(x) * y + 1.0, mx.sum(x * y))
    mx.export_function(os.path.join(FIXTURES, "transforms_export.mlxfn"), f, x, y)
    cases.append(case("imported", [x, y], list(f(x, y)), args={"file": "transforms_export.mlxfn"}))
    g = lambda x, *, scale: (x * scale,)
    mx.export_function(os.path.join(FIXTURES, "transforms_export_kwargs.mlxfn"), g, x, scale=mx.array(2.0))
    scale = mx.array(-3.0)
    cases.append(case("imported_kwargs", [x, scale], list(g(x, scale=scale)),
                      args={"file": "transforms_export_kwargs.mlxfn", "kwarg": "scale"}))
    return cases


save("transforms", grad_cases() + export_cases())
