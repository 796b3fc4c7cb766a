//! Rust closures as MLX closures, and MLX closures callable from Rust.
//!
//! MLX's transforms take functions of arrays (`mlx_closure` and relatives in mlx-c). A Rust
//! closure becomes one through a *payload*: the closure is boxed, handed to mlx-c with a
//! destructor (`mlx_closure_*_new_func_payload`), and MLX frees it when its last copy of the
//! function goes away. MLX calls back through a generic `extern "C"` trampoline.
//!
//! # Failures never cross the C boundary
//!
//! A trampoline runs the closure under [`catch_unwind`]. A panic or an `Err` from the closure
//! is stashed in a thread-local slot and the trampoline returns a failure code; mlx-c turns
//! that into a C++ exception, which unwinds MLX's frames (C++ unwinding, not Rust's) and comes
//! back as a failure code from the transform. The Rust function that called the transform
//! then takes the stash: it resumes the panic ([`resume_unwind`]) or returns the closure's
//! original error. MLX calls closures synchronously on the thread that called the transform,
//! so the thread-local stash always reaches the right caller.
//!
//! # Lifetimes and threads
//!
//! [`Closure<'a>`] may borrow (`'a`): the transforms that take one either call it and return
//! (`vjp`, `jvp`, `vmap`) or return an object that owns the only MLX copy of it (`grad`,
//! `value_and_grad`, `compile`, …) and carries the same lifetime. Functions that MLX keeps
//! inside the array graph (custom VJPs, checkpointing) must be `Send + 'static` instead:
//! see [`custom_vjp`](super::custom_vjp). `Closure` is neither `Send` nor `Sync`; it is
//! called on the thread that owns it.

use crate::error::{install_error_handler, mlx_error, take_message};
use crate::raw::VectorArray;
use crate::{Array, Error, Result};
use mlx_sys as sys;
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

// ---------------------------------------------------------------------------------------
// Failure stash
// ---------------------------------------------------------------------------------------

/// What a Rust closure called by MLX left behind when it failed.
enum Failure {
    Panic(Box<dyn Any + Send + 'static>),
    Error(Error),
}

thread_local! {
    static FAILURE: RefCell<Option<Failure>> = const { RefCell::new(None) };
}

fn stash(failure: Failure) {
    // `try_with` fails only during thread teardown; the failure code still reaches MLX.
    let _ = FAILURE.try_with(|slot| *slot.borrow_mut() = Some(failure));
}

fn take_failure() -> Option<Failure> {
    FAILURE
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten()
}

/// Runs an mlx-c call that may call Rust closures (a transform, or applying a closure).
///
/// On failure: resumes the panic of a closure, returns a closure's own error unchanged, or
/// else returns MLX's error. Never unwinds through C: by the time this returns, the C
/// frames are gone.
#[track_caller]
pub(crate) fn closure_status(f: impl FnOnce() -> c_int) -> Result<()> {
    let location = Location::caller();
    install_error_handler();
    let code = crate::graph_stack::run(f); // MLX's transforms recurse over the graph
    let failure = take_failure();
    if code == 0 {
        // A failure that MLX caught and recovered from (none known) is not ours to report.
        return Ok(());
    }
    match failure {
        Some(Failure::Panic(payload)) => {
            // The message MLX stored ("... returned a non-zero value") is superseded.
            let _ = take_message();
            resume_unwind(payload)
        }
        Some(Failure::Error(e)) => {
            let _ = take_message();
            Err(relocate(e, location))
        }
        None => Err(mlx_error(location)),
    }
}

/// An MLX error raised by this crate's own code inside a closure (e.g. the closure that
/// `grad` returns) is reported at the caller's location instead; errors from user code
/// keep theirs.
fn relocate(e: Error, caller: &'static Location<'static>) -> Error {
    const HERE: &str = file!();
    let src_dir = HERE.strip_suffix("transforms/closure.rs").unwrap_or(HERE);
    match e {
        Error::Mlx { message, location } if location.file().starts_with(src_dir) => Error::Mlx {
            message,
            location: caller,
        },
        other => other,
    }
}

/// Runs a closure body on behalf of MLX: turns panics and errors into a failure code.
pub(super) fn guarded(body: impl FnOnce() -> Result<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            stash(Failure::Error(e));
            1
        }
        Err(payload) => {
            stash(Failure::Panic(payload));
            1
        }
    }
}

// ---------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------

