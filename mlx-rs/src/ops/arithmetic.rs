//! Element-wise arithmetic and matrix products.

use crate::raw::stream_op;
use crate::{Array, Result};

binary_ops! {
    /// `a + b`, element-wise with broadcasting.
    add => mlx_add;
    /// `a - b`, element-wise with broadcasting.
    subtract => mlx_subtract;
    /// `a * b`, element-wise with broadcasting.
    multiply => mlx_multiply;
    /// `a / b`, element-wise with broadcasting (true division).
    divide => mlx_divide;
    /// Matrix product with NumPy's broadcasting rules for batch dimensions.
    matmul => mlx_matmul;
}

unary_ops! {
    /// `-a`, element-wise.
    negative => mlx_negative;
    /// `a * a`, element-wise.
    square => mlx_square;
    /// Square root, element-wise.
    sqrt => mlx_sqrt;
}

/// Sum of all elements (a 0-d array).
#[track_caller]
pub fn sum_all(a: &Array, keepdims: bool) -> Result<Array> {
    stream_op(|res, s| unsafe { mlx_sys::mlx_sum(res, a.as_raw(), keepdims, s) })
}

impl Array {
    /// Sum of all elements (a 0-d array).
    #[track_caller]
    pub fn sum_all(&self) -> Result<Array> {
        sum_all(self, false)
    }
}
