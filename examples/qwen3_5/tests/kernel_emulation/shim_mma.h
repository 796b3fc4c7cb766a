// CPU stand-in for mlx-lm/kernels/small_batch_mma.cuh: PTX's mma.sync m16n8k16 (float32
// accumulators) over the register fragments of the 32 lanes of the emulated warp. Each
// lane posts its A and B registers, the warp meets at a barrier, and each lane computes its
// four accumulators from everyone's registers with the fragment layout of the PTX ISA:
//   A register r of lane l: row l/4 + 8 (r % 2), values 2 (l % 4 + 4 (r / 2)) and the next;
//   B register r of lane l: column l/4, values 2 (l % 4 + 4 r) and the next;
//   accumulator r of lane l: row l/4 + 8 (r / 2), column 2 (l % 4) + r % 2.
// The products of the 16-bit values are exact in float32 and summed in order of the value;
// the tensor cores' own rounding differs from this by a few float32 ulps.
#pragma once
#include "shim_cuda.h"

inline float sb_value(unsigned short h, const __nv_bfloat16*) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float sb_value(unsigned short h, const __half*) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

template <class P>
inline void sb_mma(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                   unsigned b0, unsigned b1, P tag) {
  emul::Warp* w = emul::current_warp;
  const int lane = emul::current_lane;
  w->mma_a[lane][0] = a0;
  w->mma_a[lane][1] = a1;
  w->mma_a[lane][2] = a2;
  w->mma_a[lane][3] = a3;
  w->mma_b[lane][0] = b0;
  w->mma_b[lane][1] = b1;
  w->bar.arrive_and_wait();
  auto half = [](unsigned reg, int k) {
    return static_cast<unsigned short>((k & 1) ? reg >> 16 : reg & 0xffffu);
  };
  auto a = [&](int row, int k) {
    const int owner = (row % 8) * 4 + (k % 8) / 2;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return sb_value(half(w->mma_a[owner][reg], k), tag);
  };
  auto b = [&](int k, int col) {
    const int owner = col * 4 + (k % 8) / 2;
    const int reg = k >= 8 ? 1 : 0;
    return sb_value(half(w->mma_b[owner][reg], k), tag);
  };
  for (int r = 0; r < 4; ++r) {
    const int row = lane / 4 + 8 * (r / 2);
    const int col = 2 * (lane % 4) + r % 2;
    float s = 0.0f;
    for (int k = 0; k < 16; ++k) {
      s += a(row, k) * b(k, col);
    }
    d[r] += s;
  }
  w->bar.arrive_and_wait();
}
