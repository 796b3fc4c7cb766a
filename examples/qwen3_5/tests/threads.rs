//! Threads: several threads, each with its own stream, load the tiny fixture models and
//! run prefill plus stepwise decoding concurrently for many iterations; every thread must
//! get the logits that the same work gives on one thread (bit for bit) and that mlx-lm
//! gives (within the forward tests' tolerance). A loaded model moves to another thread
//! (it is `Send`) once its weights are evaluated.

mod common;

use common::{assert_logits_close, expected, model_dir, stepwise_logits, VARIANTS};
use mlx_rs::{Device, Stream};
use std::sync::{Arc, Barrier};

const THREADS: usize = 4;
const ROUNDS: usize = 5;

#[test]
fn concurrent_forward_passes_match_single_thread_results() {
    let cpu = Device::cpu();
    // Single-thread references, per variant.
    let alone: Vec<Vec<f32>> = VARIANTS
        .iter()
        .map(|v| {
            let exp = expected(v);
            mlx_rs::with_device(&cpu, || {
                let model = common::load_stored(model_dir(v));
                stepwise_logits(&model, &exp.prompt, exp.prefill)
            })
            .unwrap()
        })
        .collect();
    for (v, a) in VARIANTS.iter().zip(&alone) {
        assert_logits_close(v, a, &expected(v).logits_stepwise.1, 256);
    }

    let alone = Arc::new(alone);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (alone, barrier) = (Arc::clone(&alone), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let stream = Stream::new(&Device::cpu());
                stream.scope(|| {
                    // Each thread works through the variants in its own order.
                    let order: Vec<usize> = (0..VARIANTS.len())
                        .map(|i| (i + t) % VARIANTS.len())
                        .collect();
                    let models: Vec<_> = order
                        .iter()
                        .map(|&i| common::load_stored(model_dir(VARIANTS[i])))
                        .collect();
                    barrier.wait();
                    for round in 0..ROUNDS {
                        for (model, &i) in models.iter().zip(&order) {
                            let exp = expected(VARIANTS[i]);
                            let got = stepwise_logits(model, &exp.prompt, exp.prefill);
                            assert!(
                                got == alone[i],
                                "thread {t}, round {round}, {}: logits differ from the \
                                 single-thread run",
                                VARIANTS[i]
                            );
                        }
                    }
                });
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn a_freshly_loaded_model_moves_to_another_thread() {
    // Loading leaves no pending work on the loading thread's stream (weights are
    // materialized, including the shifted norms of Hugging Face checkpoints), so the model
    // can run on a thread that did not load it.
    for v in VARIANTS {
        let exp = expected(v);
        let model = common::load_stored(model_dir(v));
        let (prompt, prefill) = (exp.prompt.clone(), exp.prefill);
        let there = std::thread::spawn(move || stepwise_logits(&model, &prompt, prefill))
            .join()
            .unwrap_or_else(|_| panic!("{v}: the model failed on another thread"));
        assert_logits_close(v, &there, &exp.logits_stepwise.1, 256);
    }
}
