//! `bench --cuda-profile-decode`: the timed decode bracketed by the CUDA driver's
//! `cuProfilerStart` / `cuProfilerStop`, so that a profiler started with collection off
//! (`ncu --profile-from-start off`) records the decode steps' kernels and nothing of the
//! random weights or the prefill before them (`benches/gpu/kernel_ab.sh --decode`).
//!
//! MLX's CUDA build links the CUDA runtime statically but loads the driver
//! (`libcuda.so.1`), so the driver's entry points are looked up there. The calls run in
//! MLX's context: the device's primary context, made current on this thread around each
//! call.

use anyhow::{bail, Result};

type Ctx = *mut std::ffi::c_void;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
type Init = unsafe extern "C" fn(u32) -> i32;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
type Retain = unsafe extern "C" fn(*mut Ctx, i32) -> i32;
type Push = unsafe extern "C" fn(Ctx) -> i32;
type Pop = unsafe extern "C" fn(*mut Ctx) -> i32;
type Release = unsafe extern "C" fn(i32) -> i32;
type Call = unsafe extern "C" fn() -> i32;

/// The driver entry points the bracket needs (only built on Linux).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) struct CudaProfiler {
    ctx: Ctx,
    push: Push,
    pop: Pop,
    release: Release,
    start: Call,
    stop: Call,
}

/// The CUDA device MLX runs on (its default GPU).
const DEVICE: i32 = 0;

impl CudaProfiler {
    /// Finds the driver MLX loaded and retains device 0's primary context; an error that
    /// says why where there is no CUDA driver (a CPU or Metal build of MLX).
    pub(super) fn open() -> Result<Self> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: dlopen / dlsym with NUL-terminated names; each symbol is cast to the
            // signature the CUDA driver API documents for it (CUresult is an int, CUdevice
            // an int, CUcontext a pointer).
            unsafe {
                let lib = c"libcuda.so.1";
                let handle = libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
                if handle.is_null() {
                    bail!(
                        "--cuda-profile-decode: MLX has not loaded the CUDA driver \
                         (libcuda.so.1): it needs MLX's CUDA build and --device gpu"
                    );
                }
                let sym = |name: &std::ffi::CStr| -> Result<*mut libc::c_void> {
                    let p = libc::dlsym(handle, name.as_ptr());
                    if p.is_null() {
                        Err(anyhow::anyhow!(
                            "--cuda-profile-decode: libcuda.so.1 has no {name:?}"
                        ))
                    } else {
                        Ok(p)
                    }
                };
                type P = *mut libc::c_void;
                let init = std::mem::transmute::<P, Init>(sym(c"cuInit")?);
                let retain = std::mem::transmute::<P, Retain>(sym(c"cuDevicePrimaryCtxRetain")?);
                let push = std::mem::transmute::<P, Push>(sym(c"cuCtxPushCurrent_v2")?);
                let pop = std::mem::transmute::<P, Pop>(sym(c"cuCtxPopCurrent_v2")?);
                let release =
                    std::mem::transmute::<P, Release>(sym(c"cuDevicePrimaryCtxRelease_v2")?);
                let start = std::mem::transmute::<P, Call>(sym(c"cuProfilerStart")?);
                let stop = std::mem::transmute::<P, Call>(sym(c"cuProfilerStop")?);
                // MLX may not have touched the GPU yet: cuInit may be called any number of times.
                check("cuInit", init(0))?;
                let mut ctx = std::ptr::null_mut();
                check("cuDevicePrimaryCtxRetain", retain(&mut ctx, DEVICE))?;
                Ok(CudaProfiler {
                    ctx,
                    push,
                    pop,
                    release,
                    start,
                    stop,
                })
            }
        }
        #[cfg(not(target_os = "linux"))]
        bail!("--cuda-profile-decode: CUDA runs only on Linux")
    }

    /// Starts the profiler's collection.
    pub(super) fn start(&self) -> Result<()> {
        self.in_context("cuProfilerStart", self.start)
    }

    /// Stops the profiler's collection.
    pub(super) fn stop(&self) -> Result<()> {
        self.in_context("cuProfilerStop", self.stop)
    }

    fn in_context(&self, what: &str, f: Call) -> Result<()> {
        // SAFETY: the context was retained in `open` and is released only on drop; push
        // and pop are paired on this thread.
        unsafe {
            check("cuCtxPushCurrent", (self.push)(self.ctx))?;
            let r = f();
            let mut popped = std::ptr::null_mut();
            let p = (self.pop)(&mut popped);
            check(what, r)?;
            check("cuCtxPopCurrent", p)
        }
    }
}

impl Drop for CudaProfiler {
    fn drop(&mut self) {
        // SAFETY: balances the retain of `open`.
        unsafe {
            (self.release)(DEVICE);
        }
    }
}

/// A driver call's result as an error naming the call and its CUresult.
fn check(what: &str, result: i32) -> Result<()> {
    match result {
        0 => Ok(()),
        r => bail!("--cuda-profile-decode: {what} failed (CUresult {r})"),
    }
}
