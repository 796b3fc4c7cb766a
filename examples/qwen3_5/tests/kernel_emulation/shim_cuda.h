// Stand-ins for what MLX's CUDA JIT header and the CUDA compiler provide.
#pragma once
#include "shim_common.h"

#define __global__
#define __device__
#define __forceinline__ inline
#define __grid_constant__
// Block-shared memory: one block runs at a time, so a function-static array is shared by
// exactly its threads.
#define __shared__ static
// CUDA's alignment specifier (as its headers define it).
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

using __nv_bfloat16 = bf16_emul;
using __half = _Float16;
using Shape = std::array<int32_t, 8>;
using Strides = std::array<int64_t, 8>;
namespace cooperative_groups {}

inline float expf(float x) { return std::exp(x); }
inline float logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
// CUDA's 16-byte vector type (the kernels' wide loads).
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
// CUDA's integer min / max.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// Reinterprets an int's bits as a float.
inline float __int_as_float(int bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Reinterprets an unsigned int's bits as a float.
inline float __uint_as_float(unsigned bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// CUDA's byte permute: byte i of the result is byte (s >> 4i) & 7 of the eight bytes of
// x (0-3) and y (4-7).
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long xy = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) {
    r |= static_cast<unsigned>((xy >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  }
  return r;
}

inline void __syncthreads() { emul::sync_block(); }

inline float __shfl_xor_sync(unsigned mask, float v, int offset) {
  (void)mask;
  return emul::exchange_xor(v, offset);
}

inline float __shfl_sync(unsigned mask, float v, int src) {
  (void)mask;
  return emul::exchange_from(v, src);
}
