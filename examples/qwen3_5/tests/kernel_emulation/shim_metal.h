// Stand-ins for what Metal and MLX's Metal utils provide.
#pragma once
#include "shim_common.h"

#define device
#define constant
#define thread
#define kernel

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
using bfloat16_t = bf16_emul;

namespace metal {
inline float simd_sum(float v) { return emul::lane_sum(v); }
namespace precise {
inline float exp(float x) { return std::exp(x); }
inline float log(float x) { return std::log(x); }
inline float rsqrt(float x) { return 1.0f / std::sqrt(x); }
}  // namespace precise
}  // namespace metal
