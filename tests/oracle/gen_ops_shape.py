"""Oracle cases for creation, shape, indexing, sort, conv and quantized ops
(mlx-rs/tests/ops_shape/) and for NumPy-style indexing (mlx-rs/tests/indexing.rs).

Writes mlx-rs/tests/fixtures/ops_shape.json and ops_shape_index.json. Where Python MLX
has no binding for an op (gather, scatter, copy, number_of_elements, masked_scatter),
the expected values come from NumPy over the same inputs.
"""
import mlx.core as mx
import numpy as np

from fixture import RNG, case, rand, save

mx.set_default_device(mx.cpu)

cases = []


def add(op, inputs, output, name=None, tol="f32", **args):
    rtol, atol = {"f32": (1e-5, 1e-6), "f16": (1e-3, 1e-3), "bf16": (1e-2, 1e-2),
                  "exact": (0.0, 0.0), "conv": (1e-4, 1e-4)}[tol]
    cases.append(case(op, inputs, output, args, rtol=rtol, atol=atol, name=name or op))


def arange(shape, dtype="int32"):
    n = int(np.prod(shape))
    return mx.arange(n).reshape(shape).astype(getattr(mx, dtype))


def dy(shape, dtype="float32", lo=-2, hi=2):
    """Random multiples of 1/16 in [lo, hi): exact in every float dtype and short in JSON,
    for the larger inputs."""
    data = RNG.integers(lo * 16, hi * 16, size=shape).astype(np.float32) / 16
    return mx.array(data).astype(getattr(mx, dtype))


# ---------------------------------------------------------------- creation
v = mx.array(2.5)
add("full", [v], mx.full((2, 3), v, mx.float32), shape=[2, 3], dtype="float32")
add("full", [mx.array([1, 2, 3])], mx.full((2, 3), mx.array([1, 2, 3]), mx.int32),
    name="full_broadcast_int", shape=[2, 3], dtype="int32")
a = rand((2, 3), "float16")
add("full_like", [a, mx.array(7)], mx.full_like(a, 7), dtype="float16", tol="f16")
add("zeros_like", [rand((3, 2), "bfloat16")], mx.zeros((3, 2), mx.bfloat16))
add("zeros_like_dtype", [rand((3, 2))], mx.zeros((3, 2), mx.int32), dtype="int32")
add("ones_like", [rand((2, 2), "int32")], mx.ones((2, 2), mx.int32))
add("ones_like_dtype", [rand((4,))], mx.ones((4,), mx.float16), dtype="float16")
add("zeros", [], mx.zeros((2, 0, 3), mx.float32), shape=[2, 0, 3], dtype="float32")
add("ones", [], mx.ones((3,), mx.bool_), shape=[3], dtype="bool")
add("identity", [], mx.identity(4, mx.float32), n=4, dtype="float32")
add("eye", [], mx.eye(3, 5, 1, mx.int32), n=3, m=5, k=1, dtype="int32")
add("arange", [], mx.arange(1.0, 2.0, 0.25), start=1.0, stop=2.0, step=0.25, dtype="float32")
add("linspace", [], mx.linspace(-1, 1, 7), start=-1.0, stop=1.0, num=7, dtype="float32")
add("linspace_endpoint", [], mx.linspace(0, 1, 5, endpoint=False), start=0.0, stop=1.0,
    num=5, endpoint=False, dtype="float32")
add("tri", [], mx.tri(3, 4, 1, mx.float32), n=3, m=4, k=1, dtype="float32")
x = rand((2, 4, 4))
add("tril", [x], mx.tril(x, -1), k=-1)
x = rand((3, 5), "int32", -9, 9)
add("triu", [x], mx.triu(x, 1), k=1)
xs, ys = mx.arange(3), mx.arange(4).astype(mx.float32)
add("meshgrid", [xs, ys], mx.meshgrid(xs, ys), sparse=False, indexing="xy")
add("meshgrid", [xs, ys], mx.meshgrid(xs, ys, sparse=True, indexing="ij"),
    name="meshgrid_sparse_ij", sparse=True, indexing="ij")
