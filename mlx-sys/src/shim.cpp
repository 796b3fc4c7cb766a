// Native helpers of mlx-rs, compiled by mlx-sys's build script against the MLX headers.
//
// 1. The BLAS/LAPACK error handlers `xerbla_`, `xerbla_array_` and `cblas_xerbla`.
// 2. Releasing the worker thread that MLX 0.32.2's scheduler keeps for a stream.
//
// ---- 1. BLAS/LAPACK error handlers --------------------------------------------------
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
//
// ---- 2. Stream worker threads ---------------------------------------------------------
//
// MLX starts one OS thread per stream the first time work is queued on it and keeps it
// for the life of the process: every thread that ever ran an op (each gets its own
// default stream) and every `new_stream` pins a thread for good. MLX has no call to
// release one, so this file does what MLX's own `Scheduler` destructor would do for a
// single stream: it takes the stream's `StreamThread` out of the scheduler's map and
// destroys it, which finishes the queued work and joins the thread.
//
// It reaches two private members of `mlx::core::scheduler::Scheduler` (through an
// explicit template instantiation, which may name private members) and repeats the
// definition of `StreamThread`, which MLX keeps in scheduler.cpp. Both are taken from
// MLX 0.32.2 exactly; mlx-sys builds against that version only, and mlx-rs calls this
// only when the MLX loaded at run time reports that version.

#include <condition_variable>
#include <cstdarg>
#include <cstddef>
#include <string>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "mlx/error.h"
#include "mlx/scheduler.h"
#include "mlx/utils.h"

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

namespace mlx::core::scheduler {

// Identical to the definition in MLX 0.32.2's mlx/scheduler.cpp.
struct StreamThread {
  std::mutex mtx;
  std::queue<std::function<void()>> q;
  std::condition_variable cond;
  bool stop;
  std::thread thread;
  Error error;

  StreamThread() : stop(false), thread(&StreamThread::thread_fn, this) {}

  ~StreamThread() {
    {
      std::lock_guard<std::mutex> lk(mtx);
      stop = true;
    }
    cond.notify_one();
    thread.join();
  }

  void thread_fn() {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lk(mtx);
        cond.wait(lk, [this] { return !this->q.empty() || this->stop; });
        if (q.empty() && stop) {
          return;
        }
        task = std::move(q.front());
        q.pop();
      }

      task();
    }
  }
};

} // namespace mlx::core::scheduler

namespace {

using mlx::core::scheduler::Scheduler;
using mlx::core::scheduler::StreamThread;

struct ThreadsMember {
  using type = std::unordered_map<int, std::unique_ptr<StreamThread>> Scheduler::*;
  friend type member(ThreadsMember);
};

struct MutexMember {
  using type = std::shared_mutex Scheduler::*;
  friend type member(MutexMember);
};

template <typename Tag, typename Tag::type M>
struct Reach {
  friend typename Tag::type member(Tag) {
    return M;
  }
};

template struct Reach<ThreadsMember, &Scheduler::threads_>;
template struct Reach<MutexMember, &Scheduler::threads_mtx_>;

} // namespace

extern "C" {

// Finishes the work queued on stream `index` and ends its worker thread. Returns 1 when
// a thread was released, 0 when the stream had none, -1 on failure. A later use of the
// stream starts a new thread, as the first use did.
int mlx_rs_release_stream_thread(int index) {
  try {
    auto& sched = mlx::core::scheduler::scheduler();
    auto& threads = sched.*member(ThreadsMember{});
    auto& mtx = sched.*member(MutexMember{});
    std::unique_ptr<StreamThread> owned;
    {
      std::unique_lock lock(mtx);
      auto it = threads.find(index);
      if (it == threads.end()) {
        return 0;
      }
      owned = std::move(it->second);
      threads.erase(it);
    }
    // Outside the lock: joining waits for the queued work.
    owned.reset();
    return 1;
  } catch (...) {
    return -1;
  }
}

} // extern "C"
