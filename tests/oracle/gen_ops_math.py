"""Oracle cases for mlx-rs's math ops (tests/ops_math.rs): arithmetic, element-wise math,
comparisons, logical/bitwise ops, reductions, scans, softmax and products.

Every case's `op` is the Rust function name; its `args` are that function's parameters.
Inputs are finite (JSON has no NaN): cases that need NaN or infinities (`nan_to_num`,
`isnan`, …) set `ratio`, and both sides feed the op `inputs[0] / inputs[1]` instead.
"""
import mlx.core as mx
import numpy as np

from fixture import RNG, case, rand, save

TOL = {
    "float32": (1e-5, 1e-6),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1e-2),
}
# Transcendental kernels may differ in the last bits across devices.
TOL_FN = {"float32": (1e-5, 1e-5), "float16": (2e-3, 2e-3), "bfloat16": (2e-2, 2e-2)}

cases = []


def add(op, inputs, output, name=None, tol=None, **args):
    dt = str(inputs[0].dtype).replace("mlx.core.", "") if inputs else "float32"
    rtol, atol = tol or TOL.get(dt, (0.0, 0.0))
    cases.append(case(op, inputs, output, args=args, rtol=rtol, atol=atol, name=name or op))


def fn_tol(dt):
    return TOL_FN[dt]


def positive(shape, dtype="float32", low=0.1, high=3.0):
    return rand(shape, dtype, low, high)


# ---- element-wise unary math -------------------------------------------------------
domains = {
    "abs": (-2, 2), "exp": (-2, 2), "expm1": (-1, 1), "log": (0.1, 3), "log10": (0.1, 3),
    "log2": (0.1, 3), "log1p": (-0.5, 2), "sin": (-3, 3), "cos": (-3, 3), "tan": (-1.2, 1.2),
    "sinh": (-2, 2), "cosh": (-2, 2), "tanh": (-2, 2), "arcsin": (-0.99, 0.99),
    "arccos": (-0.99, 0.99), "arctan": (-3, 3), "arcsinh": (-3, 3), "arccosh": (1.01, 4),
    "arctanh": (-0.95, 0.95), "degrees": (-3, 3), "radians": (-180, 180), "ceil": (-3, 3),
    "floor": (-3, 3), "trunc": (-3, 3), "erf": (-2, 2), "erfinv": (-0.95, 0.95),
    "sigmoid": (-4, 4), "sign": (-2, 2), "reciprocal": (0.2, 3), "rsqrt": (0.1, 3),
    "sqrt": (0.0, 4), "square": (-3, 3), "negative": (-3, 3), "positive": (-3, 3),
    "stop_gradient": (-3, 3),
}
for op, (lo, hi) in domains.items():
    x = rand([2, 3], "float32", lo, hi)
    add(op, [x], getattr(mx, op)(x), tol=fn_tol("float32"))
for op, dt in [("exp", "bfloat16"), ("sigmoid", "float16"), ("tanh", "bfloat16"),
               ("floor", "float16"), ("log", "float16"), ("sin", "bfloat16")]:
    lo, hi = domains[op]
    x = rand([5], dt, lo, hi)
    add(op, [x], getattr(mx, op)(x), name=f"{op}_{dt}", tol=fn_tol(dt))
for op in ["abs", "sign", "negative", "square"]:
    x = rand([6], "int32", -5, 5)
    add(op, [x], getattr(mx, op)(x), name=f"{op}_int32")
z = mx.array(RNG.uniform(-2, 2, 4) + 1j * RNG.uniform(-2, 2, 4)).astype(mx.complex64)
for op in ["real", "imag", "conjugate", "abs"]:
    add(op, [z], getattr(mx, op)(z), name=f"{op}_complex64", tol=(1e-5, 1e-6))

x = mx.array([0.5, 1.5, 2.5, -0.5, -1.5, 1.234567, 125.0, -37.0])
for d in [0, 2, -1]:
    add("round", [x], mx.round(x, d), name=f"round_{d}", decimals=d)
add("round", [mx.array([15, 25, -35], mx.int32)], mx.round(mx.array([15, 25, -35], mx.int32), -1),
    name="round_int32_-1", decimals=-1)

x = rand([3, 4])
lo_, hi_ = rand([1, 4], low=-1.5, high=-0.5), mx.array(0.8)
add("clip", [x, lo_, hi_], mx.clip(x, lo_, hi_), name="clip_both", bounds="both")
add("clip", [x, lo_], mx.clip(x, lo_, None), name="clip_min", bounds="min")
add("clip", [x, hi_], mx.clip(x, None, hi_), name="clip_max", bounds="max")