/// A boxed Rust function owned by MLX. The mutex gives the trampoline `&mut F` (MLX may call
/// a function kept in the graph from any thread); the owner token turns a call of the
/// closure from inside itself into an error instead of a deadlock.
pub(super) struct Payload<F> {
    f: Mutex<F>,
    owner: AtomicUsize,
}

thread_local! {
    static THREAD_TOKEN: u8 = const { 0 };
}

/// A non-zero number unique to the calling thread while it lives.
fn thread_token() -> usize {
    THREAD_TOKEN.with(|t| t as *const u8 as usize)
}

impl<F> Payload<F> {
    pub(super) fn new(f: F) -> Self {
        Payload {
            f: Mutex::new(f),
            owner: AtomicUsize::new(0),
        }
    }

    /// Boxes the payload for mlx-c (freed by [`drop_payload::<F>`]).
    pub(super) fn into_raw(self) -> *mut c_void {
        Box::into_raw(Box::new(self)).cast()
    }

    /// Runs `call` with exclusive access to the function.
    pub(super) fn with<R>(&self, call: impl FnOnce(&mut F) -> Result<R>) -> Result<R> {
        let me = thread_token();
        if self.owner.load(Ordering::Acquire) == me {
            return Err(Error::Closure(
                "a function passed to an MLX transform was called again from inside itself; \
                 recursion through MLX is not supported"
                    .into(),
            ));
        }
        // A poisoned lock only means an earlier call panicked; that panic was reported.
        let mut guard = self.f.lock().unwrap_or_else(|p| p.into_inner());
        struct Release<'p>(&'p AtomicUsize);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(0, Ordering::Release);
            }
        }
        self.owner.store(me, Ordering::Release);
        let _release = Release(&self.owner);
        call(&mut guard)
    }
}

/// The destructor mlx-c calls when it drops its last copy of a payload.
pub(super) unsafe extern "C" fn drop_payload<F>(payload: *mut c_void) {
    // A panicking destructor must not unwind into C; what it did not free is leaked.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `payload` came from `Payload::<F>::into_raw` and MLX frees it once.
        drop(unsafe { Box::from_raw(payload.cast::<Payload<F>>()) });
    }));
}

/// # Safety
/// `payload` must come from `Payload::<F>::into_raw` and still be alive (MLX guarantees
/// both while it holds the function).
pub(super) unsafe fn payload_ref<'p, F>(payload: *mut c_void) -> &'p Payload<F> {
    // SAFETY: see the function's contract.
    unsafe { &*payload.cast::<Payload<F>>() }
}

// ---------------------------------------------------------------------------------------
// Marshalling
// ---------------------------------------------------------------------------------------

/// Copies the arrays of a vector that MLX owns (the handles are shared, not the data).
pub(super) fn borrowed_arrays(vec: sys::mlx_vector_array) -> Result<Vec<Array>> {
    // The vector belongs to the caller (MLX): read it without freeing it.
    ManuallyDrop::new(VectorArray(vec)).to_vec()
}

/// Writes `arrays` into an out-parameter vector that MLX owns.
///
/// # Safety
/// `res` must point to a live `mlx_vector_array`.
pub(super) unsafe fn write_arrays(res: *mut sys::mlx_vector_array, arrays: &[Array]) -> Result<()> {
    let v = VectorArray::from_arrays(arrays);
    crate::raw::status(|| unsafe { sys::mlx_vector_array_set(res, v.0) })
}

/// Reads `n` ints MLX passes as a pointer and a length (the pointer may be null if `n == 0`).
///
/// # Safety
/// `ptr` must point to `n` ints when `n > 0`.
pub(super) unsafe fn borrowed_ints<'p>(ptr: *const c_int, n: usize) -> &'p [i32] {
    if n == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: see the function's contract.
        unsafe { std::slice::from_raw_parts(ptr, n) }
    }
}

/// An owned `mlx_map_string_to_array` (the keyword arguments of exported functions).
pub(crate) struct ArrayMap(pub(crate) sys::mlx_map_string_to_array);

impl ArrayMap {
    pub(crate) fn from_map(map: &HashMap<String, Array>) -> Result<Self> {
        // SAFETY: creates an empty map owned by the returned value.
        let out = ArrayMap(unsafe { sys::mlx_map_string_to_array_new() });
        for (k, v) in map {
            let key = CString::new(k.as_str()).map_err(|_| {
                Error::InvalidArgument(format!("keyword argument name contains a NUL: {k:?}"))
            })?;
            crate::raw::status(|| unsafe {
                sys::mlx_map_string_to_array_insert(out.0, key.as_ptr(), v.as_raw())
            })?;
        }
        Ok(out)
    }

