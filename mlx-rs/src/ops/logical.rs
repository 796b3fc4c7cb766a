//! Logical ops (on truth values, any dtype) and bitwise ops (integer and `bool` only).

binary_ops! {
    /// `a && b` on truth values (non-zero is true), element-wise; `bool` result.
    logical_and => mlx_logical_and;
    /// `a || b` on truth values (non-zero is true), element-wise; `bool` result.
    logical_or => mlx_logical_or;
    /// `a != b` on truth values (non-zero is true), element-wise; `bool` result.
    logical_xor => mlx_logical_xor;
    /// `a & b`, bitwise, element-wise. Fails for floating or complex inputs.
    bitwise_and => mlx_bitwise_and;
    /// `a | b`, bitwise, element-wise. Fails for floating or complex inputs.
    bitwise_or => mlx_bitwise_or;
    /// `a ^ b`, bitwise, element-wise. Fails for floating or complex inputs.
    bitwise_xor => mlx_bitwise_xor;
    /// `a << b`, element-wise. Fails for floating or complex inputs.
    left_shift => mlx_left_shift;
    /// `a >> b` (arithmetic for signed types), element-wise. Fails for floating or complex
    /// inputs.
    right_shift => mlx_right_shift;
}

unary_ops! {
    /// `!a` on truth values (non-zero is true), element-wise; `bool` result.
    logical_not => mlx_logical_not;
    /// `!a`, bitwise, element-wise. Fails for floating or complex inputs.
    bitwise_invert => mlx_bitwise_invert;
}