num = mx.array([0.0, 1.0, -1.0, 2.5, 0.0, 3.0, -4.0])
den = mx.array([0.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0])
ratio = num / den
add("nan_to_num", [num, den], mx.nan_to_num(ratio, 0.0), name="nan_to_num_default", ratio=True,
    nan=0.0)
add("nan_to_num", [num, den], mx.nan_to_num(ratio, -7.0, 100.0, -100.0), name="nan_to_num_set",
    ratio=True, nan=-7.0, posinf=100.0, neginf=-100.0)
r16 = ratio.astype(mx.float16)
add("nan_to_num", [num.astype(mx.float16), den.astype(mx.float16)], mx.nan_to_num(r16, 1.0),
    name="nan_to_num_float16", ratio=True, nan=1.0)
for op in ["isnan", "isinf", "isfinite", "isneginf", "isposinf"]:
    add(op, [num, den], getattr(mx, op)(ratio), ratio=True)

# ---- binary arithmetic --------------------------------------------------------------
a, b = rand([3, 1]), rand([1, 4])
for op in ["add", "subtract", "multiply", "maximum", "minimum", "logaddexp", "arctan2"]:
    add(op, [a, b], getattr(mx, op)(a, b), name=f"{op}_broadcast", tol=fn_tol("float32"))
p = positive([1, 4])
add("divide", [a, p], mx.divide(a, p), name="divide_broadcast")
for dt in ["float16", "bfloat16"]:
    x, y = rand([2, 3], dt), rand([3], dt)
    add("add", [x, y], x + y, name=f"add_{dt}")
    add("multiply", [x, y], x * y, name=f"multiply_{dt}")
xi, yi = rand([2, 3], "int32", -10, 10), rand([2, 3], "int32", 1, 5)
add("add", [xi, yi], xi + yi, name="add_int32")
add("divide", [xi, yi], xi / yi, name="divide_int32_true", tol=TOL["float32"])
add("floor_divide", [xi, yi], mx.floor_divide(xi, yi), name="floor_divide_int32")
add("remainder", [xi, -yi], mx.remainder(xi, -yi), name="remainder_int32_negative_divisor")
f = rand([3])
add("add", [xi, f], xi + f, name="add_int32_float32_promotes", tol=TOL["float32"])
bb, ii = rand([4], "bool"), rand([4], "int32", 0, 5)
add("add", [bb, ii], bb + ii, name="add_bool_int32")
x, y = rand([2, 3], low=-5, high=5), positive([2, 3], low=0.5, high=2)
add("remainder", [x, y], mx.remainder(x, y), name="remainder_float32")
add("floor_divide", [x, y], mx.floor_divide(x, y), name="floor_divide_float32")
add("divmod", [x, y], list(mx.divmod(x, y)), name="divmod_float32")
add("divmod", [xi, yi], list(mx.divmod(xi, yi)), name="divmod_int32")
base, ex = positive([4], low=0.5, high=2), rand([4], low=-2, high=2)
add("power", [base, ex], mx.power(base, ex), name="power_float32", tol=fn_tol("float32"))
bi, ei = rand([5], "int32", -3, 4), rand([5], "int32", 0, 4)
add("power", [bi, ei], mx.power(bi, ei), name="power_int32")
m1, m2 = rand([2, 3]), rand([3, 4])
add("matmul", [m1, m2], m1 @ m2, name="matmul_2d", tol=(1e-5, 1e-5))
m1, m2 = rand([2, 1, 3, 4]), rand([3, 4, 2])
add("matmul", [m1, m2], m1 @ m2, name="matmul_batch_broadcast", tol=(1e-5, 1e-5))

# ---- comparisons ----------------------------------------------------------------------
ci, cj = rand([3, 1], "int32", 0, 3), rand([1, 4], "int32", 0, 3)
for op in ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]:
    add(op, [ci, cj], getattr(mx, op)(ci, cj), name=f"{op}_broadcast")
x = rand([5])
y = x + mx.array([0.0, 1e-6, 1e-3, -2e-5, 0.5])
add("isclose", [x, y], mx.isclose(x, y, rtol=1e-5, atol=1e-8), name="isclose_default",
    rtol=1e-5, atol=1e-8, equal_nan=False)
