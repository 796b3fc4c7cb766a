"""Oracle cases for mlx_rs::random (fixture random.json).

MLX's generator (threefry) is counter based: the same key gives the same numbers in
every binding, so Rust must reproduce these values exactly for the same seed.
"""
import mlx.core as mx

from fixture import case, rand, save


def cases():
    out = []
    R = mx.random
    for seed in (0, 42, 2**40 + 7):
        out.append(case("key", [], R.key(seed), {"seed": seed}, name=f"key_{seed}"))
    k = R.key(42)
    a = {"seed": 42}
    out.append(case("split", [], list(R.split(k)), a))
    out.append(case("split_num", [], R.split(k, 3), {**a, "num": 3}))
    for dt in ("float32", "float16", "bfloat16"):
        low, high = mx.array(-1.5), mx.array(2.5)
        out.append(case("uniform", [low, high],
                        R.uniform(low, high, [3, 4], getattr(mx, dt), key=k),
                        {**a, "shape": [3, 4], "dtype": dt}, rtol=0, atol=0,
                        name=f"uniform_{dt}"))
    lows = rand([4]).astype(mx.float32)
    out.append(case("uniform", [lows, lows + 1], R.uniform(lows, lows + 1, [2, 4], key=k),
                    {**a, "shape": [2, 4], "dtype": "float32"}, rtol=0, atol=0,
                    name="uniform_broadcast_bounds"))
    out.append(case("normal", [], R.normal([1000], key=k), {**a, "shape": [1000], "dtype": "float32",
                                                          "loc": 0.0, "scale": 1.0},
                    rtol=1e-6, atol=1e-6))
    out.append(case("normal", [], R.normal([5], loc=3.0, scale=0.5, key=k),
                    {**a, "shape": [5], "dtype": "float32", "loc": 3.0, "scale": 0.5},
                    rtol=1e-6, atol=1e-6, name="normal_loc_scale"))
    loc, scale = rand([3]), mx.abs(rand([3])) + 0.1
    out.append(case("normal_broadcast", [loc, scale], R.normal([2, 3], loc=loc, scale=scale, key=k),
                    {**a, "shape": [2, 3], "dtype": "float32"}, rtol=1e-6, atol=1e-6))
    lo, hi = mx.array(-3), mx.array(17)
    out.append(case("randint", [lo, hi], R.randint(lo, hi, [50], key=k),
                    {**a, "shape": [50], "dtype": "int32"}, rtol=0, atol=0))
    out.append(case("randint", [lo, hi], R.randint(lo, hi, [6], dtype=mx.int16, key=k),
                    {**a, "shape": [6], "dtype": "int16"}, rtol=0, atol=0, name="randint_int16"))
    p = mx.array([0.1, 0.5, 0.9])
    out.append(case("bernoulli", [p], R.bernoulli(p, [4, 3], key=k), {**a, "shape": [4, 3]},
                    rtol=0, atol=0))
    lower, upper = mx.array(-1.0), mx.array(0.5)
    out.append(case("truncated_normal", [lower, upper],
                    R.truncated_normal(lower, upper, [10], key=k),
                    {**a, "shape": [10], "dtype": "float32"}, rtol=1e-5, atol=1e-6))
    out.append(case("gumbel", [], R.gumbel([10], key=k), {**a, "shape": [10], "dtype": "float32"},
                    rtol=1e-5, atol=1e-6))
    out.append(case("laplace", [], R.laplace([10], loc=1.0, scale=2.0, key=k),
                    {**a, "shape": [10], "dtype": "float32", "loc": 1.0, "scale": 2.0},
                    rtol=1e-5, atol=1e-6))
    logits = rand([3, 5])
    out.append(case("categorical", [logits], R.categorical(logits, key=k), {**a, "axis": -1},
                    rtol=0, atol=0))
    out.append(case("categorical_shape", [logits], R.categorical(logits, 0, shape=[2, 5], key=k),
                    {**a, "axis": 0, "shape": [2, 5]}, rtol=0, atol=0))
    out.append(case("categorical_num_samples", [logits],
                    R.categorical(logits, num_samples=4, key=k),
                    {**a, "axis": -1, "num_samples": 4}, rtol=0, atol=0))
    mean = mx.array([1.0, -1.0])
    cov = mx.array([[2.0, 0.5], [0.5, 1.0]])
    out.append(case("multivariate_normal", [mean, cov],
                    R.multivariate_normal(mean, cov, [3], key=k, stream=mx.cpu),
                    {**a, "shape": [3], "dtype": "float32"}, rtol=1e-4, atol=1e-5))
    out.append(case("permutation_arange", [], R.permutation(10, key=k), {**a, "n": 10},
                    rtol=0, atol=0))
    x = mx.arange(12).reshape(3, 4)
    out.append(case("permutation", [x], R.permutation(x, axis=1, key=k), {**a, "axis": 1},
                    rtol=0, atol=0))
    return out


if __name__ == "__main__":
    save("random", cases())
