// Native helpers of mlx-rs, compiled by mlx-sys's build script: the BLAS/LAPACK error
// handlers `xerbla_`, `xerbla_array_` and `cblas_xerbla`.
//
// The reference BLAS/LAPACK that MLX's Linux CPU build bundles reports an illegal
// argument by calling `xerbla_`, whose own version prints and ends the process (exit
// status 0). The handlers here throw a C++ exception instead. MLX calls BLAS/LAPACK
// inside the tasks its CPU streams run, and its scheduler catches what a task throws
// and fails the evaluation with the message; the bundled libraries carry unwind tables,
// so the exception passes through their frames. Throwing (rather than returning, which
// xerbla may do by the book) matters: LAPACK drivers do not check every helper's status,
// and would go on with outputs the helper never wrote (`sgeev` with NaN input corrupts
// the heap that way).
//
// The libraries call `xerbla_` through the dynamic linker; the definitions here win
// because the executable exports them (mlx-sys names the bundled libraries to the
// linker, see build/native.rs).

#include <cstdarg>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace {

[[noreturn]] void illegal_argument(std::string routine, int arg) {
  while (!routine.empty() && routine.back() == ' ') {
    routine.pop_back();
  }
  throw std::invalid_argument(
      "[BLAS/LAPACK] " + routine + ": argument " + std::to_string(arg) +
      " had an illegal value (the reference BLAS would have ended the process)");
}

} // namespace

extern "C" {

// XERBLA(SRNAME, INFO): SRNAME is a Fortran string of `len` bytes.
__attribute__((visibility("default"))) void
xerbla_(const char* srname, const int* info, std::size_t len) {
  std::string name = srname ? std::string(srname, len < 64 ? len : 64) : "?";
  illegal_argument(name, info ? *info : 0);
}

// XERBLA_ARRAY(SRNAME_ARRAY, SRNAME_LEN, INFO), the form C callers use.
__attribute__((visibility("default"))) void xerbla_array_(
    const char* srname,
    const int* srname_len,
    const int* info,
    std::size_t) {
  int n = srname_len && *srname_len > 0 ? *srname_len : 0;
  std::string name = srname ? std::string(srname, n < 64 ? n : 64) : "?";
  illegal_argument(name, info ? *info : 0);
}

// cblas_xerbla(p, rout, form, ...): argument `p` of `rout` was illegal.
__attribute__((visibility("default"))) void
cblas_xerbla(int p, const char* rout, const char* form, ...) {
  (void)form;
  illegal_argument(rout ? rout : "?", p);
}

} // extern "C"
