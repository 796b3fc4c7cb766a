//! A deep stack for MLX's graph walks.
//!
//! Several MLX functions walk the graph recursively, one native stack frame (or more) per
//! node on the longest path: `print_graph`, `export_to_dot`, `compile`, `vjp`/`jvp`
//! (so `grad` and `value_and_grad`), `vmap`, `checkpoint`, custom functions and
//! `export_function`. A chain of 100,000 ops overflows a thread's usual 2–8 MiB stack and
//! aborts the process. Evaluation is not among them: MLX 0.32 orders the graph with
//! explicit stacks and frees chains iteratively (a 1,000,000-op chain evaluates on a
//! 256 KiB thread), so `eval`, `async_eval`, waits and synchronisation run on the
//! caller's stack and pay nothing here. mlx-rs runs every call that may walk a graph
//! recursively (the ones above; also printing and saving, which are rare enough that the
//! switch costs nothing that matters) on a stack of its own,
//! on the same thread (thread-local state, MLX's thread-affine streams and the closures
//! MLX calls back all stay where they were): [`run`] switches the stack pointer to the
//! thread's deep stack for the call and back. Each thread that uses MLX gets one, at its
//! first such call: [`STACK_BYTES`] of reserved address space with a guard page below,
//! unmapped when the thread ends. Memory is used only as a walk touches it (about 270
//! bytes per node of depth for `grad` and `print_graph`), and a walk that went deeper
//! than the top 1 MiB gives its pages back when it ends. Calls nested inside such a call
//! (an `eval` inside a function being transformed) run on the same deep stack.
//!
//! If the reservation cannot be made (an address-space limit), the call runs on the
//! thread's own stack, as it would without this module.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// The size of the stack a graph walk gets: 4 GiB, enough for chains of about 15 million
/// ops (a graph that deep needs several GiB of memory itself).
pub(crate) const STACK_BYTES: usize = 4 << 30;

/// Smallest reservation tried when a large one is refused (address-space limits).
const MIN_STACK_BYTES: usize = 64 << 20;

/// Pages near the top of the stack kept when a walk went deeper (shallow calls, the
/// common case, touch only these).
const KEPT_BYTES: usize = 1 << 20;

/// The pattern of the probe page (see `Region::probe_page`).
const MARK: u64 = 0x6d6c_782d_7273_2d21;

thread_local! {
    /// Whether this thread is running on a stack from [`run`] now.
    static ON_DEEP_STACK: Cell<bool> = const { Cell::new(false) };
    /// This thread's deep stack, made at its first use and unmapped when the thread ends.
    static STACK: RefCell<Option<Region>> = const { RefCell::new(None) };
}

/// Runs `f` on a deep stack (module docs); a panic in `f` resumes in the caller.
pub(crate) fn run<F: FnOnce() -> R, R>(f: F) -> R {
    if !SUPPORTED || ON_DEEP_STACK.with(Cell::get) {
        return f();
    }
    let top = STACK.with(|cell| {
        let mut region = cell.borrow_mut();
        if region.is_none() {
            *region = Region::reserve();
        }
        region.as_ref().map(Region::top)
    });
    let Some(top) = top else {
        return f();
    };
    let mut task = Task {
        f: Some(f),
        out: None,
    };
    ON_DEEP_STACK.with(|s| s.set(true));
    // SAFETY: `top` is the 16-byte aligned top of this thread's writable stack mapping,
    // which stays mapped until the thread ends, and nothing else runs on it now (the flag
    // above); `trampoline::<F, R>` matches `task`'s type and does not unwind.
    unsafe {
        switch_and_call(
            top,
            trampoline::<F, R>,
            &mut task as *mut Task<F, R> as *mut u8,
        )
    };
    ON_DEEP_STACK.with(|s| s.set(false));
    STACK.with(|cell| {
        if let Some(region) = cell.borrow().as_ref() {
            region.release_deep_pages();
        }
    });
    match task.out {
        Some(Ok(r)) => r,
        Some(Err(panic)) => resume_unwind(panic),
        // The trampoline always fills `out`.
        None => unreachable_result(),
    }
}

#[cold]
fn unreachable_result<R>() -> R {
    // The trampoline fills `out` before returning; reaching here means the stack switch
    // returned without calling it, which the assembly below cannot do.
    std::process::abort()
}

struct Task<F, R> {
    f: Option<F>,
    out: Option<std::thread::Result<R>>,
}

/// Runs the task on the deep stack; never unwinds.
unsafe extern "C" fn trampoline<F: FnOnce() -> R, R>(data: *mut u8) {
    // SAFETY: `data` is the `Task<F, R>` that `run` passed, alive for this call.
    let task = unsafe { &mut *(data as *mut Task<F, R>) };
    if let Some(f) = task.f.take() {
        task.out = Some(catch_unwind(AssertUnwindSafe(f)));
    }
}

/// An anonymous mapping for a stack, with an inaccessible guard page at its low end.
struct Region {
    base: *mut libc::c_void,
    len: usize,
}

