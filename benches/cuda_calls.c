// A diagnostic LD_PRELOAD library: counts and times the CUDA driver, cuBLASLt, cuDNN and
// NVRTC calls that libmlx makes through the dynamic linker (the CUDA runtime is linked into
// libmlx statically, so its calls are not seen), and prints them to stderr, per function
// since the last mark, whenever the program calls shim_mark(label) (the GPU test
// `fused batch_step_phases` does, through dlsym, when the library is loaded).
//
//   gcc -O2 -shared -fPIC -o cuda_calls.so benches/cuda_calls.c -ldl
//   LD_PRELOAD=$PWD/cuda_calls.so fused-<hash> --ignored --nocapture batch_step_phases
//
// Every wrapper passes six register arguments on (more only where the function has more):
// a function with fewer ignores the rest.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
typedef void* P;
enum { N = 32 };
static const char* names[N];
static long counts[N], nanos[N];
static long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000L + t.tv_nsec; }
void shim_mark(const char* label) {
  fprintf(stderr, "[shim] %s:", label);
  for (int i = 0; i < N; i++) if (names[i] && counts[i]) fprintf(stderr, " %s %ld (%.0f us)", names[i], counts[i], nanos[i] / 1e3);
  fprintf(stderr, "\n");
  memset(counts, 0, sizeof counts); memset(nanos, 0, sizeof nanos);
}
#define REAL(i, name) static int (*real)(); if (!real) { real = dlsym(RTLD_NEXT, #name); names[i] = #name; } long t0 = now();
#define DONE(i) __atomic_add_fetch(&nanos[i], now() - t0, __ATOMIC_RELAXED); __atomic_add_fetch(&counts[i], 1, __ATOMIC_RELAXED); return r;
#define W1(i, n) int n(P a) { REAL(i, n) int r = real(a); DONE(i) }
#define W2(i, n) int n(P a, P b) { REAL(i, n) int r = real(a, b); DONE(i) }
#define W3(i, n) int n(P a, P b, P c) { REAL(i, n) int r = real(a, b, c); DONE(i) }
#define W4(i, n) int n(P a, P b, P c, P d) { REAL(i, n) int r = real(a, b, c, d); DONE(i) }
#define W5(i, n) int n(P a, P b, P c, P d, P e) { REAL(i, n) int r = real(a, b, c, d, e); DONE(i) }
#define W6(i, n) int n(P a, P b, P c, P d, P e, P f) { REAL(i, n) int r = real(a, b, c, d, e, f); DONE(i) }
W6(0, cuGraphAddKernelNode_v2)
W6(1, cuGraphGetNodes)
W6(2, cuGraphCreate)
W6(3, cuLaunchKernelEx)
W6(4, cuModuleLoadDataEx)
W6(5, cuModuleGetFunction)
W6(6, nvrtcCompileProgram)
W6(8, cublasLtMatmulDescCreate)
W6(9, cublasLtMatrixLayoutCreate)
W6(10, cublasLtMatmulPreferenceCreate)
W6(11, cudnnBackendExecute)
W6(12, cudnnBackendPopulateCudaGraph)
W6(13, cudnnBackendUpdateCudaGraph)
W6(14, cudnnBackendFinalize)
W6(15, cuGraphKernelNodeSetAttribute)
W6(16, cuFuncSetAttribute)
W6(17, cuOccupancyMaxPotentialBlockSize)
int cublasLtMatmul(P a, P b, P c, P d, P e, P f, P g, P h, P i2, P j, P k, P l, P m, P n, P o, P p) {
  REAL(18, cublasLtMatmul) int r = real(a, b, c, d, e, f, g, h, i2, j, k, l, m, n, o, p); DONE(18) }
int cublasLtMatmulAlgoGetHeuristic(P a, P b, P c, P d, P e, P f, P g, P h, P i2, P j) {
  REAL(19, cublasLtMatmulAlgoGetHeuristic) int r = real(a, b, c, d, e, f, g, h, i2, j); DONE(19) }
