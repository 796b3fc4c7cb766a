"""Oracle cases for mlx_rs::fft and mlx_rs::linalg (fixtures fft.json and linalg.json).

FFT cases give `n` / `axes` as null when the Rust call passes `None` (the defaults
match Python's). Linear algebra runs on the CPU stream (MLX's factorisations are
CPU-only). Sign-ambiguous factors (QR, SVD, eigh vectors) are checked in Rust by
reconstruction, so their cases store the input (and unique parts such as singular
values) as outputs.
"""
import mlx.core as mx

from fixture import case, rand, save

NORMS = ("backward", "ortho", "forward")


def crand(shape):
    re = rand(shape)
    im = rand(shape)
    return (re + 1j * im).astype(mx.complex64)


def fft_cases():
    cases = []
    x8 = rand([8])
    x28 = rand([2, 8])
    c28 = crand([2, 8])
    x46 = rand([4, 6])
    x246 = rand([2, 4, 6])
    c46 = crand([4, 6])
    c246 = crand([2, 4, 6])

    def one(op, fn, x, n=None, axis=-1, norm="backward", name=None):
        kw = {"axis": axis, "norm": norm}
        if n is not None:
            kw["n"] = n
        out = fn(x, **kw)
        cases.append(case(op, [x], out, {"n": n, "axis": axis, "norm": norm},
                          rtol=1e-5, atol=1e-5, name=name or f"{op}_n{n}_ax{axis}_{norm}"))

    for norm in NORMS:
        one("fft", mx.fft.fft, x8, norm=norm)
        one("ifft", mx.fft.ifft, c28, norm=norm)
        one("rfft", mx.fft.rfft, x28, norm=norm)
        one("irfft", mx.fft.irfft, c28, norm=norm)
    one("fft", mx.fft.fft, c28, name="fft_complex")
    one("fft", mx.fft.fft, x28, n=6, name="fft_crop")
    one("fft", mx.fft.fft, x28, n=12, name="fft_pad")
    one("fft", mx.fft.fft, x28, axis=0, name="fft_axis0")
    one("ifft", mx.fft.ifft, c28, n=5, axis=1, name="ifft_n5")
    one("rfft", mx.fft.rfft, x28, n=7, name="rfft_n7")
    one("irfft", mx.fft.irfft, c28, n=9, name="irfft_n9")
    one("irfft", mx.fft.irfft, c28, axis=0, name="irfft_axis0")
    one("fft", mx.fft.fft, rand([8], "float16"), name="fft_f16_input")

    def nd(op, fn, x, n=None, axes=None, norm="backward", name=None):
        kw = {"norm": norm}
        if n is not None:
            kw["s"] = n
        if axes is not None:
            kw["axes"] = axes
        out = fn(x, **kw)
        cases.append(case(op, [x], out, {"n": n, "axes": axes, "norm": norm},
                          rtol=1e-5, atol=1e-4, name=name or f"{op}_{n}_{axes}_{norm}"))

    nd("fft2", mx.fft.fft2, x46)
    nd("fft2", mx.fft.fft2, x246, norm="ortho", name="fft2_batched_ortho")
    nd("fft2", mx.fft.fft2, x246, n=[3, 8], axes=[0, 2], name="fft2_sizes_axes")
    nd("ifft2", mx.fft.ifft2, c46)
    nd("ifft2", mx.fft.ifft2, c246, norm="forward", name="ifft2_forward")
    nd("rfft2", mx.fft.rfft2, x46)
    nd("rfft2", mx.fft.rfft2, x246, n=[4, 4], name="rfft2_sizes")
    nd("irfft2", mx.fft.irfft2, c46)
    nd("irfft2", mx.fft.irfft2, c246, n=[4, 10], name="irfft2_sizes")
    nd("fftn", mx.fft.fftn, x246)
    nd("fftn", mx.fft.fftn, c246, axes=[0, 2], name="fftn_axes")
    # Sizes without axes: Rust follows NumPy (the last len(n) axes); Python MLX wants both.
    cases.append(case("fftn", [x246], mx.fft.fftn(x246, s=[5, 5], axes=[-2, -1]),
                      {"n": [5, 5], "axes": None, "norm": "backward"},
                      rtol=1e-5, atol=1e-4, name="fftn_sizes_only"))
    nd("ifftn", mx.fft.ifftn, c246, norm="ortho", name="ifftn_ortho")
    nd("rfftn", mx.fft.rfftn, x246)
    nd("rfftn", mx.fft.rfftn, x246, axes=[1, 2], norm="forward", name="rfftn_axes_forward")
    nd("irfftn", mx.fft.irfftn, c246)
    nd("irfftn", mx.fft.irfftn, c246, n=[2, 4, 8], axes=[0, 1, 2], name="irfftn_sizes")

    for n, d in [(8, 1.0), (7, 0.5), (1, 2.0)]:
        cases.append(case("fftfreq", [], mx.fft.fftfreq(n, d), {"n": n, "d": d},
                          name=f"fftfreq_{n}_{d}"))
        cases.append(case("rfftfreq", [], mx.fft.rfftfreq(n, d), {"n": n, "d": d},
                          name=f"rfftfreq_{n}_{d}"))
    xi = rand([5, 3], "int32", -9, 9)
    for op, fn in [("fftshift", mx.fft.fftshift), ("ifftshift", mx.fft.ifftshift)]:
        cases.append(case(op, [x246], fn(x246), {"axes": None}, name=f"{op}_all"))
        cases.append(case(op, [xi], fn(xi, axes=[0]), {"axes": [0]}, name=f"{op}_axis0_int"))
    return cases