add("isclose", [x, y], mx.isclose(x, y, rtol=0.0, atol=1e-2), name="isclose_atol",
    rtol=0.0, atol=1e-2, equal_nan=False)
add("allclose", [x, y], mx.allclose(x, y, rtol=1e-5, atol=1e-8), name="allclose_false",
    rtol=1e-5, atol=1e-8, equal_nan=False)
add("allclose", [x, y], mx.allclose(x, y, rtol=0.0, atol=1.0), name="allclose_true",
    rtol=0.0, atol=1.0, equal_nan=False)
add("array_equal", [xi, xi.astype(mx.float32)], mx.array_equal(xi, xi.astype(mx.float32)),
    name="array_equal_across_dtypes", equal_nan=False)
add("array_equal", [xi, xi[:1]], mx.array_equal(xi, xi[:1]), name="array_equal_shapes_differ",
    equal_nan=False)
cond, wx, wy = rand([3, 1], "bool"), rand([1, 4]), rand([3, 4])
add("where", [cond, wx, wy], mx.where(cond, wx, wy), name="where_broadcast")

# ---- logical and bitwise ----------------------------------------------------------------
p_, q_ = rand([6], "bool"), rand([6], "bool")
for op in ["logical_and", "logical_or", "logical_xor"]:
    add(op, [p_, q_], getattr(mx, op)(p_, q_))
lf = mx.array([0.0, 1.5, -2.0, 0.0])
add("logical_not", [lf], mx.logical_not(lf), name="logical_not_float32")
u, v = rand([5], "int32", -100, 100), rand([5], "int32", -100, 100)
for op in ["bitwise_and", "bitwise_or", "bitwise_xor"]:
    add(op, [u, v], getattr(mx, op)(u, v), name=f"{op}_int32")
u8, v8 = rand([5], "uint8", 0, 255), rand([5], "uint8", 0, 255)
add("bitwise_xor", [u8, v8], mx.bitwise_xor(u8, v8), name="bitwise_xor_uint8")
add("bitwise_and", [p_, q_], mx.bitwise_and(p_, q_), name="bitwise_and_bool")
add("bitwise_invert", [u], mx.bitwise_invert(u), name="bitwise_invert_int32")
add("bitwise_invert", [u8], mx.bitwise_invert(u8), name="bitwise_invert_uint8")
sh = rand([5], "int32", 0, 6)
add("left_shift", [u, sh], mx.left_shift(u, sh), name="left_shift_int32")
add("right_shift", [u, sh], mx.right_shift(u, sh), name="right_shift_int32_arithmetic")

# ---- reductions ----------------------------------------------------------------------------
r = rand([2, 3, 4])
add("sum", [r], mx.sum(r), keepdims=False)
add("sum", [r], mx.sum(r, keepdims=True), name="sum_keepdims", keepdims=True)
add("sum_axis", [r], mx.sum(r, axis=-1), axis=-1, keepdims=False)
add("sum_axes", [r], mx.sum(r, axis=[0, 2], keepdims=True), name="sum_axes_keepdims",
    axes=[0, 2], keepdims=True)
rb = rand([4, 8], "bfloat16")
add("sum_axis", [rb], mx.sum(rb, axis=1), name="sum_axis_bfloat16", axis=1, keepdims=False)
rbool = rand([3, 5], "bool")
add("sum_axis", [rbool], mx.sum(rbool, axis=0), name="sum_axis_bool_counts", axis=0,
    keepdims=False)
add("mean", [r], mx.mean(r), keepdims=False)
rh = rand([3, 6], "float16")
add("mean_axis", [rh], mx.mean(rh, axis=0, keepdims=True), name="mean_axis_float16",
    axis=0, keepdims=True)
add("mean_axes", [r], mx.mean(r, axis=[-1, -2]), axes=[-1, -2], keepdims=False)
ri = rand([3, 5], "int32", -50, 50)
add("max", [ri], mx.max(ri), name="max_int32", keepdims=False)
add("max_axis", [ri], mx.max(ri, axis=1), name="max_axis_int32", axis=1, keepdims=False)
add("max_axes", [r], mx.max(r, axis=[0, 1]), axes=[0, 1], keepdims=False)
add("min", [r], mx.min(r, keepdims=True), keepdims=True)
add("min_axis", [r], mx.min(r, axis=-2), axis=-2, keepdims=False)
add("min_axes", [ri], mx.min(ri, axis=[0, 1], keepdims=True), name="min_axes_int32",
    axes=[0, 1], keepdims=True)