for w in ("bartlett", "blackman", "hamming", "hanning"):
    add(w, [], getattr(mx, w)(7), m=7, tol="conv")
x = rand((4,))
add("diag", [x], mx.diag(x, 1), k=1)
x = rand((4, 5), "int32", -5, 5)
add("diag", [x], mx.diag(x, -1), name="diag_of_matrix", k=-1)
x = rand((2, 3, 4))
add("diagonal", [x], mx.diagonal(x, 1, 2, 1), offset=1, axis1=2, axis2=1)
x = rand((3, 3))
add("trace", [x], mx.trace(x))
x = rand((2, 3, 4), "int32", -5, 5)
add("trace_axes", [x], mx.trace(x, -1, 1, 2, dtype=mx.float32), offset=-1, axis1=1, axis2=2,
    dtype="float32")

# ---------------------------------------------------------------- shape
x = rand((2, 3, 4), "bfloat16")
add("reshape", [x], x.reshape(4, -1), shape=[4, -1])
x = dy((2, 3, 4, 5), "float16")
add("flatten", [x], mx.flatten(x, 1, 2), start_axis=1, end_axis=2)
x = rand((2, 12))
add("unflatten", [x], mx.unflatten(x, 1, (3, -1)), axis=1, shape=[3, -1])
x = rand((1, 3, 1, 2), "int32")
add("squeeze", [x], mx.squeeze(x))
add("squeeze_axis", [x], mx.squeeze(x, 2), axis=2)
add("squeeze_axes", [x], mx.squeeze(x, (0, -2)), axes=[0, -2])
x = rand((2, 3), "bool")
add("expand_dims", [x], mx.expand_dims(x, -1), axis=-1)
add("expand_dims_axes", [x], mx.expand_dims(x, (0, 3)), axes=[0, 3])
x = rand((2, 3, 4))
add("transpose", [x], mx.transpose(x))
add("transpose_axes", [x], mx.transpose(x, (1, 2, 0)), axes=[1, 2, 0])
add("swapaxes", [x], mx.swapaxes(x, 0, 2), axis1=0, axis2=2)
add("moveaxis", [x], mx.moveaxis(x, 0, -1), source=0, destination=-1)
x = rand((3, 1), "uint8", 0, 200)
add("broadcast_to", [x], mx.broadcast_to(x, (2, 3, 4)), shape=[2, 3, 4])
p, q = rand((3, 1)), rand((4,), "float32")
add("broadcast_arrays", [p, q], mx.broadcast_arrays(p, q))
p, q = rand((2, 3), "float16"), rand((1, 3), "float16")
add("concatenate_axis", [p, q], mx.concatenate([p, q], 0), axis=0, tol="f16")
add("concatenate", [p, q], mx.concatenate([p.flatten(), q.flatten()]), tol="f16")
p, q = rand((2, 3), "int32"), rand((2, 3), "int32")
add("stack", [p, q], mx.stack([p, q]))
add("stack_axis", [p, q], mx.stack([p, q], -1), axis=-1)
x = rand((4, 6))
add("split", [x], mx.split(x, 3, 1), num_splits=3, axis=1)
add("split_sections", [x], mx.split(x, [1, 3], 0), indices=[1, 3], axis=0)
add("unstack", [x], [x[i] for i in range(4)])
add("unstack_axis", [x], [x[:, i] for i in range(6)], axis=1)
x = rand((2, 3), "int32")
add("tile", [x], mx.tile(x, (2, 1, 2)), reps=[2, 1, 2])
add("repeat", [x], mx.repeat(x, 2), repeats=2)
add("repeat_axis", [x], mx.repeat(x, 3, 1), repeats=3, axis=1)
x = rand((2, 3))
add("pad", [x, mx.array(-1.0)], mx.pad(x, [(1, 0), (0, 2)], constant_values=-1.0), axes=[0, 1],
    low=[1, 0], high=[0, 2], mode="constant")
