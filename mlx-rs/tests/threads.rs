//! Arrays move between threads; each thread computes on its own streams; a thread-local
//! stream handle is shared by workers. Runs under the default multi-threaded test runner.

use mlx_rs::{with_device, Array, Device, Stream, ThreadLocalStream};
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
fn an_unevaluated_graph_sent_to_another_thread_is_evaluated_there() {
    // On this thread's CPU stream (pooled: any thread may evaluate it; a GPU stream
    // belongs to its thread).
    let pending = with_device(&Device::cpu(), || {
        let a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
        a.add(&a).unwrap()
    })
    .unwrap();
    let got = std::thread::spawn(move || pending.to_vec::<i32>().unwrap())
        .join()
        .unwrap();
    assert_eq!(got, vec![2, 4, 6]);
}

/// Threads evaluating graphs that share unevaluated nodes (built on another thread's
/// stream) at the same time: MLX is handed one graph at a time, so each node is computed
/// once and every thread reads the right values.
#[test]
fn threads_evaluate_a_shared_unevaluated_graph_at_once() {
    for round in 0..20 {
        // Built on this thread's CPU stream; each thread adds a node on its default
        // device (the GPU where there is one).
        let shared = with_device(&Device::cpu(), || {
            let mut shared = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[4]).unwrap();
            for _ in 0..50 {
                shared = shared.square().unwrap().sqrt().unwrap();
            }
            shared
        })
        .unwrap();
        let go = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (shared, go) = (shared.clone(), Arc::clone(&go));
                std::thread::spawn(move || {
                    let mine = shared.multiply(&Array::from(t as f32)).unwrap();
                    go.wait();
                    mine.to_vec::<f32>().unwrap()
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let got = h.join().unwrap();
            let want: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0]
                .iter()
                .map(|v| v * t as f32)
                .collect();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "round {round} thread {t}: {got:?}"
                );
            }
        }
        assert_eq!(shared.to_vec::<f32>().unwrap().len(), 4);
    }
}

/// A thread whose evaluation failed on its CPU stream leaves no error behind for the
/// thread that is lent the same stream next.
#[test]
fn a_failed_evaluation_does_not_poison_the_next_holder_of_the_stream() {
    for _ in 0..3 {
        let failed = std::thread::spawn(|| {
            let singular = Array::from_slice(&[1.0f32, 2.0, 2.0, 4.0], &[2, 2]).unwrap();
            mlx_rs::linalg::inv(&singular).and_then(|i| i.eval())
        })
        .join()
        .unwrap();
        assert!(failed.is_err(), "inverting a singular matrix fails");
        let fine = std::thread::spawn(|| {
            Array::from_slice(&[3.0f32], &[1])
                .unwrap()
                .square()
                .unwrap()
                .item::<f32>()
        })
        .join()
        .unwrap();
        assert_eq!(fine.unwrap(), 9.0);
    }
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
