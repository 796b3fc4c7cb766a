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

// The float whose bits are `bits` (a float passed as an int template constant).
GDN_FN float gdn_float_from_bits(int bits) {
  return __int_as_float(bits);
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

// Block-shared storage and the block-wide barrier (the step kernel's staging).
#define GDN_SHARED __shared__
GDN_FN void gdn_barrier() {
  __syncthreads();
}
