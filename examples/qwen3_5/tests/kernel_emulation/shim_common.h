// CPU emulation of the few GPU features the kernels use: lanes of a warp / SIMD group run
// as 32 threads, a cross-lane sum is a barrier-synchronised exchange; a block of several
// warps (the attention kernels) runs all its threads at once, with a block-wide barrier.
#pragma once
#include <array>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
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
  // The register fragments of a tensor-core multiply (shim_mma.h), one row per lane.
  unsigned mma_a[32][4];
  unsigned mma_b[32][2];
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

// Every lane gets lane `src`'s value.
inline float exchange_from(float v, int src) {
  Warp* w = current_warp;
  w->slots[current_lane] = v;
  w->bar.arrive_and_wait();
  float other = w->slots[src];
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

// One block at a time: every thread of it at once, its warps (32 consecutive threads of
// the linear thread index) and a barrier for __syncthreads.
struct Block {
  explicit Block(int threads) : bar(threads), warps(new Warp[threads / 32]) {}
  std::barrier<> bar;
  std::unique_ptr<Warp[]> warps;
};
inline thread_local Block* current_block = nullptr;

inline void sync_block() { current_block->bar.arrive_and_wait(); }

// Runs `thread_fn(t)` for t < threads (a multiple of 32) on one thread each, thread t in
// warp t / 32 at lane t % 32.
inline void run_block(int threads, const std::function<void(int)>& thread_fn) {
  Block block(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      current_block = &block;
      current_warp = &block.warps[t / 32];
      current_lane = t % 32;
      thread_fn(t);
    });
  }
  for (auto& th : pool) th.join();
}
}  // namespace emul