add("pad", [x, mx.array(0.0)], mx.pad(x, [(0, 0), (2, 1)], mode="edge"), name="pad_edge",
    axes=[0, 1], low=[0, 2], high=[0, 1], mode="edge")
add("pad_symmetric", [x, mx.array(3.0)], mx.pad(x, 1, constant_values=3.0), pad_width=1, mode="constant")
x = arange((3, 4))
add("roll", [x], mx.roll(x, 5), shift=[5])
add("roll_axis", [x], mx.roll(x, -1, 1), shift=[-1], axis=1)
add("roll_axes", [x], mx.roll(x, (1, 2), (0, 1)), shift=[1, 2], axes=[0, 1])
x = rand((2, 3, 2), "bfloat16")
add("flip", [x], x[::-1, ::-1, ::-1])
add("flip_axis", [x], x[:, ::-1], axis=1)
add("flip_axes", [x], x[::-1, :, ::-1], axes=[0, 2])
s = mx.array(3.0)
add("atleast_1d", [s], mx.atleast_1d(s))
x = rand((3,))
add("atleast_2d", [x], mx.atleast_2d(x))
x = rand((3,), "int32")
add("atleast_3d", [x], mx.atleast_3d(x))
x = arange((3, 4))
add("as_strided", [x], mx.as_strided(x, (3, 2), (4, 2), 1), shape=[3, 2], strides=[4, 2],
    offset=1)
x = rand((2, 4))
add("view", [x], x.view(mx.int32), dtype="int32", tol="exact")
x = rand((2, 4), "int32", -100, 100)
add("view", [x], x.view(mx.uint8), name="view_bytes", dtype="uint8", tol="exact")
x = rand((2, 3), "float16")
add("copy", [x], x, tol="exact")
x = rand((2, 3, 4))
add("number_of_elements", [x], mx.array(2 * 4, mx.float32), axes=[0, 2], inverted=False,
    dtype="float32")
add("number_of_elements", [x], mx.array(1 / 8, mx.float32), name="number_of_elements_inverted",
    axes=[0, 2], inverted=True, dtype="float32")
x = rand((3, 5))
add("diff", [x], mx.diff(x, 2, 1), n=2, axis=1)
x = rand((3, 4), "int32", -20, 20)
add("diff", [x], mx.diff(x, 1, 0), name="diff_int_axis0", n=1, axis=0)
x = mx.array([[0.0, 0.5, -1.25, 3.0], [448.0, -0.001953125, 17.0, 100.0]])
f8 = mx.to_fp8(x)
add("to_fp8", [x], f8, tol="exact")
add("from_fp8", [f8], mx.from_fp8(f8, mx.float32), dtype="float32", tol="exact")
add("from_fp8", [f8], mx.from_fp8(f8, mx.bfloat16), name="from_fp8_bf16", dtype="bfloat16",
    tol="exact")

# ---------------------------------------------------------------- indexing ops
x = rand((3, 4))
i = mx.array([[2, -1], [0, 5]])
add("take", [x, i], mx.take(x, i))
i = mx.array([2, 0, 2, -1])
add("take_axis", [x, i], mx.take(x, i, 1), axis=1)
x = rand((3, 4), "float16")
i = mx.argsort(x, 1)
add("take_along_axis", [x, i], mx.take_along_axis(x, i, 1), axis=1, tol="exact")
x = rand((3, 4), "int32")
i = mx.array([[1], [0], [3]])
vals = mx.array([[10], [20], [30]])
add("put_along_axis", [x, i, vals], mx.put_along_axis(x, i, vals, 1), axis=1)
acc = np.array(x).copy()
np.add.at(acc, (np.arange(3)[:, None], np.array([[1, 1], [0, 2], [3, 3]])), 5)
add("scatter_add_axis", [x, mx.array([[1, 1], [0, 2], [3, 3]]), mx.full((3, 2), 5, mx.int32)],
    mx.array(acc), axis=1)

