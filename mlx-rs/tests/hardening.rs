//! Inputs that used to take the process down (Python MLX still crashes on all of them):
//! out-of-range values inside index arrays, huge allocations, a memory limit smaller than
//! the work, and `Stream::gpu()` as the first MLX call of a CPU-only build. Each must give
//! a defined result or a clear `Err`, and the process must survive.

mod common;

use mlx_rs::transforms::{compile, grad, vmap};
use mlx_rs::{memory, ops, s, Array, Device, Dtype, Error, Stream};
use std::sync::Mutex;

/// Serialises the tests that change the process-wide memory limit (the others only need
/// it not to be tiny).
static LIMIT: Mutex<()> = Mutex::new(());

fn limit_lock() -> std::sync::MutexGuard<'static, ()> {
    LIMIT.lock().unwrap_or_else(|p| p.into_inner())
}

fn i32s(v: &[i32], shape: &[i32]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

fn f32s(v: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

/// The reference read policy: negative counts from the end, then clamp into the axis.
fn clamp_ref(i: i64, n: i64) -> i64 {
    let i = i.clamp(-n, n - 1);
    if i < 0 {
        i + n
    } else {
        i
    }
}

const WILD: [i32; 8] = [0, 3, -1, -10, 10, 1 << 30, -(1 << 30), i32::MIN];

// ---- reads clamp -------------------------------------------------------------------

#[test]
fn take_clamps_out_of_range_indices() {
    let _l = limit_lock();
    let a = i32s(&(0..10).map(|v| v * 10).collect::<Vec<_>>(), &[10]);
    let idx = i32s(&WILD, &[8]);
    let got = ops::take(&a, &idx).unwrap().to_vec::<i32>().unwrap();
    let want: Vec<i32> = WILD
        .iter()
        .map(|&i| 10 * clamp_ref(i as i64, 10) as i32)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn every_index_dtype_is_bounded() {
    let _l = limit_lock();
    let a = i32s(&(0..300).collect::<Vec<_>>(), &[300]);
    let cases: Vec<(Array, Vec<i32>)> = vec![
        (
            Array::from_slice(&[-1i8, 127, -128], &[3]).unwrap(),
            vec![299, 127, 172],
        ),
        (Array::from_slice(&[255u8, 0], &[2]).unwrap(), vec![255, 0]),
        (
            Array::from_slice(&[-1i16, 30000], &[2]).unwrap(),
            vec![299, 299],
        ),
        (Array::from_slice(&[65535u16], &[1]).unwrap(), vec![299]),
        (
            Array::from_slice(&[u32::MAX, 5], &[2]).unwrap(),
            vec![299, 5],
        ),
        (
            Array::from_slice(&[i64::MIN, i64::MAX, -2], &[3]).unwrap(),
            vec![0, 299, 298],
        ),
        (Array::from_slice(&[u64::MAX], &[1]).unwrap(), vec![299]),
    ];
    for (idx, want) in cases {
        let dtype = idx.dtype();
        let got = ops::take_axis(&a, &idx, 0)
            .unwrap()
            .to_vec::<i32>()
            .unwrap();
        assert_eq!(got, want, "{dtype}");
    }
}

#[test]
fn take_along_axis_gather_and_index_clamp() {
    let _l = limit_lock();
    let a = i32s(&(0..12).collect::<Vec<_>>(), &[3, 4]);
    let idx = i32s(&[5, -1, -7, 2, 0, 100], &[3, 2]);
    let along = ops::take_along_axis(&a, &idx, 1).unwrap();
    assert_eq!(along.to_vec::<i32>().unwrap(), vec![3, 3, 4, 6, 8, 11]);

    // a[[7, -5], :] clamps the rows.
    let rows = i32s(&[7, -5], &[2]);
    let picked = a.index(&s![&rows]).unwrap();
    assert_eq!(
        picked.to_vec::<i32>().unwrap(),
        vec![8, 9, 10, 11, 0, 1, 2, 3]
    );

    // A gather of 2-wide windows: starts clamp so the window stays inside.
    let starts = i32s(&[3, -1, 9], &[3]);
    let g = ops::gather(&a, &[&starts], &[1], &[1, 2]).unwrap();
    assert_eq!(g.shape(), &[3, 1, 2]);
    assert_eq!(g.to_vec::<i32>().unwrap(), vec![2, 3, 2, 3, 2, 3]);
}

#[test]
fn dynamic_slices_stay_inside() {
    let _l = limit_lock();
    let a = i32s(&(0..10).collect::<Vec<_>>(), &[10]);
    for (start, want) in [
        (2, vec![2, 3, 4]),
        (8, vec![7, 8, 9]),
        (-2, vec![7, 8, 9]),
        (-9, vec![1, 2, 3]),
        (100_000, vec![7, 8, 9]),
        (-100_000, vec![0, 1, 2]),
    ] {
        let got = ops::slice_dynamic(&a, &i32s(&[start], &[1]), &[0], &[3]).unwrap();
        assert_eq!(got.to_vec::<i32>().unwrap(), want, "start {start}");
        let up =
            ops::slice_update_dynamic(&a, &i32s(&[-1, -1, -1], &[3]), &i32s(&[start], &[1]), &[0])
                .unwrap()
                .to_vec::<i32>()
                .unwrap();
        let mut expect: Vec<i32> = (0..10).collect();
        for &v in &want {
            expect[v as usize] = -1;
        }
        assert_eq!(up, expect, "update at start {start}");
    }
    // Two axes, one start array.
    let b = i32s(&(0..12).collect::<Vec<_>>(), &[3, 4]);
    let got = ops::slice_dynamic(&b, &i32s(&[5, -1], &[2]), &[0, 1], &[2, 2]).unwrap();
    assert_eq!(got.to_vec::<i32>().unwrap(), vec![6, 7, 10, 11]);
}

// ---- writes drop --------------------------------------------------------------------

#[test]
fn scatter_and_index_put_drop_out_of_range_updates() {
    let _l = limit_lock();
    let a = i32s(&[0; 6], &[6]);
    let idx = i32s(&[1, 6, -1, -7, 1 << 30], &[5]);
    let up = i32s(&[1, 2, 3, 4, 5], &[5, 1]);
    let set = ops::scatter(&a, &[&idx], &up, &[0]).unwrap();
    assert_eq!(set.to_vec::<i32>().unwrap(), vec![0, 1, 0, 0, 0, 3]);
    let add = ops::scatter_add(&a, &[&idx], &up, &[0]).unwrap();
    assert_eq!(add.to_vec::<i32>().unwrap(), vec![0, 1, 0, 0, 0, 3]);
    let ones = i32s(&[1; 6], &[6]);
    let prod = ops::scatter_prod(&ones, &[&idx], &up, &[0]).unwrap();
    assert_eq!(prod.to_vec::<i32>().unwrap(), vec![1, 1, 1, 1, 1, 3]);
    let max = ops::scatter_max(&a, &[&idx], &up, &[0]).unwrap();
    assert_eq!(max.to_vec::<i32>().unwrap(), vec![0, 1, 0, 0, 0, 3]);
    let min =
        ops::scatter_min(&ones, &[&idx], &i32s(&[-1, -2, -3, -4, -5], &[5, 1]), &[0]).unwrap();
    assert_eq!(min.to_vec::<i32>().unwrap(), vec![1, -1, 1, 1, 1, -3]);

    let put = a
        .index_put(&s![&idx], &i32s(&[1, 2, 3, 4, 5], &[5]))
        .unwrap();
    assert_eq!(put.to_vec::<i32>().unwrap(), vec![0, 1, 0, 0, 0, 3]);

    let m = i32s(&[0; 6], &[2, 3]);
    let cols = i32s(&[2, 3, -4], &[1, 3]).broadcast_to(&[2, 3]).unwrap();
    let vals = i32s(&[7, 8, 9, 7, 8, 9], &[2, 3]);
    let along = ops::put_along_axis(&m, &cols, &vals, 1).unwrap();
    assert_eq!(along.to_vec::<i32>().unwrap(), vec![0, 0, 7, 0, 0, 7]);
    let along_add = ops::scatter_add_axis(&m, &cols, &vals, 1).unwrap();
    assert_eq!(along_add.to_vec::<i32>().unwrap(), vec![0, 0, 7, 0, 0, 7]);
}

#[test]
fn in_range_indices_are_unchanged() {
    let _l = limit_lock();
    // The bounding ops leave valid programs exactly as MLX computes them.
    let a = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let idx = i32s(&[2, 0, -1, -3], &[4]);
    let t = a.take_axis(&idx, 1).unwrap();
    assert_eq!(
        t.to_vec::<f32>().unwrap(),
        vec![3.0, 1.0, 3.0, 1.0, 6.0, 4.0, 6.0, 4.0]
    );
    let up = ops::scatter_add(
        &a,
        &[&i32s(&[1, -2], &[2])],
        &f32s(&[10.0; 6], &[2, 1, 3]),
        &[0],
    )
    .unwrap();
    assert_eq!(
        up.to_vec::<f32>().unwrap(),
        vec![11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    );
}

#[test]
fn bounding_works_inside_transforms() {
    let _l = limit_lock();
    // compile and vmap trace with placeholder indices, which cannot be evaluated: the
    // bounds are ops, so they trace too.
    let f = |x: &[Array]| Ok(vec![ops::take(&x[0], &x[1])?]);
    let fast = compile(f, false).unwrap();
    let a = f32s(&[1.0, 2.0, 3.0], &[3]);
    let out = fast.call(&[&a, &i32s(&[5, -5, 1], &[3])]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![3.0, 1.0, 2.0]);

    let rows = vmap(f, &[None, Some(0)], &[0]).unwrap();
    let out = rows.call(&[&a, &i32s(&[9, 0, -9, 2], &[2, 2])]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![3.0, 1.0, 1.0, 3.0]);

    // Gradients flow to the clamped positions.
    let g = grad(
        |x: &[Array]| {
            let idx = Array::from_slice(&[7i32, 0], &[2])?;
            Ok(vec![ops::take(&x[0], &idx)?.sum(false)?])
        },
        &[0],
    )
    .unwrap();
    let d = g.call(&[&a]).unwrap();
    assert_eq!(d[0].to_vec::<f32>().unwrap(), vec![1.0, 0.0, 1.0]);
}

#[test]
fn indexing_an_empty_axis_with_values_is_an_error() {
    let _l = limit_lock();
    let empty = Array::from_slice::<f32>(&[], &[0, 3]).unwrap();
    let err = ops::take_axis(&empty, &i32s(&[0], &[1]), 0).unwrap_err();
    assert!(err.to_string().contains("axis of size 0"), "{err}");
    // An empty index is fine; MLX itself refuses update windows larger than the axis.
    let none = Array::from_slice::<i32>(&[], &[0]).unwrap();
    assert_eq!(ops::take_axis(&empty, &none, 0).unwrap().shape(), &[0, 3]);
    let err = ops::scatter(
        &empty,
        &[&i32s(&[0], &[1])],
        &f32s(&[1.0; 3], &[1, 1, 3]),
        &[0],
    )
    .unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
}

// ---- memory -------------------------------------------------------------------------

#[test]
fn a_huge_array_is_an_out_of_memory_error() {
    let _l = limit_lock();
    // 1 TiB: past the memory of any one machine or GPU this runs on (64 GiB, used
    // before, fits an H200's 141 GB).
    let err = ops::zeros(&[1 << 19, 1 << 19], Dtype::Float32).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("[524288, 524288]") && msg.contains("1.0 TiB"),
        "{msg}"
    );
    // What to do: raise MLX's limit, or the process's (a cgroup's, on a GPU machine with
    // more device memory than its memory limit).
    assert!(
        msg.contains("set_memory_limit") || msg.contains("raise that limit"),
        "{msg}"
    );
    // Shapes whose byte count overflows 64 bits, and broadcasts into them.
    assert!(ops::ones(&[i32::MAX, i32::MAX, i32::MAX], Dtype::Float64).is_err());
    let x = f32s(&[1.0; 4], &[4, 1]);
    let y = ops::ones(&[1 << 20, 1 << 18], Dtype::Float32); // 1 TiB
    assert!(y.is_err());
    let wide = Array::scalar(1.0f32).broadcast_to(&[1 << 20, 1 << 20]);
    assert!(wide.is_err(), "a 4 TiB broadcast is refused");
    // The process is fine afterwards.
    assert_eq!(x.sum(false).unwrap().item::<f32>().unwrap(), 4.0);
}

#[test]
fn a_memory_limit_smaller_than_the_work_is_an_error() {
    let _l = limit_lock();
    let old = memory::get_memory_limit().unwrap();
    memory::set_memory_limit(4 << 20).unwrap();
    let result = std::panic::catch_unwind(|| {
        // 8 MiB of data, made from Rust.
        let data = vec![1.0f32; 2 << 20];
        let made = Array::from_slice(&data, &[2 << 20]);
        // An op whose output exceeds the limit.
        let small = ops::ones(&[1 << 18], Dtype::Float32).unwrap(); // 1 MiB
        small.eval().unwrap();
        let big = ops::tile(&small, &[8]);
        drop(small);
        // An image to load (2 MiB: fits the limit now).
        let w = ops::ones(&[2 << 20], Dtype::Uint8).unwrap();
        let bytes = mlx_rs::io::save_safetensors_writer([("w", &w)], [("", ""); 0]);
        (made.map(|_| ()), big.map(|_| ()), bytes)
    });
    memory::set_memory_limit(old).unwrap();
    let (made, big, bytes) = result.unwrap();
    for (what, r) in [("from_slice", made), ("tile", big)] {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::OutOfMemory(_)), "{what}: {err:?}");
        assert!(
            err.to_string().contains("memory limit 4.0 MiB"),
            "{what}: {err}"
        );
    }
    // Loading the 2 MiB image under a 1 MiB limit is refused (before anything is read).
    let bytes = bytes.unwrap();
    memory::set_memory_limit(1 << 20).unwrap();
    let loaded = mlx_rs::io::load_safetensors_reader(bytes);
    memory::set_memory_limit(old).unwrap();
    let err = loaded.unwrap_err();
    assert!(matches!(err, Error::OutOfMemory(_)), "{err:?}");
}

// ---- streams ------------------------------------------------------------------------

/// Runs this test binary again with only `test` and `MLX_RS_CHILD=1` (a fresh process,
/// for behaviour of the very first MLX call); returns its exit status and output.
fn rerun_alone(test: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("MLX_RS_CHILD", "1")
        .output()
        .unwrap()
}

#[test]
fn gpu_stream_as_the_first_call_does_not_exit() {
    if std::env::var_os("MLX_RS_CHILD").is_some() {
        // The child: nothing has touched MLX yet in this process.
        let gpu = Stream::gpu();
        let has_gpu = Device::gpu().is_available();
        assert_eq!(gpu.is_valid(), has_gpu);
        let r = gpu.scope(|| f32s(&[1.0, 2.0], &[2]).square()?.sum(false)?.item::<f32>());
        if has_gpu {
            assert_eq!(r.unwrap(), 5.0);
        } else {
            let err = r.unwrap_err().to_string();
            assert!(err.contains("unusable stream"), "{err}");
            assert!(gpu.index().is_err() && gpu.device().is_err());
            assert!(gpu != gpu.clone(), "an unusable stream equals nothing");
            assert!(format!("{gpu:?}").contains("unusable"));
            // Work on the CPU still runs.
            let cpu = Stream::cpu();
            let y = cpu.scope(|| f32s(&[3.0], &[1]).square()).unwrap();
            assert_eq!(y.item::<f32>().unwrap(), 9.0);
        }
        println!("CHILD-DONE");
        return;
    }
    let out = rerun_alone("gpu_stream_as_the_first_call_does_not_exit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-DONE"),
        "child exited with {:?}: {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gpu_device_first_then_stream_does_not_exit() {
    if std::env::var_os("MLX_RS_CHILD").is_some() {
        let d = Device::gpu();
        let s = Stream::new(&d);
        assert_eq!(s.is_valid(), d.is_available());
        if !d.is_available() {
            assert!(Device::set_default(&d).is_err());
            assert!(s.synchronize().is_err());
        }
        println!("CHILD-DONE");
        return;
    }
    let out = rerun_alone("gpu_device_first_then_stream_does_not_exit");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("CHILD-DONE"),
        "child exited with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- issue 21, part B: BLAS exits, deep graphs, thread churn, process limits ----------
//
// Each case runs in a child process (this binary again, with one test and
// `MLX_RS_CHILD=1`), so that an exit, an abort or a signal fails the test instead of
// ending the runner; the child prints CHILD-DONE when it got to the end.

use common::is_child;

/// [`common::child_ok`], and nothing may have printed the reference BLAS's farewell.
fn child_ok(test: &str, envs: &[(&str, &str)]) -> String {
    let (stdout, stderr) = common::child_ok(test, envs);
    assert!(!stderr.contains("On entry to"), "{stderr}");
    stdout
}

#[test]
fn blas_and_lapack_argument_errors_do_not_exit() {
    if !is_child() {
        child_ok("blas_and_lapack_argument_errors_do_not_exit", &[]);
        return;
    }
    use mlx_rs::linalg;
    use mlx_rs::ops::{ConvGeneralOptions, ConvOptions, ConvTransposeOptions};
    // BLAS and LAPACK are CPU code (MLX's linalg runs on the CPU only, and a GPU has no
    // float64): on a machine with a GPU the child runs these on the CPU too.
    Device::set_default(&Device::cpu()).unwrap();
    if cfg!(target_os = "linux") && mlx_rs::linked_backend() == "cpu" {
        assert!(mlx_rs::blas_errors_are_caught());
    }
    let ones = |s: &[i32]| ops::ones(s, Dtype::Float32).unwrap();
    // Convolutions with no output channels: an empty result, no BLAS call.
    let convs: Vec<(&str, mlx_rs::Result<Array>, &[i32])> = vec![
        (
            "conv1d",
            ops::conv1d(&ones(&[1, 5, 3]), &ones(&[0, 3, 3]), ConvOptions::default()),
            &[1, 3, 0],
        ),
        (
            "conv1d 1x1",
            ops::conv1d(&ones(&[1, 5, 3]), &ones(&[0, 1, 3]), ConvOptions::default()),
            &[1, 5, 0],
        ),
        (
            "conv1d batch 0",
            ops::conv1d(&ones(&[0, 5, 3]), &ones(&[0, 3, 3]), ConvOptions::default()),
            &[0, 3, 0],
        ),
        (
            "conv2d",
            ops::conv2d(
                &ones(&[1, 5, 5, 3]),
                &ones(&[0, 3, 3, 3]),
                ConvOptions::default(),
            ),
            &[1, 3, 3, 0],
        ),
        (
            "conv2d stride 2",
            ops::conv2d(
                &ones(&[1, 9, 9, 3]),
                &ones(&[0, 3, 3, 3]),
                ConvOptions {
                    stride: [2, 2],
                    ..Default::default()
                },
            ),
            &[1, 4, 4, 0],
        ),
        (
            "conv2d groups 2",
            ops::conv2d(
                &ones(&[1, 5, 5, 4]),
                &ones(&[0, 3, 3, 2]),
                ConvOptions {
                    groups: 2,
                    ..Default::default()
                },
            ),
            &[1, 3, 3, 0],
        ),
        (
            "conv3d",
            ops::conv3d(
                &ones(&[1, 4, 4, 4, 2]),
                &ones(&[0, 2, 2, 2, 2]),
                ConvOptions::default(),
            ),
            &[1, 3, 3, 3, 0],
        ),
        (
            "conv_transpose1d",
            ops::conv_transpose1d(
                &ones(&[1, 5, 3]),
                &ones(&[0, 3, 3]),
                ConvTransposeOptions::default(),
            ),
            &[1, 7, 0],
        ),
        (
            "conv_transpose2d",
            ops::conv_transpose2d(
                &ones(&[1, 5, 5, 3]),
                &ones(&[0, 3, 3, 3]),
                ConvTransposeOptions::default(),
            ),
            &[1, 7, 7, 0],
        ),
        (
            "conv_transpose3d",
            ops::conv_transpose3d(
                &ones(&[1, 3, 3, 3, 2]),
                &ones(&[0, 2, 2, 2, 2]),
                ConvTransposeOptions::default(),
            ),
            &[1, 4, 4, 4, 0],
        ),
        (
            "conv_general",
            ops::conv_general(
                &ones(&[1, 5, 3]),
                &ones(&[0, 3, 3]),
                ConvGeneralOptions::default(),
            ),
            &[1, 3, 0],
        ),
        (
            "conv_general flip",
            ops::conv_general(
                &ones(&[1, 5, 5, 3]),
                &ones(&[0, 3, 3, 3]),
                ConvGeneralOptions {
                    flip: true,
                    ..Default::default()
                },
            ),
            &[1, 3, 3, 0],
        ),
    ];
    for (what, r, shape) in convs {
        let y = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(y.shape(), shape, "{what}");
        assert!(y.to_vec::<f32>().unwrap().is_empty(), "{what}");
    }
    // Reaching LAPACK with NaN: the workspace sizes LAPACK computes are illegal.
    let nan = f32s(&[f32::NAN; 4], &[2, 2]);
    let nan64 = nan.astype(Dtype::Float64).unwrap();
    let wide = Array::scalar(f32::NAN).broadcast_to(&[16, 16]).unwrap();
    let lapack: Vec<(&str, mlx_rs::Result<Array>)> = vec![
        ("eigvals", linalg::eigvals(&nan)),
        ("eigvals float64", linalg::eigvals(&nan64)),
        ("eigvals 16x16", linalg::eigvals(&wide)),
        ("eig", linalg::eig(&nan).map(|p| p.0)),
        ("eig vectors", linalg::eig(&nan).map(|p| p.1)),
    ];
    for (what, r) in lapack {
        let err = r.and_then(|a| a.eval()).expect_err(what).to_string();
        if mlx_rs::blas_errors_are_caught() {
            assert!(
                err.contains("BLAS/LAPACK") && err.contains("illegal value"),
                "{what}: {err}"
            );
        }
    }
    // LAPACK routines that take NaN without complaint give NaN, as NumPy does.
    for (what, r) in [
        ("svd", linalg::svd(&nan, false).map(|v| v[0].clone())),
        ("eigvalsh", linalg::eigvalsh(&nan, "L")),
        ("inv", linalg::inv(&nan)),
        ("qr", linalg::qr(&nan).map(|p| p.0)),
        ("solve", linalg::solve(&nan, &ones(&[2]))),
    ] {
        // Ok (NaN values) or MLX's own error, never an exit.
        let _ = r
            .and_then(|a| a.eval())
            .map_err(|e| assert!(!e.to_string().is_empty(), "{what}"));
    }
    // The process goes on and computes.
    let m = ones(&[3, 4]).matmul(&ones(&[4, 2])).unwrap();
    assert_eq!(m.to_vec::<f32>().unwrap(), vec![4.0; 6]);
    println!("CHILD-DONE");
}

/// Lowers the soft limit of `resource` to `bytes` (`libc` is a dependency of mlx-rs).
fn set_soft_limit(resource: libc::c_int, bytes: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct owned here.
    unsafe {
        assert_eq!(libc::getrlimit(resource as _, &mut r), 0);
        r.rlim_cur = (bytes as libc::rlim_t).min(r.rlim_max);
        assert_eq!(libc::setrlimit(resource as _, &r), 0);
    }
}

fn vm_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

#[test]
fn the_memory_guard_respects_the_process_limits() {
    if !cfg!(target_os = "linux") {
        return;
    }
    if !is_child() {
        for limit in ["as", "data"] {
            child_ok(
                "the_memory_guard_respects_the_process_limits",
                &[("MLX_RS_LIMIT", limit)],
            );
        }
        return;
    }
    let limit = std::env::var("MLX_RS_LIMIT").unwrap();
    f32s(&[1.0], &[1]).square().unwrap().eval().unwrap(); // MLX started
    let (resource, field, name) = match limit.as_str() {
        "as" => (libc::RLIMIT_AS as libc::c_int, "VmSize:", "ulimit -v"),
        _ => (libc::RLIMIT_DATA as libc::c_int, "VmData:", "ulimit -d"),
    };
    // 1 GiB more than the process uses now.
    set_soft_limit(resource, vm_bytes(field) + (1 << 30));
    // 4 GiB fits MLX's own limit (80% of RAM) but not the process's.
    for (what, r) in [
        ("zeros", ops::zeros(&[1 << 30], Dtype::Float32)),
        (
            "ones + 1",
            ops::ones(&[1 << 20, 1 << 10], Dtype::Float32)
                .and_then(|a| a.add(&Array::scalar(1.0f32))),
        ),
        (
            "broadcast",
            Array::scalar(1.0f32).broadcast_to(&[1 << 15, 1 << 15]),
        ),
    ] {
        let err = r.expect_err(what);
        assert!(matches!(err, Error::OutOfMemory(_)), "{what}: {err:?}");
        assert!(err.to_string().contains(name), "{what}: {err}");
    }
    // What fits still works.
    let ok = ops::ones(&[16 << 20], Dtype::Float32)
        .unwrap()
        .sum(false)
        .unwrap();
    assert_eq!(ok.item::<f32>().unwrap(), (16 << 20) as f32);
    println!("CHILD-DONE");
}
