#define GDN_FN __device__ __forceinline__

GDN_FN float gdn_exp(float x) {
  return expf(x);
}

GDN_FN float gdn_log(float x) {
  return logf(x);
}

GDN_FN float gdn_rsqrt(float x) {
  return rsqrtf(x);
}

// Sum over the 32 lanes of a warp (every lane gets the total).
GDN_FN float gdn_lane_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}

// N consecutive values from p as floats: 16-byte loads where p is 16-byte aligned and the
// N values fill whole 16-byte words, else one load per value.
template <typename T, int N>
GDN_FN void gdn_load_row(const T* p, float (&out)[N]) {
  constexpr int bytes = N * (int)sizeof(T);
  constexpr int words = bytes / 16 > 0 ? bytes / 16 : 1;
  if (bytes % 16 == 0 && (reinterpret_cast<unsigned long long>(p) & 15ull) == 0) {
    uint4 buf[words];
#pragma unroll
    for (int w = 0; w < words; ++w) {
      buf[w] = reinterpret_cast<const uint4*>(p)[w];
    }
    const T* v = reinterpret_cast<const T*>(buf);
#pragma unroll
    for (int i = 0; i < N; ++i) {
      out[i] = static_cast<float>(v[i]);
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < N; ++i) {
    out[i] = static_cast<float>(p[i]);
  }
}

template <typename T>
struct gdn_is_bf16 {
  static constexpr bool value = false;
};
template <>
struct gdn_is_bf16<__nv_bfloat16> {
  static constexpr bool value = true;
};

// 16 / sizeof(T) consecutive values from p (16-byte aligned) as floats, from one 16-byte
// load: bfloat16 and float32 by bit moves in registers (gdn_load_row goes through a local
// array, which puts bfloat16 in local memory), other types through gdn_load_row.
template <typename T>
GDN_FN void gdn_load16(const T* p, float (&out)[16 / sizeof(T)]) {
  if constexpr (sizeof(T) == 4 || gdn_is_bf16<T>::value) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const unsigned words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (sizeof(T) == 4) {
        out[i] = __uint_as_float(words[i]);
      } else {
        out[2 * i] = __uint_as_float(words[i] << 16);
        out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
      }
    }
  } else {
    gdn_load_row<T, 16 / sizeof(T)>(p, out);
  }
}