x = rand((4, 5, 3))
i0, i1 = mx.array([0, 3, 1]), mx.array([[4], [0]])
npx = np.array(x)
# gather with slice sizes (1, 1, 2): out[b..] = x[i0, i1, 0:2]
bi0, bi1 = np.broadcast_arrays(np.array(i0), np.array(i1))
exp = npx[bi0, bi1, 0:2].reshape(bi0.shape + (1, 1, 2))
add("gather", [x, i0, i1], mx.array(exp), axes=[0, 1], slice_sizes=[1, 1, 2])
i = mx.array([2, 0])
# gather_single along axis 1, slices (2, 1, 3): out[k] = x[0:2, i[k]:i[k]+1, 0:3]
exp = np.stack([npx[0:2, k:k + 1, :] for k in np.array(i)])
add("gather_single", [x, i], mx.array(exp), axis=1, slice_sizes=[2, 1, 3])

x = rand((4, 3), "int32", -5, 5)
npx = np.array(x)
idx = mx.array([3, 0])
upd = rand((2, 1, 3), "int32", -5, 5)
for kind in ("scatter", "scatter_add", "scatter_max", "scatter_min", "scatter_prod"):
    exp = npx.copy()
    u = np.array(upd)[:, 0, :]
    for k, r in enumerate(np.array(idx)):
        exp[r] = {"scatter": lambda o, n: n, "scatter_add": np.add, "scatter_max": np.maximum,
                  "scatter_min": np.minimum, "scatter_prod": np.multiply}[kind](exp[r], u[k])
    add(kind, [x, idx, upd], mx.array(exp), axes=[0])
    add(kind + "_single", [x, idx, upd], mx.array(exp), axis=0)
# scatter_add with duplicate indices over two axes: updates of shape (3, 1, 1)
idx0, idx1 = mx.array([1, 1, 2]), mx.array([0, 0, 2])
upd = mx.array([[[1]], [[2]], [[4]]])
exp = npx.copy()
np.add.at(exp, (np.array(idx0), np.array(idx1)), np.array(upd)[:, 0, 0])
add("scatter_add", [x, idx0, idx1, upd], mx.array(exp), name="scatter_add_duplicates",
    axes=[0, 1])

x = arange((4, 6), "float32")
add("slice", [x], x[3:0:-2, 1::2], start=[3, 1], stop=[0, 6], strides=[-2, 2])
add("slice", [x], x[-3:, :2], name="slice_negative_start", start=[-3, 0], stop=[4, 2],
    strides=[1, 1])
add("slice_dynamic", [x, mx.array([1, 2])], mx.slice(x, mx.array([1, 2]), (0, 1), (2, 3)),
    axes=[0, 1], slice_size=[2, 3])
u = rand((2, 3))
y = mx.array(x)
y[1:4:2, 0:3] = u
add("slice_update", [x, u], y, start=[1, 0], stop=[4, 3], strides=[2, 1])
u = rand((1, 2))
add("slice_update_dynamic", [x, u, mx.array([2, 4])],
    mx.slice_update(x, u, mx.array([2, 4]), (0, 1)), axes=[0, 1])
u = rand((2, 2), "float32", 0, 30)
for kind, at in (("add", "add"), ("max", "maximum"), ("min", "minimum"), ("prod", "multiply")):
    add("slice_update_" + kind, [x, u], getattr(x.at[0:2, 2:6:2], at)(u), start=[0, 2],
        stop=[2, 6], strides=[1, 2])
x = rand((3, 4))
mask = rand((3, 4), "bool")
src = rand((12,))
exp = np.array(x).copy()
exp[np.array(mask)] = np.array(src)[: int(np.array(mask).sum())]
add("masked_scatter", [x, mask, src], mx.array(exp))

