"""Files written by Python MLX for mlx_rs::io to read (fixtures py_*.safetensors,
py_*.gguf, py_*.npy), plus io.json: the arrays and metadata they must load as."""
import os

import mlx.core as mx

from fixture import FIXTURES, case, rand, save

SAFETENSORS_DTYPES = ("float32", "float16", "bfloat16", "int8", "uint8", "int16", "uint16",
                      "int32", "uint32", "int64", "uint64", "bool", "complex64")
GGUF_DTYPES = ("float32", "float16", "int8", "int16", "int32")


def sample(dtype, shape=(2, 3)):
    if dtype == "complex64":
        return (rand(list(shape)) + 1j * rand(list(shape))).astype(mx.complex64)
    if dtype.startswith("uint"):
        return rand(list(shape), dtype, 0, 200)
    if dtype.startswith("int"):
        return rand(list(shape), dtype, -100, 100)
    return rand(list(shape), dtype)


def main():
    cases = []
    st = {f"t_{d}": sample(d) for d in SAFETENSORS_DTYPES}
    st["scalar"] = mx.array(3.25)
    st["empty"] = mx.zeros((0, 4))
    st_meta = {"format": "mlx", "note": "written by Python MLX " + mx.__version__}
    mx.save_safetensors(os.path.join(FIXTURES, "py_arrays.safetensors"), st, metadata=st_meta)
    for k, v in st.items():
        cases.append(case("safetensors", [], v, {"key": k}, rtol=0, atol=0, name=f"st_{k}"))
    cases.append(case("safetensors_metadata", [], [], st_meta, name="st_metadata"))

    gg = {f"g_{d}": sample(d, (3, 2)) for d in GGUF_DTYPES}
    gg_meta = {
        "general.name": "tiny",
        "tokens": ["<s>", "hello", "world"],
        "dims": mx.array([4, 8, 16], dtype=mx.int32),
        "eps": mx.array(1e-5, dtype=mx.float32),
    }
    mx.save_gguf(os.path.join(FIXTURES, "py_arrays.gguf"), gg, metadata=gg_meta)
    for k, v in gg.items():
        cases.append(case("gguf", [], v, {"key": k}, rtol=0, atol=0, name=f"gguf_{k}"))
    for k in ("dims", "eps"):
        cases.append(case("gguf_meta_array", [], gg_meta[k], {"key": k}, rtol=0, atol=0,
                          name=f"gguf_meta_{k}"))
    cases.append(case("gguf_meta_strings", [], [],
                      {"general.name": gg_meta["general.name"], "tokens": gg_meta["tokens"]},
                      name="gguf_meta_strings"))

    for name, a in (("py_f32.npy", rand([3, 4])), ("py_i64.npy", sample("int64", (5,))),
                    ("py_bool.npy", rand([2, 2], "bool"))):
        mx.save(os.path.join(FIXTURES, name), a)
        cases.append(case("npy", [], a, {"file": name}, rtol=0, atol=0, name=name))
    save("io", cases)


if __name__ == "__main__":
    main()
