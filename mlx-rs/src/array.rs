//! [`Array`]: MLX's lazy, reference-counted n-dimensional array.

use crate::dtype::{Dtype, Element};
use crate::error::{install_error_handler, Error, Result};
use crate::raw::{self, MlxString};
use mlx_sys as sys;
use std::ffi::c_int;

/// A lazy n-dimensional array in unified memory.
///
/// Ops build a graph; values are computed when the array is evaluated ([`Array::eval`],
/// or implicitly when values are read). `Clone` is cheap: it shares the same data and
/// graph node (reference counted); `Drop` releases it.
///
/// `Array` is `Send` (it may move to another thread) but not `Sync`: one array value is
/// used from one thread at a time (clones may go to other threads). Graphs are handed to
/// MLX one at a time, process-wide, so threads may evaluate graphs that share nodes. A
/// graph built on another thread's CPU streams evaluates anywhere (CPU streams are pooled
/// and registered for every thread); one built on another thread's GPU streams returns an
/// error ("There is no Stream(gpu, 0) in current thread": MLX 0.32's GPU streams belong to
/// the thread that made them), so evaluate GPU work before sending it.
pub struct Array {
    raw: sys::mlx_array,
}

// SAFETY: an mlx array is a reference-counted (atomic) handle to a graph node; moving the
// handle to another thread is sound. It is not Sync: see the type docs.
unsafe impl Send for Array {}