# ---------------------------------------------------------------- sort
x = mx.array(np.random.default_rng(7).permutation(24).reshape(4, 6).astype(np.float32) - 10)
add("sort", [x], mx.sort(x, None))
add("sort_axis", [x], mx.sort(x, 0), axis=0)
add("argsort", [x], mx.argsort(x, None))
add("argsort_axis", [x], mx.argsort(x, -1), axis=-1)
xi = x.astype(mx.int32)
add("sort_axis", [xi], mx.sort(xi, 1), name="sort_axis_int", axis=1)
xh = rand((5, 7), "float16")
add("sort_axis", [xh], mx.sort(xh, 1), name="sort_axis_f16", axis=1, tol="exact")
# Partitions: MLX leaves the order on each side unspecified, so the expected output is
# the fully sorted array; the Rust side checks the kth element, the sides and the multiset.
add("partition", [x], mx.sort(x, None), kth=5)
add("partition_axis", [x], mx.sort(x, 1), kth=2, axis=1)
add("argpartition", [x], mx.sort(x, None), kth=-3)
add("argpartition_axis", [xi], mx.sort(xi, 0), kth=1, axis=0)
# top-k: order unspecified; the expected output is sorted ascending.
add("topk", [x], mx.sort(mx.topk(x, 4, axis=None), None), k=4)
add("topk_axis", [x], mx.sort(mx.topk(x, 3, 0), 0), k=3, axis=0)
seq = mx.array([1, 3, 3, 5, 8])
vals = mx.array([[0, 3], [5, 9]])
add("searchsorted", [seq, vals], mx.searchsorted(seq, vals), side="left")
add("searchsorted", [seq.astype(mx.float32), vals.astype(mx.float32)],
    mx.searchsorted(seq.astype(mx.float32), vals.astype(mx.float32), side="right"),
    name="searchsorted_right", side="right")

# ---------------------------------------------------------------- conv
x, w = dy((2, 9, 4)), dy((6, 3, 4))
add("conv1d", [x, w], mx.conv1d(x, w, stride=2, padding=1), stride=[2], padding=[1],
    dilation=[1], groups=1, tol="conv")
x, w = dy((1, 7, 6, 4)), dy((6, 3, 2, 2))
add("conv2d", [x, w], mx.conv2d(x, w, stride=(1, 2), padding=(1, 0), dilation=(2, 1),
                                 groups=2),
    stride=[1, 2], padding=[1, 0], dilation=[2, 1], groups=2, tol="conv")
x, w = dy((1, 3, 4, 5, 2), "float16"), dy((3, 2, 2, 3, 2), "float16")
add("conv3d", [x, w], mx.conv3d(x, w, padding=(0, 1, 1)), stride=[1, 1, 1],
    padding=[0, 1, 1], dilation=[1, 1, 1], groups=1, tol="bf16")
x, w = rand((2, 5, 3)), rand((4, 3, 3))
add("conv_transpose1d", [x, w],
    mx.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1), stride=[2],
    padding=[1], dilation=[1], output_padding=[1], groups=1, tol="conv")
x, w = rand((1, 4, 3, 2)), rand((3, 2, 3, 2))
add("conv_transpose2d", [x, w], mx.conv_transpose2d(x, w, stride=(2, 1), dilation=(1, 2)),
    stride=[2, 1], padding=[0, 0], dilation=[1, 2], output_padding=[0, 0], groups=1,
    tol="conv")
x, w = dy((1, 2, 3, 2, 2)), dy((2, 2, 2, 2, 2))
add("conv_transpose3d", [x, w], mx.conv_transpose3d(x, w, stride=2), stride=[2, 2, 2],
    padding=[0, 0, 0], dilation=[1, 1, 1], output_padding=[0, 0, 0], groups=1, tol="conv")
