"""Writes the small seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Run from the repository root or from fuzz/: python3 fuzz/gen_seeds.py
Needs Python MLX and NumPy. Every seed is a few hundred bytes (the model seed ~90 KB).
"""
import io, json, os, struct, sys
import numpy as np
import mlx.core as mx

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
ROOT = os.path.dirname(HERE)


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tmp(name):
    d = os.path.join(HERE, "target", "seed-tmp")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


# ---- safetensors -------------------------------------------------------------------
def st_image(arrays, metadata=None):
    p = tmp("x.safetensors")
    mx.save_safetensors(p, arrays, metadata=metadata or {})
    return open(p, "rb").read()


def st_raw(header, data=b""):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "f32_bf16_meta", st_image(
    {"w": mx.arange(6, dtype=mx.float32).reshape(2, 3), "b": mx.array([1.5, -2], dtype=mx.bfloat16)},
    {"format": "mlx"}))
put("safetensors", "ints_bool_scalar", st_image(
    {"i": mx.array([1, -2, 3], dtype=mx.int64), "u": mx.array([7], dtype=mx.uint8),
     "t": mx.array([True, False]), "s": mx.array(3.0, dtype=mx.float16)}))
put("safetensors", "empty_tensor", st_image({"e": mx.zeros((0, 4))}))
put("safetensors", "header_only", st_raw({}))
put("safetensors", "meta_only", st_raw({"__metadata__": {"a": "b"}}))
put("safetensors", "offsets_past_end", st_raw(
    {"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8))
put("safetensors", "shape_size_mismatch", st_raw(
    {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8))
put("safetensors", "unknown_dtype", st_raw(
    {"x": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\1\2"))
put("safetensors", "huge_header_len", struct.pack("<Q", 1 << 62) + b"{}")

# ---- npy ---------------------------------------------------------------------------
def npy(a, **kw):
    b = io.BytesIO()
    np.save(b, a, **kw)
    return b.getvalue()


put("npy", "f32_2x3", npy(np.arange(6, dtype=np.float32).reshape(2, 3)))
put("npy", "i64_scalar", npy(np.array(-5, dtype=np.int64)))
put("npy", "bool_empty", npy(np.zeros((0, 3), dtype=bool)))
put("npy", "u8_fortran", npy(np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3))))
put("npy", "f16_bigendian", npy(np.arange(3, dtype=">f2")))
put("npy", "complex64", npy(np.array([1 + 2j], dtype=np.complex64)))
v2 = bytearray(npy(np.arange(4, dtype=np.int16)))
put("npy", "truncated", bytes(v2[:-3]))
put("npy", "header_only", bytes(v2[:10]))
h = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,-3), }"
h = h + b" " * (63 - len(h) % 64) + b"\n"
put("npy", "negative_dim", b"\x93NUMPY\x02\x00" + struct.pack("<I", len(h)) + h + b"\0" * 24)

# ---- gguf --------------------------------------------------------------------------
p = tmp("x.gguf")
mx.save_gguf(p, {"w": mx.arange(6, dtype=mx.float32).reshape(2, 3), "h": mx.array([1, 2], dtype=mx.float16),
                 "i": mx.array([3, 4, 5], dtype=mx.int32)},
             {"name": "tiny", "n": mx.array(7, dtype=mx.uint32), "v": mx.array([1.0, 2.0]),
              "tokens": ["a", "b"]})
put("gguf", "mlx_saved", open(p, "rb").read())


def gguf_str(s):
    s = s.encode()
    return struct.pack("<Q", len(s)) + s


def gguf_raw(tensors, kv=()):
    """tensors: (name, dims, ggml_type, data bytes); kv: (key, type, packed value)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, ty, val in kv:
        out += gguf_str(key) + struct.pack("<I", ty) + val
    off = 0
    blobs = []
    for name, dims, ty, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, off)
        pad = (-len(data)) % 32
        blobs.append(data + b"\0" * pad)
        off += len(data) + pad
    out += b"\0" * ((-len(out)) % 32)
    return out + b"".join(blobs)


# q8_0: 32 weights per block = f16 scale + 32 int8
q8 = struct.pack("<e", 0.5) + bytes(range(32))
# q4_0: f16 scale + 16 bytes of nibbles
q4 = struct.pack("<e", 0.25) + bytes(range(16))
put("gguf", "q8_0_q4_0", gguf_raw([("q8", [32], 8, q8), ("q4", [32], 2, q4)],
                                   [("general.alignment", 4, struct.pack("<I", 32))]))
put("gguf", "f32_kv_array", gguf_raw([("x", [2, 2], 0, struct.pack("<4f", 1, 2, 3, 4))],
                                     [("arr", 9, struct.pack("<IQ", 5, 2) + struct.pack("<2i", 1, 2)),
                                      ("s", 8, gguf_str("hello"))]))
put("gguf", "no_tensors", gguf_raw([]))
put("gguf", "truncated", open(p, "rb").read()[:40])

# ---- qwen config + weights -----------------------------------------------------------
fx = os.path.join(ROOT, "examples/qwen3_5/tests/fixtures/qwen/mlx-q4-tied")
cfg = open(os.path.join(fx, "config.json"), "rb").read()
weights = open(os.path.join(fx, "model.safetensors"), "rb").read()
put("qwen_config_weights", "mlx_q4_tied", struct.pack("<H", len(cfg)) + cfg + weights)
put("qwen_config_weights", "config_only", struct.pack("<H", len(cfg)) + cfg)
c = json.loads(cfg)
c["text_config"]["num_hidden_layers"] = 2147483647
c["text_config"].pop("layer_types")
c2 = json.dumps(c).encode()
put("qwen_config_weights", "many_layers", struct.pack("<H", len(c2)) + c2)
flat = dict(c["text_config"], model_type="qwen3_5_text", num_hidden_layers=4)
c3 = json.dumps(flat).encode()
put("qwen_config_weights", "flat_text_config", struct.pack("<H", len(c3)) + c3 + st_raw({}))

# ---- chat + tokenizer ---------------------------------------------------------------
SEP = b"\xff"
put("chat_tokenizer", "user_gen", bytes([1]) + bytes([1]) + b"Hello, world!")
put("chat_tokenizer", "system_user_assistant_think",
    bytes([1 | 2]) + SEP.join([bytes([0]) + b"Be brief.", bytes([1]) + "中文 é 😀".encode(),
                               bytes([2]) + b"<think>hm</think>ok", bytes([1]) + b"again"]))
put("chat_tokenizer", "tools_nothink", bytes([1 | 4 | 8]) + bytes([1]) + b"call f")
put("chat_tokenizer", "reasoning_tool", bytes([0]) + SEP.join(
    [bytes([1]) + b"q", bytes([2]) + b"rthinking", bytes([3]) + b"tool output", bytes([1]) + b"<|im_end|>"]))
put("chat_tokenizer", "nfc_ids", bytes([0x40]) + SEP.join(
    [bytes([1]) + "e\u0301".encode(), b"#" + b"".join(struct.pack("<I", i) for i in [256, 257, 258, 259, 263, 299])]))
put("chat_tokenizer", "custom_template", bytes([0x80 | 1]) + SEP.join(
    [b"{% for m in messages %}{{ m.role }}: {{ m.content | tojson }}\n{% endfor %}{{ messages[0].content.split(' ') }}",
     bytes([1]) + b"a b c"]))

# ---- token list ---------------------------------------------------------------------
for i, s in enumerate(["1,2,3", " 7 , 8 ", "4294967295", "-1", "1,,2", "248045,846,198", "0x10"]):
    put("token_list", f"list{i}", b"\0" + s.encode())
put("token_list", "argv_generate", b"\1" + b"\0".join(
    [b"generate", b"--model", b"m", b"--prompt", b"-", b"--temp", b"0", b"--top-p", b"1.5"]))
put("token_list", "argv_chat", b"\1" + b"\0".join([b"chat", b"--model", b"m", b"--think", b"--no-think"]))
print("seeds written to", SEEDS)
