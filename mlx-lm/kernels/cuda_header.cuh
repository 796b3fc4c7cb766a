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