x, w = rand((1, 8, 3)), rand((2, 3, 3))
add("conv_general", [x, w],
    mx.conv_general(x, w, stride=2, padding=([2], [1]), input_dilation=2, flip=True),
    stride=[2], padding_lo=[2], padding_hi=[1], kernel_dilation=[1], input_dilation=[2],
    groups=1, flip=True, tol="conv")
x = rand((3, 16))
add("hadamard_transform", [x], mx.hadamard_transform(x), tol="conv")
x = rand((2, 12))
add("hadamard_transform", [x], mx.hadamard_transform(x, 0.5), name="hadamard_12_scaled",
    scale=0.5, tol="conv")

# ---------------------------------------------------------------- quantized
w = dy((2, 128), lo=-1, hi=1)
for gs, bits in ((64, 4), (32, 8), (128, 3)):
    wq, sc, bi = mx.quantize(w, gs, bits)
    add("quantize", [w], [wq, sc, bi], name=f"quantize_affine_g{gs}_b{bits}", group_size=gs,
        bits=bits, mode="affine", tol="exact")
    add("dequantize", [wq, sc, bi], mx.dequantize(wq, sc, bi, gs, bits),
        name=f"dequantize_affine_g{gs}_b{bits}", group_size=gs, bits=bits, mode="affine")
wb = dy((4, 64), "bfloat16", -1, 1)
wq, sc, bi = mx.quantize(wb)
add("quantize", [wb], [wq, sc, bi], name="quantize_bf16_defaults", mode="affine", tol="exact")
add("dequantize", [wq, sc, bi], mx.dequantize(wq, sc, bi), name="dequantize_bf16_defaults",
    mode="affine", tol="exact")
x = dy((3, 64), "bfloat16", -1, 1)
add("quantized_matmul", [x, wq, sc, bi], mx.quantized_matmul(x, wq, sc, bi, True),
    transpose=True, mode="affine", tol="bf16")
for mode in ("mxfp4", "mxfp8", "nvfp4"):
    qs = mx.quantize(w, mode=mode)
    add("quantize", [w], list(qs), name=f"quantize_{mode}", mode=mode, tol="exact")
    add("dequantize", list(qs), mx.dequantize(*qs, mode=mode), name=f"dequantize_{mode}",
        mode=mode)
wq, sc, bi = mx.quantize(dy((8, 32), lo=-1, hi=1), 32, 4)
x = dy((2, 3, 8), lo=-1, hi=1)
add("quantized_matmul", [x, wq, sc, bi],
    mx.quantized_matmul(x, wq, sc, bi, False, 32, 4), name="quantized_matmul_no_transpose",
    transpose=False, group_size=32, bits=4, mode="affine", tol="conv")
wq, sc, bi = mx.quantize(dy((3, 8, 64), lo=-1, hi=1))
x = dy((4, 1, 64), lo=-1, hi=1)
rhs = mx.array([2, 0, 0, 1])
add("gather_qmm", [x, wq, sc, bi, rhs],
    mx.gather_qmm(x, wq, sc, bi, rhs_indices=rhs, transpose=True), transpose=True,
    mode="affine", tol="conv")
a, b = dy((2, 3, 4)), dy((3, 4, 5))
lhs, rhs = mx.array([1, 0, 1]), mx.array([2, 2, 0])
add("gather_mm", [a, b, lhs, rhs], mx.gather_mm(a, b, lhs, rhs), tol="conv")
a = mx.array(RNG.integers(-3, 4, size=(64, 32)).astype(np.float32))
b = mx.array(RNG.integers(-3, 4, size=(32, 32)).astype(np.float32))
mo = mx.array([[True], [False]])
ml = mx.array([[True], [True]])
mr = mx.array([[True]])
add("block_masked_mm", [a, b, mo, ml, mr], mx.block_masked_mm(a, b, 32, mo, ml, mr),
    block_size=32, tol="conv")
