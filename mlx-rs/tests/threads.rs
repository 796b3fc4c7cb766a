//! Arrays move between threads; each thread computes on its own streams; a thread-local
//! stream handle is shared by workers. Runs under the default multi-threaded test runner.

use mlx_rs::{Array, Device, Stream, ThreadLocalStream};

fn f32s(v: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(v, shape).unwrap()
}
use std::sync::Arc;

fn work(seed: f32, iterations: usize) -> f32 {
    let mut x = Array::from_slice(&[seed, seed + 1.0], &[2]).unwrap();
    for _ in 0..iterations {
        // x = sqrt(x * x) keeps the values while building and evaluating graphs.
        x = x.square().unwrap().sqrt().unwrap();
        x.eval().unwrap();
    }
    x.to_vec::<f32>().unwrap().iter().sum()
}

#[test]
fn threads_compute_concurrently_with_correct_results() {
    let handles: Vec<_> = (0..8)
        .map(|t| std::thread::spawn(move || work(t as f32, 200)))
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let got = h.join().unwrap();
        assert!(
            (got - (2.0 * t as f32 + 1.0)).abs() < 1e-3,
            "thread {t}: {got}"
        );
    }
}

#[test]
fn evaluated_arrays_move_between_threads() {
    let a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    let b = a.add(&a).unwrap();
    b.eval().unwrap();
    let sum = std::thread::spawn(move || {
        let s = Stream::new(&Device::cpu());
        s.scope(|| b.add(&b)).unwrap().to_vec::<i32>().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(sum, vec![4, 8, 12]);
    assert_eq!(a.to_vec::<i32>().unwrap(), vec![1, 2, 3]);
}

#[test]
fn an_unevaluated_graph_sent_to_another_thread_is_an_error_not_a_crash() {
    let a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    let pending = a.add(&a).unwrap(); // scheduled on this thread's stream
    let err = std::thread::spawn(move || pending.to_vec::<i32>().unwrap_err().to_string())
        .join()
        .unwrap();
    assert!(err.contains("no Stream"), "{err}");
}

#[test]
fn a_thread_local_stream_gives_each_thread_its_own_stream() {
    let tls = Arc::new(ThreadLocalStream::new(&Device::cpu()));
    let mine = tls.get().unwrap();
    let theirs: Vec<i32> = (0..3)
        .map(|_| {
            let tls = Arc::clone(&tls);
            std::thread::spawn(move || {
                let s = tls.get().unwrap();
                assert_eq!(s, tls.get().unwrap(), "stable within a thread");
                let y = s
                    .scope(|| Array::from_slice(&[2.0f32], &[1]).unwrap().square())
                    .unwrap();
                assert_eq!(y.item::<f32>().unwrap(), 4.0);
                tls.synchronize().unwrap();
                s.index().unwrap()
            })
            .join()
            .unwrap()
        })
        .collect();
    for idx in &theirs {
        assert_ne!(*idx, mine.index().unwrap());
    }
    let copy = (*tls).clone();
    assert_eq!(copy.get().unwrap(), mine);
}

// ---- issue 21 part B: worker threads of streams -----------------------------------------

/// Runs this test binary again with only `test` and `MLX_RS_CHILD=1` (plus `envs`), so
/// that an abort or a signal fails the test instead of ending the runner; the child
/// prints CHILD-DONE when it got to the end.
fn child_ok(test: &str, envs: &[(&str, &str)]) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("MLX_RS_CHILD", "1")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-DONE"),
        "child {test} ended with {:?}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_child() -> bool {
    std::env::var_os("MLX_RS_CHILD").is_some()
}

fn os_threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn thread_and_stream_churn_keeps_the_thread_count_bounded() {
    if !cfg!(target_os = "linux") {
        return; // the count comes from /proc
    }
    if !is_child() {
        child_ok(
            "thread_and_stream_churn_keeps_the_thread_count_bounded",
            &[],
        );
        return;
    }
    let op = || {
        let y = f32s(&[3.0], &[1]).square().unwrap();
        assert_eq!(y.item::<f32>().unwrap(), 9.0);
    };
    op();
    let base = os_threads();
    let mut most = base;
    // 2,000 short-lived threads, each running an op on its default stream.
    for i in 0..2000 {
        std::thread::spawn(op).join().unwrap();
        if i % 100 == 0 {
            most = most.max(os_threads());
        }
    }
    // 2,000 streams, each running an op, dropped right after.
    for i in 0..2000 {
        let s = Stream::new(&Device::cpu());
        s.scope(op);
        if i % 100 == 0 {
            most = most.max(os_threads());
        }
    }
    // Threads that take a stream from a shared ThreadLocalStream.
    let tls = std::sync::Arc::new(mlx_rs::ThreadLocalStream::new(&Device::cpu()));
    for _ in 0..500 {
        let tls = tls.clone();
        std::thread::spawn(move || tls.get().unwrap().scope(op))
            .join()
            .unwrap();
    }
    most = most.max(os_threads());
    assert!(most <= base + 3, "threads grew from {base} to {most}");
    assert!(
        os_threads() <= base + 1,
        "{} threads left (from {base})",
        os_threads()
    );
    println!("CHILD-DONE");
}