impl Array {
    pub(crate) fn from_raw(raw: sys::mlx_array) -> Array {
        Array { raw }
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_array {
        self.raw
    }

    /// The mlx-c handle of this array, borrowed (still owned and freed by `self`): an
    /// escape hatch for calling `mlx_sys` functions this crate does not wrap.
    pub fn as_raw_handle(&self) -> sys::mlx_array {
        self.raw
    }

    /// Takes ownership of an mlx-c array handle (freed when the `Array` drops).
    ///
    /// # Safety
    /// `raw` must be a live handle made by mlx-c (e.g. filled by an `mlx_sys` op) that
    /// nothing else frees.
    pub unsafe fn from_raw_handle(raw: sys::mlx_array) -> Array {
        Array::from_raw(raw)
    }

    /// Builds an array of `shape` from row-major `data` (copied).
    ///
    /// Fails if `data.len()` is not the product of `shape` or a dimension is negative.
    ///
    /// ```
    /// let a = mlx_rs::Array::from_slice(&[1i32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    /// assert_eq!(a.shape(), &[2, 3]);
    /// ```
    #[track_caller]
    pub fn from_slice<T: Element>(data: &[T], shape: &[i32]) -> Result<Array> {
        check_shape_len(data.len(), shape)?;
        install_error_handler();
        raw::check_fits(shape, T::DTYPE, 0)?;
        // SAFETY: `data` holds product(shape) elements of T's dtype; MLX copies them.
        let raw = unsafe {
            sys::mlx_array_new_data(
                data.as_ptr().cast(),
                shape.as_ptr(),
                shape.len() as c_int,
                T::DTYPE.to_raw(),
            )
        };
        Ok(Array::from_raw(raw))
    }

    /// A 0-dimensional array holding `value`.
    pub fn scalar<T: Element>(value: T) -> Array {
        // A one-element slice always matches the empty shape.
        Array::from_slice(&[value], &[]).expect("a scalar always fits shape []")
    }

    /// Builds an array from raw little-endian bytes of `dtype` (copied). Useful for
    /// dtypes read from files.
    #[track_caller]
    pub fn from_bytes(bytes: &[u8], shape: &[i32], dtype: Dtype) -> Result<Array> {
        let count = check_shape_len(bytes.len() / dtype.size().max(1), shape)?;
        if bytes.len() != count * dtype.size() {
            return Err(Error::Shape(format!(
                "{} bytes do not hold {count} elements of {dtype}",
                bytes.len()
            )));
        }
        install_error_handler();
        raw::check_fits(shape, dtype, 0)?;
        // SAFETY: `bytes` holds exactly product(shape) elements of `dtype`; MLX copies them.
        let raw = unsafe {
            sys::mlx_array_new_data(
                bytes.as_ptr().cast(),
                shape.as_ptr(),
                shape.len() as c_int,
                dtype.to_raw(),
            )
        };
        Ok(Array::from_raw(raw))
    }

    /// The dimensions.
    pub fn shape(&self) -> &[i32] {
        let n = self.ndim();
        if n == 0 {
            return &[];
        }
        // SAFETY: mlx returns `ndim` ints owned by the array, alive as long as `self` and
        // never changed through a shared reference.
        unsafe { std::slice::from_raw_parts(sys::mlx_array_shape(self.raw), n) }
    }

    /// Size of dimension `axis` (negative counts from the end), for an axis known to be
    /// in range: panics otherwise, as slice indexing does.
    ///
    /// Use it where the shape was checked (or made) just before, as in model code. For an
    /// axis that comes from user input, or an array whose rank was not checked, use
    /// [`Array::try_dim`], which returns an error instead.
    ///
    /// ```
    /// let a = mlx_rs::ops::zeros(&[2, 3, 4], mlx_rs::Dtype::Float32)?;
    /// assert_eq!(a.dim(1), 3);
    /// assert_eq!(a.dim(-1), 4);
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    ///
    /// # Panics
    /// If `axis` is not in `-ndim..ndim`.
    #[track_caller]
    pub fn dim(&self, axis: i32) -> i32 {
        match self.axis_index(axis) {
            // SAFETY: `a` is a valid axis of this live array.
            Some(a) => unsafe { sys::mlx_array_dim(self.raw, a) },
            None => panic!(
                "axis {axis} is out of range for an array of {} dimensions (shape {:?})",
                self.ndim(),
                self.shape()
            ),
        }
    }

    /// Size of dimension `axis` (negative counts from the end), or an
    /// [`Error::InvalidArgument`] when `axis` is out of range.
    ///
    /// Use it for axes that come from user input or arrays whose rank was not checked;
    /// where the axis is known to be in range, [`Array::dim`] reads better.
    ///
    /// ```
    /// let a = mlx_rs::ops::zeros(&[2, 3], mlx_rs::Dtype::Float32)?;
    /// assert_eq!(a.try_dim(-1)?, 3);
    /// assert!(a.try_dim(2).is_err());
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    #[track_caller]
    pub fn try_dim(&self, axis: i32) -> Result<i32> {
        match self.axis_index(axis) {
            // SAFETY: `a` is a valid axis of this live array.
            Some(a) => Ok(unsafe { sys::mlx_array_dim(self.raw, a) }),
            None => Err(Error::InvalidArgument(format!(
                "axis {axis} is out of range for an array of {} dimensions",
                self.ndim()
            ))),
        }
    }

    /// `axis` as an index into the shape (negative counts from the end), if in range.
    fn axis_index(&self, axis: i32) -> Option<i32> {
        let n = self.ndim() as i32;
        let a = if axis < 0 { axis + n } else { axis };
        (0..n).contains(&a).then_some(a)
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        // SAFETY: reads a live handle.
        unsafe { sys::mlx_array_ndim(self.raw) }
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        // SAFETY: reads a live handle.
        unsafe { sys::mlx_array_size(self.raw) }
    }

    /// Bytes the elements take (`size() * itemsize()`).
    pub fn nbytes(&self) -> usize {
        // SAFETY: reads a live handle.
        unsafe { sys::mlx_array_nbytes(self.raw) }
    }

    /// Bytes one element takes.
    pub fn itemsize(&self) -> usize {
        // SAFETY: reads a live handle.
        unsafe { sys::mlx_array_itemsize(self.raw) }
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        // SAFETY: reads a live handle.
        Dtype::from_raw(unsafe { sys::mlx_array_dtype(self.raw) })
    }

    /// Strides in elements. Meaningful once the array is evaluated (before that MLX
    /// reports the row-major strides of its shape).
    pub fn strides(&self) -> &[usize] {
        let n = self.ndim();
        if n == 0 {
            return &[];
        }
        // SAFETY: as for `shape`.
        unsafe { std::slice::from_raw_parts(sys::mlx_array_strides(self.raw), n) }
    }

    /// Computes the array (and what it depends on) now, blocking until done.
    #[track_caller]
    pub fn eval(&self) -> Result<()> {
        raw::eval_status(|| {
            crate::stream::dispatch_then(std::slice::from_ref(self), || unsafe {
                sys::mlx_array_eval(self.raw)
            })
        })
    }

    /// Whether the values are computed and readable without waiting.
    pub fn is_available(&self) -> bool {
        let mut res = false;
        // SAFETY: reads a live handle.
        unsafe { sys::_mlx_array_is_available(&mut res, self.raw) == 0 && res }
    }

    /// Blocks until a scheduled evaluation (see [`async_eval`]) of this array has finished.
    #[track_caller]
    pub fn wait(&self) -> Result<()> {
        raw::eval_status(|| unsafe { sys::_mlx_array_wait(self.raw) })
    }

    /// Whether the evaluated data is dense and row-major (C order).
    pub fn is_row_contiguous(&self) -> bool {
        let mut res = false;
        // SAFETY: reads a live handle.
        unsafe { sys::_mlx_array_is_row_contiguous(&mut res, self.raw) == 0 && res }
    }

    /// Whether the evaluated data is dense and column-major (Fortran order).
    pub fn is_col_contiguous(&self) -> bool {
        let mut res = false;
        // SAFETY: reads a live handle.
        unsafe { sys::_mlx_array_is_col_contiguous(&mut res, self.raw) == 0 && res }
    }

    /// Whether the evaluated data is dense in some order (possibly permuted axes).
    pub fn is_contiguous(&self) -> bool {
        let mut res = false;
        // SAFETY: reads a live handle.
        unsafe { sys::_mlx_array_is_contiguous(&mut res, self.raw) == 0 && res }
    }

    /// The single value of a one-element array, as `T`.
    ///
    /// Evaluates the array. Fails if `T` is not the array's dtype (no silent casts: use
    /// [`Array::astype`] first) or the array does not hold exactly one element.
    #[track_caller]
    pub fn item<T: Element>(&self) -> Result<T> {
        if self.size() != 1 {
            return Err(Error::Shape(format!(
                "item() needs exactly one element, the array has shape {:?}",
                self.shape()
            )));
        }
        Ok(self.to_vec::<T>()?[0])
    }

    /// All values in row-major order, as `T`. Evaluates the array (a strided view is
    /// copied densely on the CPU stream).
    ///
    /// Fails if `T` is not the array's dtype.
    #[track_caller]
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.check_dtype::<T>()?;
        self.eval()?;
        if self.is_row_contiguous() {
            return Ok(self.as_slice_unchecked::<T>().to_vec());
        }
        // The copy is read by the CPU; the CPU stream also takes every dtype (float64).
        let dense = crate::stream::on_cpu(|| crate::ops::contiguous(self, false))?;
        dense.eval()?;
        Ok(dense.as_slice_unchecked::<T>().to_vec())
    }

