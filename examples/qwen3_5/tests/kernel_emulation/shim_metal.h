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

// Metal's bit reinterpretation between types of one size.
template <typename To, typename From>
inline To as_type(From v) {
  static_assert(sizeof(To) == sizeof(From), "as_type needs types of one size");
  To t;
  std::memcpy(&t, &v, sizeof(To));
  return t;
}

namespace metal {
inline float simd_sum(float v) { return emul::lane_sum(v); }
namespace precise {
inline float exp(float x) { return std::exp(x); }
inline float log(float x) { return std::log(x); }
inline float rsqrt(float x) { return 1.0f / std::sqrt(x); }
}  // namespace precise
}  // namespace metal

// Thread-group memory: one thread group runs at a time, so a function-static array is
// shared by exactly its threads; the barrier is the block's.
#define threadgroup static
namespace metal {
enum class mem_flags { mem_none, mem_device, mem_threadgroup };
inline void threadgroup_barrier(mem_flags) { emul::sync_block(); }
}  // namespace metal
