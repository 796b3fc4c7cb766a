// CPU emulation of the few GPU features the gated delta kernels use: lanes of a warp /
// SIMD group run as 32 threads, a cross-lane sum is a barrier-synchronised exchange.
#pragma once
#include <array>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

// bfloat16 with round-to-nearest-even from float (as CUDA's __float2bfloat16 and
// Metal's bfloat conversions do for finite values).
struct bf16_emul {
  uint16_t bits;
  bf16_emul() = default;
  bf16_emul(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint32_t rounding = 0x7FFF + ((u >> 16) & 1);
    bits = static_cast<uint16_t>((u + rounding) >> 16);
  }
  operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

namespace emul {
// One warp at a time: 32 threads, a shared exchange buffer and a barrier.
struct Warp {
  std::barrier<> bar{32};
  float slots[32];
};
inline thread_local Warp* current_warp = nullptr;
inline thread_local int current_lane = 0;

inline float exchange_xor(float v, int offset) {
  Warp* w = current_warp;
  w->slots[current_lane] = v;
  w->bar.arrive_and_wait();
  float other = w->slots[current_lane ^ offset];
  w->bar.arrive_and_wait();
  return other;
}

inline float lane_sum(float v) {
  Warp* w = current_warp;
  w->slots[current_lane] = v;
  w->bar.arrive_and_wait();
  float total = 0.0f;
  for (int i = 0; i < 32; ++i) total += w->slots[i];
  w->bar.arrive_and_wait();
  return total;
}

// Runs `lane_fn(lane)` on 32 threads sharing one warp.
inline void run_warp(const std::function<void(int)>& lane_fn) {
  Warp warp;
  std::vector<std::thread> threads;
  for (int lane = 0; lane < 32; ++lane) {
    threads.emplace_back([&, lane] {
      current_warp = &warp;
      current_lane = lane;
      lane_fn(lane);
    });
  }
  for (auto& t : threads) t.join();
}
}  // namespace emul
