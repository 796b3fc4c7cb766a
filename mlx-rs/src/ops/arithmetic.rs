//! Element-wise arithmetic and `matmul`.

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