rp = rand([3, 4], low=0.5, high=1.5)
add("prod", [rp], mx.prod(rp), keepdims=False, tol=(1e-5, 1e-6))
add("prod_axis", [rp], mx.prod(rp, axis=0), axis=0, keepdims=False)
add("prod_axes", [ri], mx.prod(ri, axis=[1], keepdims=True), name="prod_axes_int32",
    axes=[1], keepdims=True)
ab = mx.array([[True, True, False], [True, True, True]])
add("all", [ab], mx.all(ab), keepdims=False)
add("all_axis", [ab], mx.all(ab, axis=1), axis=1, keepdims=False)
add("all_axes", [ri], mx.all(ri, axis=[0]), name="all_axes_int32", axes=[0], keepdims=False)
add("any", [ab], mx.any(ab, keepdims=True), keepdims=True)
add("any_axis", [mx.logical_not(ab)], mx.any(mx.logical_not(ab), axis=0), axis=0, keepdims=False)
add("any_axes", [ab], mx.any(ab, axis=[0, 1]), axes=[0, 1], keepdims=False)
add("logsumexp", [r], mx.logsumexp(r), keepdims=False, tol=fn_tol("float32"))
add("logsumexp_axis", [r * 30], mx.logsumexp(r * 30, axis=-1), name="logsumexp_axis_large",
    axis=-1, keepdims=False, tol=fn_tol("float32"))
add("logsumexp_axes", [r], mx.logsumexp(r, axis=[0, 2], keepdims=True), axes=[0, 2],
    keepdims=True, tol=fn_tol("float32"))
cz = mx.array([[0, 1, 0, 3], [2, 0, 0, 0]], mx.int32)
add("count_nonzero", [cz], mx.count_nonzero(cz), keepdims=False)
add("count_nonzero_axis", [cz], mx.count_nonzero(cz, axis=1), axis=1, keepdims=False)
add("count_nonzero_axes", [cz.astype(mx.float32)], mx.count_nonzero(cz, axis=[0, 1], keepdims=True),
    axes=[0, 1], keepdims=True)
rm = rand([3, 5])
add("median", [rm], mx.median(rm), keepdims=False)
add("median_axis", [rm], mx.median(rm, axis=1), axis=1, keepdims=False)
add("median_axes", [r], mx.median(r, axis=[0, 2]), axes=[0, 2], keepdims=False)
add("var", [r], mx.var(r), keepdims=False, ddof=0)
add("var_axis", [r], mx.var(r, axis=1, ddof=1), axis=1, keepdims=False, ddof=1)
add("var_axes", [r], mx.var(r, axis=[0, 1], keepdims=True), axes=[0, 1], keepdims=True, ddof=0)
add("std", [r], mx.std(r, ddof=1), keepdims=False, ddof=1)
add("std_axis", [r], mx.std(r, axis=-1, keepdims=True), axis=-1, keepdims=True, ddof=0)
add("std_axes", [r], mx.std(r, axis=[1, 2]), axes=[1, 2], keepdims=False, ddof=0)
add("argmax", [ri], mx.argmax(ri), keepdims=False)
add("argmax_axis", [r], mx.argmax(r, axis=-1, keepdims=True), axis=-1, keepdims=True)
add("argmin", [r], mx.argmin(r, keepdims=True), keepdims=True)
add("argmin_axis", [ri], mx.argmin(ri, axis=0), axis=0, keepdims=False)

# ---- scans and softmax ------------------------------------------------------------------------
s2 = rand([3, 4])
add("cumsum", [s2], mx.cumsum(s2), reverse=False, inclusive=True, dtype=None)
add("cumsum_axis", [s2], mx.cumsum(s2, axis=1, reverse=True, inclusive=False),
    name="cumsum_axis_reverse_exclusive", axis=1, reverse=True, inclusive=False, dtype=None)
s8 = rand([6], "int8", -5, 5)
add("cumsum_axis", [s8], mx.cumsum(s8, axis=0, dtype=mx.float32), name="cumsum_axis_int8_to_float32",
    axis=0, reverse=False, inclusive=True, dtype="float32")
add("cumsum", [rbool], mx.cumsum(rbool), name="cumsum_bool", reverse=False, inclusive=True,
    dtype=None)
sp = rand([3, 4], low=0.5, high=1.5)
add("cumprod", [sp], mx.cumprod(sp, reverse=True), reverse=True, inclusive=True, dtype=None)
add("cumprod_axis", [sp], mx.cumprod(sp, axis=0, inclusive=False), name="cumprod_axis_exclusive",
    axis=0, reverse=False, inclusive=False, dtype=None)
