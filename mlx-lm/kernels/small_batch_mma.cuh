// Tensor-core multiply-accumulate of the small-batch product (small_batch_gemm.cu.inc):
// d += A · B for one 16 × 8 × 16 tile (A 16 × 16 row-major, B 16 × 8 column-major, float32
// accumulators), in the register fragments PTX's mma.sync m16n8k16 takes: four 32-bit
// registers of A and two of B per lane, two 16-bit values each. The element type is
// picked by overloading on a null pointer of it. On the CPU,
// examples/qwen3_5/tests/kernel_emulation/shim_mma.h stands in for this file.

#define SB_MMA(TYPE, PTX_TYPE)                                                   \
  __device__ __forceinline__ void sb_mma(                                        \
      float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,         \
      unsigned b0, unsigned b1, const TYPE*) {                                   \
    asm volatile(                                                                \
        "mma.sync.aligned.m16n8k16.row.col.f32." PTX_TYPE "." PTX_TYPE ".f32 "   \
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"      \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                         \
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));                 \
  }

SB_MMA(__nv_bfloat16, "bf16")
SB_MMA(__half, "f16")

#undef SB_MMA
