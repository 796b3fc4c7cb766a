// Sum over the 32 lanes of a warp (every lane gets the total).
__device__ __forceinline__ float gdn_lane_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}