def spd(n, batch=()):
    a = rand(list(batch) + [n, n])
    return a @ mx.swapaxes(a, -1, -2) + n * mx.eye(n)


def linalg_cases():
    cpu = mx.cpu
    L = mx.linalg
    cases = []
    tol = {"rtol": 1e-4, "atol": 1e-5}

    def add(op, inputs, out, args=None, name=None, **t):
        kw = dict(tol)
        kw.update(t)
        cases.append(case(op, inputs, out, args, name=name or op, **kw))

    a4 = rand([4, 4]) + 4 * mx.eye(4)
    a233 = rand([2, 3, 3]) + 3 * mx.eye(3)
    add("inv", [a4], L.inv(a4, stream=cpu))
    add("inv", [a233], L.inv(a233, stream=cpu), name="inv_batched")
    b4 = rand([4])
    b42 = rand([4, 2])
    add("solve", [a4, b4], L.solve(a4, b4, stream=cpu), name="solve_vector")
    add("solve", [a4, b42], L.solve(a4, b42, stream=cpu), name="solve_matrix")
    up = mx.triu(a4)
    lo = mx.tril(a4)
    add("solve_triangular", [up, b42], L.solve_triangular(up, b42, upper=True, stream=cpu),
        {"upper": True}, name="solve_triangular_upper")
    add("solve_triangular", [lo, b42], L.solve_triangular(lo, b42, upper=False, stream=cpu),
        {"upper": False}, name="solve_triangular_lower")
    add("tri_inv", [up], L.tri_inv(up, upper=True, stream=cpu), {"upper": True},
        name="tri_inv_upper")
    add("tri_inv", [lo], L.tri_inv(lo, upper=False, stream=cpu), {"upper": False},
        name="tri_inv_lower")
    s4 = spd(4)
    s233 = spd(3, (2,))
    add("cholesky", [s4], L.cholesky(s4, stream=cpu), {"upper": False}, name="cholesky_lower")
    add("cholesky", [s4], L.cholesky(s4, upper=True, stream=cpu), {"upper": True},
        name="cholesky_upper")
    add("cholesky", [s233], L.cholesky(s233, stream=cpu), {"upper": False},
        name="cholesky_batched")
    lfac = L.cholesky(s4, stream=cpu)
    add("cholesky_inv", [lfac], L.cholesky_inv(lfac, stream=cpu), {"upper": False},
        name="cholesky_inv_lower")
    ufac = L.cholesky(s4, upper=True, stream=cpu)
    add("cholesky_inv", [ufac], L.cholesky_inv(ufac, upper=True, stream=cpu), {"upper": True},
        name="cholesky_inv_upper")

    # Sign-ambiguous factorisations: reconstruction checks in Rust.
    for shape in ([4, 4], [5, 3], [2, 4, 3]):
        a = rand(shape)
        add("qr", [a], a, name=f"qr_{'x'.join(map(str, shape))}")
        s = L.svd(a, compute_uv=False, stream=cpu)
        add("svd", [a], [s, a], name=f"svd_{'x'.join(map(str, shape))}")
        add("svd_values", [a], s, name=f"svd_values_{'x'.join(map(str, shape))}")
    for uplo in ("L", "U"):
        w = L.eigvalsh(s4, UPLO=uplo, stream=cpu)
        add("eigvalsh", [s4], w, {"uplo": uplo}, name=f"eigvalsh_{uplo}")
        add("eigh", [s4], [w, s4], {"uplo": uplo}, name=f"eigh_{uplo}")
    # A general matrix with well-separated real eigenvalues (same LAPACK as Python, so
    # the order matches).
    g = mx.array([[4.0, 1.0, 0.5], [0.0, 2.0, 1.0], [0.2, 0.0, -1.0]])
    add("eigvals", [g], L.eigvals(g, stream=cpu), name="eigvals")
    add("eig", [g], [L.eigvals(g, stream=cpu), g], name="eig")

    p, lmat, umat = L.lu(a4, stream=cpu)
    add("lu", [a4], [p, lmat, umat], name="lu")
    lu, piv = L.lu_factor(a4, stream=cpu)
    add("lu_factor", [a4], [lu, piv], name="lu_factor")
    add("det", [a4], L.det(a4, stream=cpu), name="det")
    add("det", [a233], L.det(a233, stream=cpu), name="det_batched")
    neg = -a4
    sign, logabs = L.slogdet(neg, stream=cpu)
    add("slogdet", [neg], [sign, logabs], name="slogdet")
    r53 = rand([5, 3])
    add("pinv", [r53], L.pinv(r53, stream=cpu), name="pinv", rtol=1e-3, atol=1e-4)

    v = rand([6])
    m = rand([3, 4])
    t = rand([2, 3, 4])
    inf = float("inf")

    def j(o):
        """JSON has no infinity: store it as a string."""
        return o if abs(o) != inf else ("inf" if o > 0 else "-inf")

    for ordv in (2.0, 1.0, 0.0, 3.0, inf, -inf):
        add("norm", [v], L.norm(v, ordv), {"ord": j(ordv), "axis": None, "keepdims": False},
            name=f"norm_vector_{ordv}")
    for ordm in (1.0, -1.0, inf, -inf):
        add("norm", [m], L.norm(m, ordm), {"ord": j(ordm), "axis": None, "keepdims": False},
            name=f"norm_matrix_{ordm}")
    add("norm", [t], L.norm(t, 2.0, axis=[1]), {"ord": 2.0, "axis": [1], "keepdims": False},
        name="norm_axis1")
    add("norm", [t], L.norm(t, 1.0, axis=[1, 2], keepdims=True),
        {"ord": 1.0, "axis": [1, 2], "keepdims": True}, name="norm_matrix_axes_keepdims")
    xi = mx.array([3, -4, 0, 12], dtype=mx.int32)
    add("norm", [xi], L.norm(xi, 1.0), {"ord": 1.0, "axis": None, "keepdims": False},
        name="norm_int")
    for ords in ("fro", "f"):
        add("norm_matrix", [m], L.norm(m, ords), {"ord": ords, "axis": None, "keepdims": False},
            name=f"norm_matrix_{ords}")
    add("norm_matrix", [t], L.norm(t, "fro", axis=[0, 2], keepdims=True),
        {"ord": "fro", "axis": [0, 2], "keepdims": True}, name="norm_matrix_fro_axes")
    add("norm_l2", [t], L.norm(t), {"axis": None, "keepdims": False}, name="norm_l2_all")
    add("norm_l2", [t], L.norm(t, axis=[2], keepdims=True), {"axis": [2], "keepdims": True},
        name="norm_l2_axis_keepdims")
    add("norm_l2", [m.astype(mx.float16)], L.norm(m.astype(mx.float16), axis=[0]),
        {"axis": [0], "keepdims": False}, name="norm_l2_f16", rtol=1e-3, atol=1e-3)
    c = crand([4])
    add("norm_l2", [c], L.norm(c), {"axis": None, "keepdims": False}, name="norm_l2_complex")

    a3 = rand([3])
    b3 = rand([3])
    add("cross", [a3, b3], L.cross(a3, b3), {"axis": -1}, name="cross")
    a43 = rand([4, 3])
    add("cross", [a43, b3], L.cross(a43, b3), {"axis": -1}, name="cross_broadcast")
    a34 = rand([3, 4])
    b34 = rand([3, 4])
    add("cross", [a34, b34], L.cross(a34, b34, axis=0), {"axis": 0}, name="cross_axis0")
    return cases


if __name__ == "__main__":
    save("fft", fft_cases())
    save("linalg", linalg_cases())
