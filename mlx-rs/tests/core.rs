//! Arrays, dtypes, devices and streams: construction, reading back, printing, errors.

use mlx_rs::{bf16, f16, ops, Array, Complex32, Device, DeviceType, Dtype, Error, Stream};

#[test]
fn every_dtype_round_trips_through_from_slice_and_to_vec() {
    fn round_trip<T: mlx_rs::Element + PartialEq>(values: &[T]) {
        let a = Array::from_slice(values, &[values.len() as i32]).unwrap();
        assert_eq!(a.dtype(), T::DTYPE);
        assert_eq!(a.to_vec::<T>().unwrap(), values);
        assert_eq!(a.nbytes(), values.len() * T::DTYPE.size());
    }
    round_trip(&[true, false, true]);
    round_trip(&[0u8, 7, 255]);
    round_trip(&[1u16, 65535]);
    round_trip(&[3u32, 4_000_000_000]);
    round_trip(&[5u64, u64::MAX]);
    round_trip(&[-128i8, 127]);
    round_trip(&[-3i16, 300]);
    round_trip(&[-7i32, i32::MAX]);
    round_trip(&[i64::MIN, 9]);
    round_trip(&[f16::from_f32(1.5), f16::from_f32(-0.25)]);
    round_trip(&[1.5f32, -2.25, 1e-30]);
    round_trip(&[std::f64::consts::PI, -1e300]);
    round_trip(&[bf16::from_f32(3.0), bf16::from_f32(-0.5)]);
    round_trip(&[Complex32::new(1.0, -2.0), Complex32::new(0.5, 4.0)]);
}

#[test]
fn dtype_metadata_matches_mlx() {
    let sizes = [1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 2, 8];
    for (d, size) in Dtype::ALL.iter().zip(sizes) {
        assert_eq!(d.size(), size, "{d}");
        assert_eq!(Dtype::from_name(d.name()), Some(*d));
    }
    assert!(Dtype::Bfloat16.is_float() && !Dtype::Complex64.is_float());
    assert!(Dtype::Uint8.is_integer() && !Dtype::Bool.is_integer());
}

#[test]
fn shape_strides_and_sizes() {
    let a = Array::from_slice(&[0f32; 24], &[2, 3, 4]).unwrap();
    assert_eq!(a.shape(), &[2, 3, 4]);
    assert_eq!(a.ndim(), 3);
    assert_eq!(a.size(), 24);
    assert_eq!(a.itemsize(), 4);
    assert_eq!(a.dim(-1), 4);
    assert_eq!(a.dim(1), 3);
    a.eval().unwrap();
    assert_eq!(a.strides(), &[12, 4, 1]);
    let s = Array::scalar(2.5f32);
    assert_eq!(s.shape(), &[] as &[i32]);
    assert_eq!(s.item::<f32>().unwrap(), 2.5);
}

#[test]
fn clone_shares_and_drop_frees() {
    let a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    let b = a.clone();
    drop(a);
    assert_eq!(b.to_vec::<i32>().unwrap(), vec![1, 2, 3]);
}

#[test]
fn reading_values_checks_the_dtype() {
    let a = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    match a.to_vec::<i32>() {
        Err(Error::DtypeMismatch { expected, found }) => {
            assert_eq!((expected, found), (Dtype::Int32, Dtype::Float32))
        }
        other => panic!("expected a dtype mismatch, got {other:?}"),
    }
    assert!(a.item::<f32>().is_err(), "two elements have no single item");
    let as_int = a.astype(Dtype::Int32).unwrap();
    assert_eq!(as_int.to_vec::<i32>().unwrap(), vec![1, 2]);
}

#[test]
fn borrowing_needs_an_evaluated_dense_array() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = a.add(&a).unwrap();
    let err = b.as_slice::<f32>().unwrap_err().to_string();
    assert!(err.contains("eval"), "{err}");
    b.eval().unwrap();
    assert_eq!(b.as_slice::<f32>().unwrap(), &[2.0, 4.0, 6.0, 8.0]);
    assert!(b.is_available());
    assert!(b.as_slice::<i32>().is_err());
}

#[test]
fn construction_rejects_bad_shapes() {
    let err = Array::from_slice(&[1.0f32, 2.0, 3.0], &[2, 2]).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
    assert!(err.to_string().contains("3 values"), "{err}");
    let err = Array::from_slice(&[1.0f32], &[-1]).unwrap_err();
    assert!(err.to_string().contains("negative"), "{err}");
    let err = Array::from_bytes(&[0u8; 5], &[2], Dtype::Float32).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
    let ok = Array::from_bytes(&1.5f32.to_le_bytes(), &[1], Dtype::Float32).unwrap();
    assert_eq!(ok.to_vec::<f32>().unwrap(), vec![1.5]);
    assert!(Array::scalar(1i32).try_dim(0).is_err());
}

#[test]
fn dim_and_try_dim_count_negative_axes_from_the_end() {
    let a = ops::zeros(&[2, 3, 4], Dtype::Float32).unwrap();
    for (axis, size) in [(0, 2), (1, 3), (2, 4), (-1, 4), (-2, 3), (-3, 2)] {
        assert_eq!(a.dim(axis), size, "dim({axis})");
        assert_eq!(a.try_dim(axis).unwrap(), size, "try_dim({axis})");
    }
    for axis in [3, -4, i32::MAX, i32::MIN] {
        let err = a.try_dim(axis).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("axis {axis} is out of range")),
            "{err}"
        );
    }
}