a, b = dy((3, 8)), dy((8, 2))
seg = mx.array([[0, 3], [3, 8], [2, 2]])
add("segmented_mm", [a, b, seg], mx.segmented_mm(a, b, seg), tol="conv")

save("ops_shape", cases)

# ================================================================= NumPy-style indexing
index_cases = []


def spec_of(idx, arrays):
    """JSON form of a Python index tuple; index arrays become input numbers."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    out = []
    for e in idx:
        if e is None:
            out.append({"newaxis": True})
        elif e is Ellipsis:
            out.append({"ellipsis": True})
        elif isinstance(e, int):
            out.append({"int": e})
        elif isinstance(e, slice):
            out.append({"slice": [e.start, e.stop, e.step]})
        else:
            arrays.append(e)
            out.append({"array": len(arrays)})  # input 0 is the indexed array
    return out


def np_index(idx):
    idx = idx if isinstance(idx, tuple) else (idx,)
    return tuple(np.array(e) if isinstance(e, mx.array) else e for e in idx)


def get(a, idx, name, expected=None):
    arrays = []
    spec = spec_of(idx, arrays)
    out = a[idx] if expected is None else expected
    # NumPy agrees (and would raise on an index out of range).
    want = np.array(a.astype(mx.float32))[np_index(idx)]
    assert np.array_equal(np.array(out.astype(mx.float32)), want), name
    c = case("index", [a] + arrays, out, {"index": spec}, rtol=0.0, atol=0.0, name=name)
    index_cases.append(c)


def put(a, idx, value, name, numpy=False):
    """`a[idx] = value` by Python MLX, or by NumPy where MLX's own `__setitem__` departs
    from NumPy (it orders the axes of an integer plus a separated index array
    differently from its own `__getitem__`)."""
    arrays = []
    spec = spec_of(idx, arrays)
    if numpy:
        out = np.array(a).copy()
        out[np_index(idx)] = np.array(value)
        out = mx.array(out)
    else:
        out = mx.array(a)
        out[idx] = value
        want = np.array(a.astype(mx.float32)).copy()
        want[np_index(idx)] = np.array(mx.array(value).astype(a.dtype).astype(mx.float32))
        assert np.array_equal(np.array(out.astype(mx.float32)), want), name
    value = mx.array(value)
    c = case("index_put", [a, value] + arrays, out, {"index": [
        {"array": s["array"] + 1} if "array" in s else s for s in spec]},
        rtol=0.0, atol=0.0, name=name)
    index_cases.append(c)


A = arange((4, 5, 6), "float32")
B = rand((5, 7), "bfloat16")
C = rand((6,), "int32", -50, 50)
D = rand((3, 4), "bool")
E = rand((2, 3, 4, 5), "float16")
i1 = mx.array([3, 0, -1])
i2 = mx.array([[1, 4], [0, 2]])
i3 = mx.array([5, 0])
get(C, 2, "int")
get(C, -1, "negative_int")
get(A, (1, -2, 3), "three_ints_scalar")
get(C, slice(1, 4), "range")
get(C, slice(None, None, 2), "step")
get(C, slice(None, None, -1), "reverse")
get(C, slice(-2, None, -2), "negative_start_negative_step")
get(C, slice(5, 1, -2), "range_negative_step")
get(C, slice(4, 1), "empty_range")
get(C, slice(-100, 100, 4), "clamped_range")
get(B, (slice(None), 1), "column")
get(B, (slice(1, None), slice(None, None, -3)), "two_ranges")
get(A, (Ellipsis, 0), "ellipsis_int")
get(A, (1, Ellipsis), "int_ellipsis")
get(A, (Ellipsis, slice(1, 3), None), "ellipsis_range_newaxis")
get(A, None, "newaxis_only")
get(A, (slice(None), None, slice(1, None)), "newaxis_middle")
get(A, (1, Ellipsis, None), "int_ellipsis_newaxis")
get(E, (0, Ellipsis, slice(None, None, -2), 1), "four_d_mixed")
get(D, (slice(None, None, -1), slice(1, 3)), "bool_array_ranges")
get(A, i1, "array")
get(B, i2, "array_2d")
get(A, (i1, mx.array([4, 0, 1])), "two_arrays")
get(A, (slice(None), mx.array([[0], [4]]), mx.array([1, 5, 2])), "adjacent_arrays_broadcast")
get(A, (i1, slice(None), mx.array([5, 0, 3])), "separated_arrays_first")
get(A, (0, slice(None), i3), "int_and_array_separated")
get(A, (slice(None), 2, i3), "int_and_array_adjacent")
get(A, (i1, None, mx.array([1, 2, 3])), "arrays_split_by_newaxis")
get(A, (None, mx.array([3, 0])), "newaxis_then_array")
get(A, (Ellipsis, i3), "ellipsis_then_array")
get(A, (slice(1, None), mx.array([4, 0]), slice(None, None, -1)), "range_array_reverse")
get(A, (slice(None, None, 2), None, i2, slice(1, 3)), "range_newaxis_array2d_range")
get(B, (mx.array([-1, -5]),), "negative_array_values")
get(C, mx.array([1, 2]).astype(mx.uint32), "uint32_array")
get(E, (Ellipsis, mx.array([0, 4])), "f16_ellipsis_array")
mask = rand((4, 5), "bool")
get(A, mask, "bool_mask", expected=mx.array(np.array(A)[np.array(mask)]))
get(A, (slice(None), mx.array([True, False, True, False, True]), 2), "bool_mask_axis",
    expected=mx.array(np.array(A)[:, np.array([True, False, True, False, True]), 2]))

put(C, 2, 99, "put_int")
put(C, slice(None, None, -2), mx.array([7, 8, 9]), "put_reverse_step")
put(B, (slice(1, 3), slice(None, None, 2)), rand((2, 4), "bfloat16"), "put_range_step")
put(B, (slice(1, 3), slice(None, None, 2)), mx.array(1.5), "put_scalar_broadcast")
put(A, (Ellipsis, -1), rand((4, 5)), "put_ellipsis_int")
put(B, 2, rand((1, 1, 7), "bfloat16"), "put_row_leading_ones")
put(A, (slice(None), None, 1), rand((6,)), "put_newaxis_broadcast")
put(A, (1, slice(4, 0, -2), slice(1, 5, 3)), rand((2, 2)), "put_negative_step_2d")
# Distinct rows (i1 names row 3 twice in A): with a repeated index the update that wins
# is not fixed on a GPU (MLX scatters in parallel there; found on an H200).
put(A, mx.array([3, 0, -2]), rand((3, 5, 6)), "put_array")
put(A, (mx.array([0, 2]), mx.array([[1], [3]])), rand((2, 2, 6)), "put_two_arrays_broadcast")
put(A, (slice(None), mx.array([0, 4]), mx.array([5, 1])), rand((4, 2)), "put_adjacent_arrays")
put(A, (mx.array([0, 3]), slice(None), mx.array([5, 1])), rand((2, 5)), "put_separated_arrays")
put(A, (0, slice(1, None), i3), rand((2, 4)), "put_int_array_separated", numpy=True)
put(A, (slice(2, None), mx.array([1, 3]), slice(None, None, -2)), rand((2, 2, 3)),
    "put_range_array_reverse")
put(A, (slice(None), None, mx.array([1, 2])), mx.array(-1.0), "put_newaxis_array_scalar")
put(C, mx.array([True, False, True, True, False, True]), mx.array(0), "put_bool_mask_scalar")
put(D, (slice(None), 2), mx.array([True, True, False]), "put_bool_dtype")
put(C, 3, mx.array(2.7), "put_casts_value")

save("ops_shape_index", index_cases)