    /// Reads a map that MLX owns into a `HashMap` (sharing the arrays).
    pub(crate) fn read(map: sys::mlx_map_string_to_array) -> Result<HashMap<String, Array>> {
        install_error_handler();
        let mut out = HashMap::new();
        // SAFETY: an iterator over a live map, freed below.
        let it = unsafe { sys::mlx_map_string_to_array_iterator_new(map) };
        let code = loop {
            let mut key: *const std::ffi::c_char = std::ptr::null();
            // SAFETY: an empty handle, filled by the call and owned by `value` below.
            let mut raw = unsafe { sys::mlx_array_new() };
            // SAFETY: live iterator; writes a borrowed key and an array into `raw`.
            let code =
                unsafe { sys::mlx_map_string_to_array_iterator_next(&mut key, &mut raw, it) };
            let value = Array::from_raw(raw);
            // 0: an entry; 2: the end; anything else: an error.
            if code != 0 || key.is_null() {
                break code;
            }
            // SAFETY: a NUL-terminated key owned by the map, valid during this step.
            let k = unsafe { CStr::from_ptr(key) }
                .to_string_lossy()
                .into_owned();
            out.insert(k, value);
        };
        // SAFETY: frees the iterator created above.
        unsafe { sys::mlx_map_string_to_array_iterator_free(it) };
        match code {
            0 | 2 => Ok(out),
            _ => Err(mlx_error(Location::caller())),
        }
    }
}

impl Drop for ArrayMap {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_map_string_to_array_free(self.0) };
    }
}

// ---------------------------------------------------------------------------------------
// Closure
// ---------------------------------------------------------------------------------------

/// A function of arrays that MLX can transform and call: made from a Rust closure
/// ([`Closure::new`]) or returned by a transform ([`grad`](super::grad),
/// [`compile`](super::compile), …). Call it with [`Closure::call`].
///
/// Cloning shares the same function. Not `Send`/`Sync` (the Rust function inside may not
/// be); `'a` is the lifetime of what the Rust function borrows.
pub struct Closure<'a> {
    raw: sys::mlx_closure,
    _marker: PhantomData<(&'a (), *const ())>,
}

impl<'a> Closure<'a> {
    /// Wraps a Rust function of arrays.
    ///
    /// The function receives the inputs (shared handles) and returns the outputs; an `Err`
    /// it returns, or a panic, comes back out of whatever MLX call invoked it.
    ///
    /// ```
    /// use mlx_rs::{transforms::Closure, Array};
    /// let f = Closure::new(|x: &[Array]| Ok(vec![x[0].square()?]))?;
    /// let y = f.call(&[Array::from_slice(&[3.0f32], &[1])?])?;
    /// assert_eq!(y[0].to_vec::<f32>()?, vec![9.0]);
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    pub fn new<F>(f: F) -> Result<Closure<'a>>
    where
        F: FnMut(&[Array]) -> Result<Vec<Array>> + 'a,
    {
        install_error_handler();
        let payload = Payload::new(f).into_raw();
        // SAFETY: MLX owns `payload` from here on and frees it with `drop_payload::<F>`.
        // The trampoline and destructor match F. MLX only keeps the function inside the
        // returned handle (and handles derived from it, which carry the same lifetime).
        let raw = unsafe {
            sys::mlx_closure_new_func_payload(
                Some(call_closure::<F>),
                payload,
                Some(drop_payload::<F>),
            )
        };
        Closure::from_raw(raw)
    }