impl Region {
    fn reserve() -> Option<Region> {
        let page = page_size();
        // Under an address-space limit, take a small share of what is left (the
        // reservation counts against it for as long as the thread lives).
        let room = crate::limits::address_space_room().map_or(usize::MAX, |r| {
            usize::try_from(r / 16).unwrap_or(usize::MAX)
        });
        let mut size = STACK_BYTES.min(room);
        while size >= MIN_STACK_BYTES {
            let len = size + page;
            // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANON | NORESERVE,
                    -1,
                    0,
                )
            };
            if base != libc::MAP_FAILED {
                let region = Region { base, len };
                // SAFETY: the first page of the mapping just made.
                if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } == 0 {
                    region.mark_probe();
                    return Some(region);
                }
                return None;
            }
            size /= 4;
        }
        None
    }

    /// The page just below the top `KEPT_BYTES`, as words: filled with [`MARK`] while
    /// unused, so that a walk that went deeper shows by having written into it.
    fn probe_page(&self) -> Option<(*mut u64, usize)> {
        let page = page_size();
        if self.len <= KEPT_BYTES + 2 * page {
            return None;
        }
        let probe = self.top().wrapping_sub(KEPT_BYTES + page) as *mut u64;
        Some((probe, page / 8))
    }

    fn mark_probe(&self) {
        if let Some((words, n)) = self.probe_page() {
            // SAFETY: a page inside the writable part of the mapping, used as stack only
            // while a walk runs (never while this runs).
            unsafe { std::slice::from_raw_parts_mut(words, n) }.fill(MARK);
        }
    }

    /// After a walk: if it went below the top `KEPT_BYTES`, gives the memory of the pages
    /// it touched there back to the system (the mapping stays; they read as zero again).
    fn release_deep_pages(&self) {
        let Some((words, n)) = self.probe_page() else {
            return;
        };
        // SAFETY: as in `mark_probe`.
        let words = unsafe { std::slice::from_raw_parts(words, n) };
        // Every call on the deep stack (each call of a compiled function, for one) pays
        // for this scan, so it is written to vectorise: one OR over the page, no early exit.
        if words.iter().fold(0, |acc, &w| acc | (w ^ MARK)) == 0 {
            return;
        }
        let page = page_size();
        let start = (self.base as *mut u8).wrapping_add(page);
        let len = self.len - page - KEPT_BYTES;
        // SAFETY: a range inside the mapping that nothing uses now (the walk is over).
        unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        self.mark_probe();
    }

    fn top(&self) -> *mut u8 {
        // Page-aligned, so 16-byte aligned as both ABIs want.
        (self.base as *mut u8).wrapping_add(self.len)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `reserve`, unmapped once, after the call left it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const NORESERVE: libc::c_int = libc::MAP_NORESERVE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const NORESERVE: libc::c_int = 0;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SUPPORTED: bool = true;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SUPPORTED: bool = true;

/// Calls `f(data)` with the stack pointer at `top`, then restores it.
///
/// # Safety
///
/// `top` must be the 16-byte aligned top of writable memory large enough for `f`, and `f`
/// must not unwind.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn switch_and_call(top: *mut u8, f: unsafe extern "C" fn(*mut u8), data: *mut u8) {
    extern "C" {
        fn mlx_rs_switch_stack_and_call(
            data: *mut u8,
            f: unsafe extern "C" fn(*mut u8),
            top: *mut u8,
        );
    }
    // SAFETY: per this function's contract.
    unsafe { mlx_rs_switch_stack_and_call(data, f, top) }
}

// The switch keeps a frame pointer to the old stack and describes it in the unwind
// tables, so that backtraces (a panic hook's, a debugger's) walk from the deep stack back
// into the caller's frames.
#[cfg(all(target_arch = "x86_64", not(target_os = "macos")))]
std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl mlx_rs_switch_stack_and_call",
    ".hidden mlx_rs_switch_stack_and_call",
    ".type mlx_rs_switch_stack_and_call, @function",
    "mlx_rs_switch_stack_and_call:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "mov rsp, rdx",
    "call rsi",
    "mov rsp, rbp",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size mlx_rs_switch_stack_and_call, . - mlx_rs_switch_stack_and_call",
);

#[cfg(target_arch = "aarch64")]
macro_rules! aarch64_switch {
    ($name:literal, $($prologue:literal),*) => {
        std::arch::global_asm!(
            ".text",
            ".p2align 2",
            $($prologue,)*
            concat!($name, ":"),
            ".cfi_startproc",
            "stp x29, x30, [sp, #-16]!",
            ".cfi_def_cfa_offset 16",
            ".cfi_offset x29, -16",
            ".cfi_offset x30, -8",
            "mov x29, sp",
            ".cfi_def_cfa_register x29",
            "mov sp, x2",
            "blr x1",
            "mov sp, x29",
            ".cfi_def_cfa sp, 16",
            "ldp x29, x30, [sp], #16",
            ".cfi_def_cfa_offset 0",
            ".cfi_restore x29",
            ".cfi_restore x30",
            "ret",
            ".cfi_endproc",
        );
    };
}

#[cfg(all(target_arch = "aarch64", not(target_os = "macos")))]
aarch64_switch!(
    "mlx_rs_switch_stack_and_call",
    ".globl mlx_rs_switch_stack_and_call",
    ".hidden mlx_rs_switch_stack_and_call",
    ".type mlx_rs_switch_stack_and_call, %function"
);

#[cfg(all(target_arch = "aarch64", target_os = "macos"))]
aarch64_switch!(
    "_mlx_rs_switch_stack_and_call",
    ".globl _mlx_rs_switch_stack_and_call",
    ".private_extern _mlx_rs_switch_stack_and_call"
);

#[cfg(all(target_arch = "x86_64", target_os = "macos"))]
std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl _mlx_rs_switch_stack_and_call",
    ".private_extern _mlx_rs_switch_stack_and_call",
    "_mlx_rs_switch_stack_and_call:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "mov rsp, rdx",
    "call rsi",
    "mov rsp, rbp",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
);

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn switch_and_call(_top: *mut u8, f: unsafe extern "C" fn(*mut u8), data: *mut u8) {
    // SAFETY: `SUPPORTED` is false here, so `run` never gets this far; kept for types.
    unsafe { f(data) }
}