    /// Borrows the evaluated, row-major data without copying.
    ///
    /// Fails if `T` is not the dtype, if the array is not evaluated yet (call
    /// [`Array::eval`]), or if its data is not dense row-major (e.g. a transposed view:
    /// use [`Array::to_vec`], which copies).
    #[track_caller]
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.check_dtype::<T>()?;
        if !self.is_available() {
            return Err(Error::InvalidArgument(
                "the array is not evaluated yet: call eval() before as_slice()".into(),
            ));
        }
        if !self.is_row_contiguous() {
            return Err(Error::InvalidArgument(
                "the array's data is not row-contiguous: use to_vec() to get a dense copy".into(),
            ));
        }
        Ok(self.as_slice_unchecked())
    }

    fn as_slice_unchecked<T: Element>(&self) -> &[T] {
        let n = self.size();
        if n == 0 {
            return &[];
        }
        // SAFETY: the caller checked dtype == T, that the array is evaluated and dense
        // row-major, so the buffer holds `n` valid T from this pointer on. The data is
        // immutable while `self` is borrowed.
        unsafe {
            let p = sys::mlx_array_data_uint8(self.raw) as *const T;
            std::slice::from_raw_parts(p, n)
        }
    }

    #[track_caller]
    fn check_dtype<T: Element>(&self) -> Result<()> {
        if self.dtype() != T::DTYPE {
            return Err(Error::DtypeMismatch {
                expected: T::DTYPE,
                found: self.dtype(),
            });
        }
        Ok(())
    }

    /// The same values converted to `dtype` (lazy).
    #[track_caller]
    pub fn astype(&self, dtype: Dtype) -> Result<Array> {
        crate::ops::astype(self, dtype)
    }
}