add("cummax", [s2], mx.cummax(s2), reverse=False, inclusive=True)
add("cummax_axis", [ri], mx.cummax(ri, axis=1, reverse=True), name="cummax_axis_int32_reverse",
    axis=1, reverse=True, inclusive=True)
add("cummin", [s2], mx.cummin(s2, reverse=True), reverse=True, inclusive=True)
add("cummin_axis", [s2], mx.cummin(s2, axis=0), axis=0, reverse=False, inclusive=True)
add("logcumsumexp", [s2], mx.logcumsumexp(s2), reverse=False, inclusive=True,
    tol=fn_tol("float32"))
add("logcumsumexp_axis", [s2], mx.logcumsumexp(s2, axis=-1, reverse=True),
    axis=-1, reverse=True, inclusive=True, tol=fn_tol("float32"))
add("softmax", [s2], mx.softmax(s2), precise=False, tol=fn_tol("float32"))
add("softmax_axis", [s2], mx.softmax(s2, axis=-1), axis=-1, precise=False, tol=fn_tol("float32"))
sb = rand([2, 8], "bfloat16", -4, 4)
add("softmax_axis", [sb], mx.softmax(sb, axis=-1, precise=True), name="softmax_axis_bfloat16_precise",
    axis=-1, precise=True, tol=fn_tol("bfloat16"))
sh16 = rand([2, 8], "float16", -4, 4)
add("softmax_axis", [sh16], mx.softmax(sh16, axis=0), name="softmax_axis_float16",
    axis=0, precise=False, tol=fn_tol("float16"))
add("softmax_axes", [r], mx.softmax(r, axis=[0, 2]), axes=[0, 2], precise=False,
    tol=fn_tol("float32"))

# ---- products ---------------------------------------------------------------------------------
c, ma, mb = rand([1, 4]), rand([3, 5]), rand([5, 4])
add("addmm", [c, ma, mb], mx.addmm(c, ma, mb, alpha=0.5, beta=2.0), alpha=0.5, beta=2.0,
    tol=(1e-5, 1e-5))
va, vb = rand([2, 3]), rand([4, 3])
add("inner", [va, vb], mx.inner(va, vb), tol=(1e-5, 1e-5))
o1, o2 = rand([3]), rand([2, 2])
add("outer", [o1, o2], mx.outer(o1, o2))
k1, k2 = rand([2, 2], "int32", -3, 3), rand([2, 3], "int32", -3, 3)
add("kron", [k1, k2], mx.kron(k1, k2), name="kron_int32")
t1, t2 = rand([2, 3, 4]), rand([4, 3, 5])
add("tensordot", [t1, t2], mx.tensordot(t1, t2, axes=([1, 2], [1, 0])), axes_a=[1, 2],
    axes_b=[1, 0], tol=(1e-5, 1e-5))
t3 = rand([4, 2])
add("tensordot_axis", [t1, t3], mx.tensordot(t1, t3, axes=1), axis=1, tol=(1e-5, 1e-5))
vd = rand([1, 3])
add("vecdot", [va, vd], mx.vecdot(va, vd, axis=-1), name="vecdot_broadcast", axis=-1,
    tol=(1e-5, 1e-5))
add("vecdot", [z, z * 2], mx.vecdot(z, z * 2, axis=0), name="vecdot_complex_conjugates",
    axis=0, tol=(1e-5, 1e-5))
e1, e2 = rand([2, 3]), rand([3, 4])
add("einsum", [e1, e2], mx.einsum("ij,jk->ik", e1, e2), name="einsum_matmul",
    subscripts="ij,jk->ik", tol=(1e-5, 1e-5))
eb1, eb2 = rand([2, 3, 4]), rand([2, 4, 2])
add("einsum", [eb1, eb2], mx.einsum("bij,bjk->bik", eb1, eb2), name="einsum_batch",
    subscripts="bij,bjk->bik", tol=(1e-5, 1e-5))
sq = rand([3, 3])
add("einsum", [sq], mx.einsum("ii->i", sq), name="einsum_diagonal", subscripts="ii->i")
add("einsum", [e1[0], e1[1]], mx.einsum("i,i", e1[0], e1[1]), name="einsum_dot_implicit",
    subscripts="i,i", tol=(1e-5, 1e-5))

save("ops_math", cases)