#[test]
#[should_panic(expected = "axis 3 is out of range for an array of 3 dimensions (shape [2, 3, 4])")]
fn dim_panics_past_the_last_axis() {
    ops::zeros(&[2, 3, 4], Dtype::Float32).unwrap().dim(3);
}

#[test]
#[should_panic(expected = "axis -2 is out of range for an array of 1 dimensions")]
fn dim_panics_before_the_first_axis() {
    Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap().dim(-2);
}

#[test]
#[should_panic(expected = "axis 0 is out of range for an array of 0 dimensions")]
fn dim_panics_on_a_scalar() {
    Array::scalar(1i32).dim(0);
}

#[test]
fn mlx_errors_carry_the_message_and_the_rust_call_site() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let b = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let line = line!() + 1;
    let err = a.add(&b).unwrap_err();
    match &err {
        Error::Mlx { message, location } => {
            assert!(message.contains("broadcast"), "{message}");
            assert_eq!(location.file(), file!());
            assert_eq!(location.line(), line);
        }
        other => panic!("expected an MLX error, got {other:?}"),
    }
    // The failed op left nothing behind: the next error is its own.
    let err2 = a.matmul(&b).unwrap_err().to_string();
    assert!(!err2.contains("broadcast"), "{err2}");
}

#[test]
fn display_prints_like_numpy() {
    let a = Array::from_slice(&[1i32, 2, 3, 4], &[2, 2]).unwrap();
    let text = format!("{a}");
    assert!(text.starts_with("array([[1, 2],"), "{text}");
    assert!(text.contains("dtype=int32"), "{text}");
    assert_eq!(format!("{a:?}"), text);
}

#[test]
fn devices_are_described() {
    let cpu = Device::cpu();
    assert!(cpu.is_available());
    assert_eq!(cpu.kind().unwrap(), DeviceType::Cpu);
    assert_eq!(cpu.index().unwrap(), 0);
    assert!(Device::count(DeviceType::Cpu).unwrap() >= 1);
    assert_eq!(format!("{cpu}"), "Device(cpu, 0)");
    assert_eq!(cpu.clone(), cpu);
    let info = cpu.info().unwrap();
    assert!(!info.is_empty());
    assert!(cpu.has_info(&info[0].0).unwrap());
    assert!(!cpu.has_info("no such key").unwrap());
    assert!(cpu.has_info("bad\0key").is_err());
    assert_eq!(mlx_rs::backend() != "cpu", Device::gpu().is_available());
}

#[test]
fn streams_choose_where_ops_run() {
    let cpu = Stream::cpu();
    assert_eq!(cpu.device().unwrap(), Device::cpu());
    let fresh = Stream::new(&Device::cpu());
    assert_ne!(fresh, cpu);
    let a = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    // The same array feeds ops on two streams with no copy: unified memory.
    let on_fresh = fresh.scope(|| a.square()).unwrap();
    let on_default = mlx_rs::with_stream(&cpu, || a.add(&on_fresh)).unwrap();
    assert_eq!(on_default.to_vec::<f32>().unwrap(), vec![2.0, 6.0]);
    assert_eq!(
        mlx_rs::with_stream(&fresh, mlx_rs::current_stream).unwrap(),
        fresh
    );
    fresh.synchronize().unwrap();
    mlx_rs::synchronize().unwrap();
    assert!(mlx_rs::streams().unwrap().len() >= 2);
}

#[test]
fn scoped_streams_nest_and_unwind() {
    let outer = Stream::new(&Device::cpu());
    let inner = Stream::new(&Device::cpu());
    mlx_rs::with_stream(&outer, || {
        mlx_rs::with_stream(&inner, || {
            assert_eq!(mlx_rs::current_stream().unwrap(), inner)
        });
        assert_eq!(mlx_rs::current_stream().unwrap(), outer);
        // A panic inside a scope pops it too.
        let r = std::panic::catch_unwind(|| mlx_rs::with_stream(&inner, || panic!("boom")));
        assert!(r.is_err());
        assert_eq!(mlx_rs::current_stream().unwrap(), outer);
    });
}

#[test]
fn creation_ops() {
    let z = ops::zeros(&[2, 3], Dtype::Float16).unwrap();
    assert_eq!((z.shape(), z.dtype()), (&[2, 3][..], Dtype::Float16));
    let o = ops::ones(&[4], Dtype::Int32).unwrap();
    assert_eq!(o.to_vec::<i32>().unwrap(), vec![1; 4]);
    let r = ops::arange(0.0, 5.0, 2.0, Dtype::Float32).unwrap();
    assert_eq!(r.to_vec::<f32>().unwrap(), vec![0.0, 2.0, 4.0]);
    let e = ops::eye(2, 3, 1, Dtype::Float32).unwrap();
    assert_eq!(
        e.to_vec::<f32>().unwrap(),
        vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    );
    assert!(ops::zeros(&[-2], Dtype::Float32).is_err());
}

#[test]
fn async_eval_then_wait() {
    let a = Array::from_slice(&[3.0f32], &[1]).unwrap();
    let b = a.sqrt().unwrap().square().unwrap();
    mlx_rs::async_eval(&[&b]).unwrap();
    b.wait().unwrap();
    assert!((b.item::<f32>().unwrap() - 3.0).abs() < 1e-6);
    mlx_rs::eval(&[b.clone(), a.clone()]).unwrap();
}

#[test]
fn the_loaded_mlx_is_the_pinned_version() {
    assert_eq!(mlx_rs::version(), mlx_sys::MLX_VERSION);
}