/// Checks that `len` elements fill `shape`; returns the element count.
fn check_shape_len(len: usize, shape: &[i32]) -> Result<usize> {
    let mut count: usize = 1;
    for &d in shape {
        if d < 0 {
            return Err(Error::Shape(format!(
                "negative dimension {d} in shape {shape:?}"
            )));
        }
        count = count
            .checked_mul(d as usize)
            .ok_or_else(|| Error::Shape(format!("shape {shape:?} has too many elements")))?;
    }
    if count != len {
        return Err(Error::Shape(format!(
            "{len} values cannot fill shape {shape:?} ({count} elements)"
        )));
    }
    Ok(count)
}

impl Clone for Array {
    /// Shares the same data and graph node.
    fn clone(&self) -> Array {
        // SAFETY: mlx_array_set copies the handle (a shared_ptr copy) into a fresh one;
        // it cannot fail for a live source.
        let mut raw = unsafe { sys::mlx_array_new() };
        unsafe { sys::mlx_array_set(&mut raw, self.raw) };
        Array::from_raw(raw)
    }
}

impl Drop for Array {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_array_free(self.raw) };
    }
}

impl AsRef<Array> for Array {
    fn as_ref(&self) -> &Array {
        self
    }
}

/// Prints like NumPy (`array([1, 2, 3], dtype=int32)`). Evaluates the array; if that
/// fails, prints the error instead of the values.
impl std::fmt::Display for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        install_error_handler();
        let mut s = MlxString::new();
        // SAFETY: writes into an owned string handle.
        // Printing evaluates: a deep graph needs the deep stack.
        let code = crate::graph_stack::run(|| {
            crate::stream::dispatch_then(std::slice::from_ref(self), || unsafe {
                sys::mlx_array_tostring(&mut s.0, self.raw)
            })
        });
        if code == 0 {
            f.write_str(&s.to_string_lossy())
        } else {
            let msg = crate::error::take_message().unwrap_or_default();
            write!(
                f,
                "<array of shape {:?} and dtype {}: {msg}>",
                self.shape(),
                self.dtype()
            )
        }
    }
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Evaluates several arrays together (sharing their common work).
#[track_caller]
pub fn eval<A: AsRef<Array>>(arrays: &[A]) -> Result<()> {
    // One array (the common case) needs no vector: MLX's array eval is the same call.
    if let [a] = arrays {
        return a.as_ref().eval();
    }
    let v = raw::VectorArray::from_arrays(arrays);
    raw::eval_status(|| crate::stream::dispatch_then(arrays, || unsafe { sys::mlx_eval(v.0) }))
}

/// Starts evaluating arrays in the background and returns at once; reading their values
/// (or [`eval`]) waits for the result.
#[track_caller]
pub fn async_eval<A: AsRef<Array>>(arrays: &[A]) -> Result<()> {
    let v = raw::VectorArray::from_arrays(arrays);
    raw::eval_status(|| crate::stream::dispatch(|| unsafe { sys::mlx_async_eval(v.0) }))
}

macro_rules! from_scalar {
    ($($t:ty),*) => {$(
        impl From<$t> for Array {
            fn from(v: $t) -> Array {
                Array::scalar(v)
            }
        }
    )*};
}
from_scalar!(
    bool,
    u8,
    u16,
    u32,
    u64,
    i8,
    i16,
    i32,
    i64,
    f32,
    f64,
    half::f16,
    half::bf16,
    num_complex::Complex32
);
