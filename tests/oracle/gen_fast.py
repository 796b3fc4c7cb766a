"""Oracle for mlx-rs/tests/fast.rs: mx.fast.* (rms_norm, layer_norm, rope, rope with an
array offset, scaled_dot_product_attention, cross_entropy) computed by Python MLX."""
import mlx.core as mx

from fixture import case, rand, save

TOL = {
    "float32": (1e-5, 1e-5),
    "float16": (5e-3, 5e-3),
    "bfloat16": (3e-2, 3e-2),
}


def cases():
    out = []

    for dtype in ("float32", "float16", "bfloat16"):
        rtol, atol = TOL[dtype]
        x, w, b = rand((2, 3, 8), dtype), rand((8,), dtype), rand((8,), dtype)
        out.append(case("rms_norm", [x, w], mx.fast.rms_norm(x, w, 1e-5), args={"eps": 1e-5},
                        rtol=rtol, atol=atol, name=f"rms_norm_{dtype}"))
        out.append(case("layer_norm", [x, w, b], mx.fast.layer_norm(x, w, b, 1e-5),
                        args={"eps": 1e-5}, rtol=rtol, atol=atol, name=f"layer_norm_{dtype}"))
    x = rand((4, 16))
    out.append(case("rms_norm", [x], mx.fast.rms_norm(x, None, 1e-6), args={"eps": 1e-6},
                    name="rms_norm_no_weight"))
    w = rand((16,))
    out.append(case("layer_norm", [x, w], mx.fast.layer_norm(x, w, None, 1e-5),
                    args={"eps": 1e-5}, name="layer_norm_weight_only"))
    out.append(case("layer_norm", [x], mx.fast.layer_norm(x, None, None, 1e-5),
                    args={"eps": 1e-5}, name="layer_norm_plain"))

    # rope: (B, H, T, D)
    for traditional in (False, True):
        for dims, scale, offset, base in ((8, 1.0, 0, 10000.0), (4, 0.5, 3, 500.0)):
            x = rand((2, 2, 5, 8))
            y = mx.fast.rope(x, dims, traditional=traditional, base=base, scale=scale, offset=offset)
            out.append(case("rope", [x], y, args={"dims": dims, "traditional": traditional,
                                                  "base": base, "scale": scale, "offset": offset},
                            rtol=1e-5, atol=1e-5,
                            name=f"rope_{'trad' if traditional else 'split'}_{dims}_{offset}"))
    x = rand((1, 2, 4, 8), "float16")
    y = mx.fast.rope(x, 8, traditional=False, base=10000.0, scale=1.0, offset=7)
    out.append(case("rope", [x], y, args={"dims": 8, "traditional": False, "base": 10000.0,
                                          "scale": 1.0, "offset": 7},
                    rtol=5e-3, atol=5e-3, name="rope_float16"))
    x, freqs = rand((1, 1, 6, 8)), mx.abs(rand((4,))) + 0.1
    y = mx.fast.rope(x, 8, traditional=False, base=None, scale=1.0, offset=2, freqs=freqs)
    out.append(case("rope_freqs", [x, freqs], y, args={"dims": 8, "traditional": False,
                                                       "scale": 1.0, "offset": 2},
                    rtol=1e-5, atol=1e-5, name="rope_freqs"))
    # array offsets: a scalar and one per batch element
    x = rand((2, 1, 3, 8))
    for off in (mx.array(4), mx.array([1, 6])):
        y = mx.fast.rope(x, 8, traditional=False, base=10000.0, scale=1.0, offset=off)
        out.append(case("rope_dynamic", [x, off], y, args={"dims": 8, "traditional": False,
                                                           "base": 10000.0, "scale": 1.0},
                        rtol=1e-5, atol=1e-5, name=f"rope_dynamic_{off.ndim}d"))

    # attention: q (B, Nq, Tq, D), k/v (B, Nkv, Tkv, D)
    def sdpa(name, q, k, v, mask=None, sinks=None, tol=(1e-5, 1e-5), mask_kind="none"):
        scale = q.shape[-1] ** -0.5
        y = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask, sinks=sinks)
        inputs = [q, k, v]
        if mask_kind == "array":
            inputs.append(mask)
        if sinks is not None:
            inputs.append(sinks)
        out.append(case("sdpa", inputs, y, args={"scale": scale, "mask": mask_kind,
                                                 "sinks": sinks is not None},
                        rtol=tol[0], atol=tol[1], name=name))

    q, k, v = rand((1, 2, 4, 8)), rand((1, 2, 6, 8)), rand((1, 2, 6, 8))
    sdpa("sdpa_plain", q, k, v)
    sdpa("sdpa_causal", q, k, v, mask="causal", mask_kind="causal")
    bool_mask = rand((4, 6), "bool")
    bool_mask = bool_mask | mx.eye(4, 6, k=2, dtype=mx.bool_)  # every query sees a key
    sdpa("sdpa_bool_mask", q, k, v, mask=bool_mask, mask_kind="array")
    add_mask = rand((1, 2, 4, 6))
    sdpa("sdpa_additive_mask", q, k, v, mask=add_mask, mask_kind="array")
    sdpa("sdpa_sinks", q, k, v, sinks=rand((2,)))
    sdpa("sdpa_causal_sinks", q, k, v, mask="causal", sinks=rand((2,)), mask_kind="causal")
    # grouped-query attention: 4 query heads over 2 key/value heads
    q4 = rand((2, 4, 3, 8))
    k2, v2 = rand((2, 2, 3, 8)), rand((2, 2, 3, 8))
    sdpa("sdpa_gqa_causal", q4, k2, v2, mask="causal", mask_kind="causal")
    qh, kh, vh = rand((1, 2, 5, 16), "float16"), rand((1, 2, 5, 16), "float16"), rand((1, 2, 5, 16), "float16")
    sdpa("sdpa_float16", qh, kh, vh, mask="causal", mask_kind="causal", tol=(5e-3, 5e-3))

    logits = rand((3, 5, 7), low=-4, high=4)
    targets = mx.array([[0, 6, 3, 2, 1], [5, 5, 0, 4, 3], [1, 2, 6, 0, 0]], dtype=mx.int32)
    out.append(case("cross_entropy", [logits, targets], mx.fast.cross_entropy(logits, targets),
                    rtol=1e-5, atol=1e-5))
    lh = rand((4, 9), "bfloat16")
    th = mx.array([8, 0, 3, 5], dtype=mx.int32)
    out.append(case("cross_entropy", [lh, th], mx.fast.cross_entropy(lh, th), rtol=1e-2,
                    atol=1e-2, name="cross_entropy_bfloat16"))
    return out


save("fast", cases())
