//! `std::ops` operators on arrays and scalars: values, Python MLX's weak scalar typing,
//! the documented panics, and the fallible `*_scalar` forms.

use mlx_rs::{bf16, f16, Array, Dtype, Error};

fn f32s(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn arr(v: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

#[test]
fn array_operators_in_every_ownership_mix() {
    let a = arr(&[1.0, 2.0, 3.0], &[3, 1]);
    let b = arr(&[10.0, 20.0], &[1, 2]);
    let sum = &a + &b;
    assert_eq!(sum.shape(), &[3, 2]);
    assert_eq!(f32s(&sum), vec![11.0, 21.0, 12.0, 22.0, 13.0, 23.0]);
    assert_eq!(f32s(&(&b - &a)), vec![9.0, 19.0, 8.0, 18.0, 7.0, 17.0]);
    assert_eq!(
        f32s(&(a.clone() * &b)),
        vec![10.0, 20.0, 20.0, 40.0, 30.0, 60.0]
    );
    assert_eq!(
        f32s(&(&b / a.clone())),
        vec![10.0, 20.0, 5.0, 10.0, 10.0 / 3.0, 20.0 / 3.0]
    );
    assert_eq!(
        f32s(&(b.clone() % a.clone())),
        vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0]
    );
    assert_eq!(f32s(&-&a), vec![-1.0, -2.0, -3.0]);
    assert_eq!(f32s(&-a.clone()), vec![-1.0, -2.0, -3.0]);
    // Operands used by reference are still usable afterwards.
    assert_eq!(f32s(&a), vec![1.0, 2.0, 3.0]);
}

#[test]
fn scalar_operators_on_both_sides() {
    let a = arr(&[1.0, 2.0, 4.0], &[3]);
    assert_eq!(f32s(&(&a + 1.0)), vec![2.0, 3.0, 5.0]);
    assert_eq!(f32s(&(2.0 * &a)), vec![2.0, 4.0, 8.0]);
    assert_eq!(f32s(&(1.0f32 - &a)), vec![0.0, -1.0, -3.0]);
    assert_eq!(f32s(&(&a - 1i32)), vec![0.0, 1.0, 3.0]);
    assert_eq!(f32s(&(8i64 / a.clone())), vec![8.0, 4.0, 2.0]);
    assert_eq!(f32s(&(a.clone() / 2.0f64)), vec![0.5, 1.0, 2.0]);
    assert_eq!(f32s(&(&a % 1.5)), vec![1.0, 0.5, 1.0]);
    assert_eq!(f32s(&(-5.0 % &a)), vec![0.0, 1.0, 3.0]);
    // Python's `%`: the result takes the divisor's sign.
    let i = Array::from_slice(&[7i32, -7], &[2]).unwrap();
    assert_eq!((&i % 3).to_vec::<i32>().unwrap(), vec![1, 2]);
    assert_eq!((&i % -3).to_vec::<i32>().unwrap(), vec![-2, -1]);
}

#[test]
fn float_scalars_keep_floating_array_dtypes() {
    let bf = arr(&[1.0, 2.0], &[2]).astype(Dtype::Bfloat16).unwrap();
    let r = &bf + 1.0;
    assert_eq!(r.dtype(), Dtype::Bfloat16);
    assert_eq!(
        r.to_vec::<bf16>().unwrap(),
        vec![bf16::from_f32(2.0), bf16::from_f32(3.0)]
    );
    assert_eq!((2.0f64 * &bf).dtype(), Dtype::Bfloat16);
    assert_eq!((&bf - 3i64).dtype(), Dtype::Bfloat16);
    let h = arr(&[1.0], &[1]).astype(Dtype::Float16).unwrap();
    assert_eq!(
        (&h / 4.0f32).to_vec::<f16>().unwrap(),
        vec![f16::from_f32(0.25)]
    );
    assert_eq!((&h * 2i32).dtype(), Dtype::Float16);
    let c = Array::from_slice(&[mlx_rs::Complex32::new(1.0, 2.0)], &[1]).unwrap();
    assert_eq!((&c + 1.0).dtype(), Dtype::Complex64);
    assert_eq!(
        (&c + 1.0).to_vec::<mlx_rs::Complex32>().unwrap(),
        vec![mlx_rs::Complex32::new(2.0, 2.0)]
    );
}

#[test]
fn float_scalars_make_integer_and_bool_arrays_float32() {
    let i = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    let r = &i + 1.5;
    assert_eq!(r.dtype(), Dtype::Float32);
    assert_eq!(f32s(&r), vec![2.5, 3.5]);
    let i8s = Array::from_slice(&[3i8], &[1]).unwrap();
    assert_eq!((0.5f32 * &i8s).dtype(), Dtype::Float32);
    let b = Array::from_slice(&[true, false], &[2]).unwrap();
    assert_eq!(f32s(&(&b + 0.5)), vec![1.5, 0.5]);
}

#[test]
fn integer_scalars_keep_integer_array_dtypes() {
    let i8s = Array::from_slice(&[100i8, -3], &[2]).unwrap();
    let r = &i8s + 1;
    assert_eq!(r.dtype(), Dtype::Int8);
    assert_eq!(r.to_vec::<i8>().unwrap(), vec![101, -2]);
    let u = Array::from_slice(&[5u32], &[1]).unwrap();
    assert_eq!((&u * 3i64).to_vec::<u32>().unwrap(), vec![15]);
    let l = Array::from_slice(&[1i64 << 40], &[1]).unwrap();
    assert_eq!(
        (&l + (1i64 << 40)).to_vec::<i64>().unwrap(),
        vec![1i64 << 41]
    );
    let b = Array::from_slice(&[true, false], &[2]).unwrap();
    let r = &b + 2;
    assert_eq!(r.dtype(), Dtype::Int32);
    assert_eq!(r.to_vec::<i32>().unwrap(), vec![3, 2]);
    // True division of integers gives float32.
    let i = Array::from_slice(&[1i32, 4], &[2]).unwrap();
    assert_eq!(f32s(&(&i / 2)), vec![0.5, 2.0]);
}

#[test]
fn fallible_scalar_methods() {
    let a = arr(&[1.0, 2.0], &[2]);
    assert_eq!(f32s(&a.add_scalar(1.0).unwrap()), vec![2.0, 3.0]);
    assert_eq!(f32s(&a.subtract_scalar(1).unwrap()), vec![0.0, 1.0]);
    assert_eq!(f32s(&a.multiply_scalar(3.0f32).unwrap()), vec![3.0, 6.0]);
    assert_eq!(f32s(&a.divide_scalar(4i64).unwrap()), vec![0.25, 0.5]);
    assert_eq!(f32s(&a.remainder_scalar(1.5).unwrap()), vec![1.0, 0.5]);
    let u8s = Array::from_slice(&[1u8], &[1]).unwrap();
    match u8s.add_scalar(300) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("300") && m.contains("uint8"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(u8s.add_scalar(-1).is_err());
    assert!(Array::from_slice(&[true], &[1])
        .unwrap()
        .add_scalar(1i64 << 40)
        .is_err());
    assert_eq!(
        u8s.add_scalar(254).unwrap().to_vec::<u8>().unwrap(),
        vec![255]
    );
}

#[test]
fn fallible_array_methods_return_errors_instead_of_panicking() {
    let a = arr(&[1.0; 6], &[2, 3]);
    let b = arr(&[1.0; 4], &[4]);
    match a.add(&b) {
        Err(Error::Mlx { message, .. }) => assert!(message.contains("cannot be broadcast")),
        other => panic!("expected an MLX error, got {other:?}"),
    }
    assert!(mlx_rs::ops::remainder(&a, &b).is_err());
}

#[test]
#[should_panic(expected = "[broadcast_shapes] Shapes (2,3) and (4) cannot be broadcast.")]
fn add_shape_mismatch_panics_with_mlx_message() {
    let a = arr(&[1.0; 6], &[2, 3]);
    let b = arr(&[1.0; 4], &[4]);
    let _ = &a + &b;
}

#[test]
#[should_panic(expected = "cannot be broadcast")]
fn owned_operands_panic_too() {
    let _ = arr(&[1.0; 6], &[2, 3]) * arr(&[1.0; 4], &[4]);
}

#[test]
#[should_panic(expected = "would result in overflow")]
fn integer_scalar_overflow_panics() {
    let u8s = Array::from_slice(&[1u8], &[1]).unwrap();
    let _ = 300 - &u8s;
}

#[test]
fn panic_message_names_the_callers_line() {
    let a = arr(&[1.0; 6], &[2, 3]);
    let b = arr(&[1.0; 4], &[4]);
    let line = line!() + 1;
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| &a / &b)).unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(msg.contains(&format!("operators.rs:{line}:")), "{msg}");
    // The thread's MLX state is intact after the panic.
    assert_eq!(f32s(&(&a + 1.0)), vec![2.0; 6]);
}