    /// Takes ownership of a closure handle returned by mlx-c (fails on an empty one).
    #[track_caller]
    pub(crate) fn from_raw(raw: sys::mlx_closure) -> Result<Closure<'a>> {
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(Closure {
            raw,
            _marker: PhantomData,
        })
    }

    /// Runs an mlx-c call that writes a closure into its out-parameter (a transform).
    #[track_caller]
    pub(crate) fn fill(f: impl FnOnce(*mut sys::mlx_closure) -> c_int) -> Result<Closure<'a>> {
        let mut out = Closure {
            // SAFETY: an empty handle (freeing it is a no-op), owned by `out`.
            raw: unsafe { sys::mlx_closure_new() },
            _marker: PhantomData,
        };
        closure_status(|| f(&mut out.raw))?;
        if out.raw.ctx.is_null() {
            return Err(Error::Closure("MLX returned an empty function".into()));
        }
        Ok(out)
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_closure {
        self.raw
    }

    /// Calls the function with `args`.
    ///
    /// Errors: the function's own error, MLX's error, or [`Error::Closure`] when the
    /// function calls itself. A panic inside the function resumes here.
    #[track_caller]
    pub fn call<A: AsRef<Array>>(&self, args: &[A]) -> Result<Vec<Array>> {
        let input = VectorArray::from_arrays(args);
        let mut out = VectorArray::empty();
        closure_status(|| unsafe { sys::mlx_closure_apply(&mut out.0, self.raw, input.0) })?;
        out.to_vec()
    }
}

impl Clone for Closure<'_> {
    /// Shares the same function.
    fn clone(&self) -> Self {
        // SAFETY: an empty handle, then a copy of a live one (a shared_ptr copy, which
        // cannot fail).
        let mut raw = unsafe { sys::mlx_closure_new() };
        unsafe { sys::mlx_closure_set(&mut raw, self.raw) };
        Closure {
            raw,
            _marker: PhantomData,
        }
    }
}

impl Drop for Closure<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_free(self.raw) };
    }
}

impl std::fmt::Debug for Closure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closure")
    }
}

unsafe extern "C" fn call_closure<F>(
    res: *mut sys::mlx_vector_array,
    input: sys::mlx_vector_array,
    payload: *mut c_void,
) -> c_int
where
    F: FnMut(&[Array]) -> Result<Vec<Array>>,
{
    guarded(|| {
        // SAFETY: MLX passes the payload it was given with this trampoline.
        let payload = unsafe { payload_ref::<F>(payload) };
        let args = borrowed_arrays(input)?;
        let out = payload.with(|f| f(&args))?;
        // SAFETY: `res` is MLX's live out-vector.
        unsafe { write_arrays(res, &out) }
    })
}

/// Things that can be turned into a [`Closure`]: Rust functions of arrays, and closures.
///
/// Every transform takes `impl IntoClosure`, so transforms compose:
/// `grad(grad(f, &[0])?, &[0])` is the second derivative.
pub trait IntoClosure<'a> {
    /// Converts into a closure.
    fn into_closure(self) -> Result<Closure<'a>>;
}

impl<'a, F> IntoClosure<'a> for F
where
    F: FnMut(&[Array]) -> Result<Vec<Array>> + 'a,
{
    fn into_closure(self) -> Result<Closure<'a>> {
        Closure::new(self)
    }
}

impl<'a> IntoClosure<'a> for Closure<'a> {
    fn into_closure(self) -> Result<Closure<'a>> {
        Ok(self)
    }
}

impl<'a> IntoClosure<'a> for &Closure<'a> {
    fn into_closure(self) -> Result<Closure<'a>> {
        Ok(self.clone())
    }
}

// ---------------------------------------------------------------------------------------
// value_and_grad closures (returned by MLX)
// ---------------------------------------------------------------------------------------

/// The function that [`value_and_grad`](super::value_and_grad) returns: given the inputs,
/// it computes the outputs of the original function and the gradients of its first output.
pub struct ValueAndGrad<'a> {
    raw: sys::mlx_closure_value_and_grad,
    _marker: PhantomData<(&'a (), *const ())>,
}

impl<'a> ValueAndGrad<'a> {
    /// Runs an mlx-c call that writes a value-and-grad function into its out-parameter.
    #[track_caller]
    pub(crate) fn fill(
        f: impl FnOnce(*mut sys::mlx_closure_value_and_grad) -> c_int,
    ) -> Result<Self> {
        let mut out = ValueAndGrad {
            // SAFETY: an empty handle (freeing it is a no-op), owned by `out`.
            raw: unsafe { sys::mlx_closure_value_and_grad_new() },
            _marker: PhantomData,
        };
        closure_status(|| f(&mut out.raw))?;
        if out.raw.ctx.is_null() {
            return Err(Error::Closure("MLX returned an empty function".into()));
        }
        Ok(out)
    }

    /// Returns `(outputs, gradients)`: all outputs of the function at `args`, and the
    /// gradient of the first output (a scalar) with respect to each chosen argument.
    #[track_caller]
    pub fn call<A: AsRef<Array>>(&self, args: &[A]) -> Result<(Vec<Array>, Vec<Array>)> {
        let input = VectorArray::from_arrays(args);
        let mut values = VectorArray::empty();
        let mut grads = VectorArray::empty();
        closure_status(|| {
            super::transforming(|| unsafe {
                sys::mlx_closure_value_and_grad_apply(
                    &mut values.0,
                    &mut grads.0,
                    self.raw,
                    input.0,
                )
            })
        })?;
        Ok((values.to_vec()?, grads.to_vec()?))
    }
}

impl Clone for ValueAndGrad<'_> {
    /// Shares the same function.
    fn clone(&self) -> Self {
        // SAFETY: an empty handle, then a copy of a live one.
        let mut raw = unsafe { sys::mlx_closure_value_and_grad_new() };
        unsafe { sys::mlx_closure_value_and_grad_set(&mut raw, self.raw) };
        ValueAndGrad {
            raw,
            _marker: PhantomData,
        }
    }
}

impl Drop for ValueAndGrad<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_value_and_grad_free(self.raw) };
    }
}

impl std::fmt::Debug for ValueAndGrad<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValueAndGrad")
    }
}

// ---------------------------------------------------------------------------------------
// Keyword-argument closures (exporting functions)
// ---------------------------------------------------------------------------------------

/// A function of positional and keyword arrays, for
/// [`export_function_kwargs`](crate::export::export_function_kwargs).
pub struct KwargsClosure<'a> {
    raw: sys::mlx_closure_kwargs,
    _marker: PhantomData<(&'a (), *const ())>,
}

impl<'a> KwargsClosure<'a> {
    /// Wraps a Rust function of positional arrays and named arrays.
    pub fn new<F>(f: F) -> Result<KwargsClosure<'a>>
    where
        F: FnMut(&[Array], &HashMap<String, Array>) -> Result<Vec<Array>> + 'a,
    {
        install_error_handler();
        let payload = Payload::new(f).into_raw();
        // SAFETY: as in `Closure::new`.
        let raw = unsafe {
            sys::mlx_closure_kwargs_new_func_payload(
                Some(call_kwargs::<F>),
                payload,
                Some(drop_payload::<F>),
            )
        };
        if raw.ctx.is_null() {
            return Err(mlx_error(Location::caller()));
        }
        Ok(KwargsClosure {
            raw,
            _marker: PhantomData,
        })
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_closure_kwargs {
        self.raw
    }

    /// Calls the function.
    #[track_caller]
    pub fn call<A: AsRef<Array>>(
        &self,
        args: &[A],
        kwargs: &HashMap<String, Array>,
    ) -> Result<Vec<Array>> {
        let input = VectorArray::from_arrays(args);
        let map = ArrayMap::from_map(kwargs)?;
        let mut out = VectorArray::empty();
        closure_status(|| unsafe {
            sys::mlx_closure_kwargs_apply(&mut out.0, self.raw, input.0, map.0)
        })?;
        out.to_vec()
    }
}

impl Clone for KwargsClosure<'_> {
    /// Shares the same function.
    fn clone(&self) -> Self {
        // SAFETY: an empty handle, then a copy of a live one into it.
        let mut raw = unsafe { sys::mlx_closure_kwargs_new() };
        unsafe { sys::mlx_closure_kwargs_set(&mut raw, self.raw) };
        KwargsClosure {
            raw,
            _marker: PhantomData,
        }
    }
}

impl Drop for KwargsClosure<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_kwargs_free(self.raw) };
    }
}

impl std::fmt::Debug for KwargsClosure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KwargsClosure")
    }
}

unsafe extern "C" fn call_kwargs<F>(
    res: *mut sys::mlx_vector_array,
    input: sys::mlx_vector_array,
    kwargs: sys::mlx_map_string_to_array,
    payload: *mut c_void,
) -> c_int
where
    F: FnMut(&[Array], &HashMap<String, Array>) -> Result<Vec<Array>>,
{
    guarded(|| {
        // SAFETY: MLX passes the payload it was given with this trampoline.
        let payload = unsafe { payload_ref::<F>(payload) };
        let args = borrowed_arrays(input)?;
        let kw = ArrayMap::read(kwargs)?;
        let out = payload.with(|f| f(&args, &kw))?;
        // SAFETY: `res` is MLX's live out-vector.
        unsafe { write_arrays(res, &out) }
    })
}
