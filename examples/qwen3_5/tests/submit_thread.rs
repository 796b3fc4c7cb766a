//! Decode steps started on the submit thread (`GenerateOptions::submit_thread`) give the
//! tokens, statistics and cache that the same generation gives on one thread: greedy and
//! sampled, ended by the length limit or by a stop token at every position (the step
//! computed past a stop token is undone), and the cache continues the same way after it.
//! The CPU tests force the thread on (its default is on for GPUs only); the GPU test
//! (ignored without a CUDA GPU) runs the default there against the thread forced off.

mod common;

use common::{cpu, expected, gpu, model_dir, VARIANTS};
use mlx_rs::{Array, Dtype};
use qwen3_5::{Cache, FinishReason, GenerateOptions, Model, SamplingParams};

/// Runs a generation with the submit thread on or off: its tokens, finish reason and cache.
fn run(
    model: &Model,
    prompt: &[u32],
    opts: &GenerateOptions,
    threaded: impl Into<Option<bool>>,
) -> (Vec<u32>, Option<FinishReason>, Cache) {
    let opts = GenerateOptions {
        submit_thread: threaded.into(),
        ..opts.clone()
    };
    let mut g = model.generate(prompt, opts).unwrap();
    let tokens: Vec<u32> = (&mut g).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        g.stats().generated_tokens,
        tokens.len()
            + usize::from(matches!(
                g.stats().finish_reason,
                Some(FinishReason::Stop(_))
            ))
    );
    let reason = g.stats().finish_reason;
    (tokens, reason, g.into_cache())
}

/// The logits of `next` fed to `cache`, as raw bits (for exact comparison).
fn next_logits(model: &Model, cache: &mut Cache, next: u32) -> Vec<u32> {
    let ids = Array::from_slice(&[next], &[1, 1]).unwrap();
    let logits = model.forward(&ids, cache).unwrap();
    logits
        .astype(Dtype::Float32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn greedy_tokens_match_mlx_lm_on_the_submit_thread() {
    cpu(|| {
        for v in VARIANTS {
            let exp = expected(v);
            let model = common::load_stored(model_dir(v));
            for max_tokens in [1, 2, 3, exp.greedy.len()] {
                let opts = GenerateOptions {
                    max_tokens,
                    ..Default::default()
                };
                let (got, reason, cache) = run(&model, &exp.prompt, &opts, true);
                assert_eq!(
                    got,
                    exp.greedy[..max_tokens],
                    "{v}: {max_tokens} greedy ids"
                );
                assert_eq!(reason, Some(FinishReason::Length));
                // The last token is not fed back, as without the thread.
                assert_eq!(
                    cache.offset() as usize,
                    exp.prompt.len() + max_tokens - 1,
                    "{v}: cache length"
                );
            }
        }
    })
}

#[test]
fn a_stop_token_anywhere_leaves_the_cache_of_one_thread() {
    cpu(|| {
        let v = "mlx-bf16-untied";
        let exp = expected(v);
        let model = common::load_stored(model_dir(v));
        let n = exp.greedy.len();
        for at in 0..n {
            let stop = exp.greedy[at];
            let first = exp.greedy.iter().position(|&t| t == stop).unwrap();
            if first != at {
                continue; // the same id earlier: covered by that position
            }
            for max_tokens in [at + 1, at + 2, n] {
                let opts = GenerateOptions {
                    max_tokens,
                    stop_tokens: vec![stop],
                    sampling: SamplingParams::greedy(),
                    ..Default::default()
                };
                let (a, reason_a, mut cache_a) = run(&model, &exp.prompt, &opts, true);
                let (b, reason_b, mut cache_b) = run(&model, &exp.prompt, &opts, false);
                assert_eq!(a, exp.greedy[..at], "stop at {at}, max {max_tokens}");
                assert_eq!(
                    (&a, reason_a),
                    (&b, reason_b),
                    "stop at {at}, max {max_tokens}"
                );
                assert_eq!(
                    cache_a.offset(),
                    cache_b.offset(),
                    "stop at {at}, max {max_tokens}: cache length"
                );
                // Both caches continue bit for bit alike (recurrent states and KV rows).
                for t in [3, 7] {
                    assert_eq!(
                        next_logits(&model, &mut cache_a, t),
                        next_logits(&model, &mut cache_b, t),
                        "stop at {at}, max {max_tokens}: logits after the cache"
                    );
                }
            }
        }
    })
}

#[test]
fn sampled_tokens_and_multi_turn_match_one_thread() {
    cpu(|| {
        let v = "mlx-bf16-tied";
        let exp = expected(v);
        let model = common::load_stored(model_dir(v));
        let opts = GenerateOptions {
            max_tokens: 20,
            sampling: SamplingParams {
                temperature: 1.0,
                top_k: 40,
                repetition_penalty: 1.3,
                seed: Some(11),
                ..Default::default()
            },
            valid_vocab_size: Some(exp.real_vocab_size),
            ..Default::default()
        };
        let (a, _, cache_a) = run(&model, &exp.prompt, &opts, true);
        let (b, _, cache_b) = run(&model, &exp.prompt, &opts, false);
        assert_eq!(a.len(), 20);
        assert_eq!(a, b, "same seed, same tokens with and without the thread");

        // A second turn on each cache, stopped on its 3rd token.
        let second = |cache: Cache, threaded: bool| {
            let greedy = GenerateOptions {
                max_tokens: 12,
                submit_thread: Some(threaded),
                ..Default::default()
            };
            let probe: Vec<u32> = model
                .generate_with_cache(&[5, 6, 7], cache.clone(), greedy.clone())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let opts = GenerateOptions {
                stop_tokens: vec![probe[2]],
                ..greedy
            };
            let mut g = model.generate_with_cache(&[5, 6, 7], cache, opts).unwrap();
            let got: Vec<u32> = (&mut g).collect::<Result<_, _>>().unwrap();
            (probe, got, g.into_cache().offset())
        };
        let (probe_a, got_a, len_a) = second(cache_a, true);
        let (probe_b, got_b, len_b) = second(cache_b, false);
        assert_eq!(probe_a, probe_b);
        assert_eq!(got_a, got_b);
        assert_eq!(len_a, len_b);
    })
}

#[test]
fn dropping_a_generation_midway_joins_the_thread() {
    cpu(|| {
        let v = "mlx-bf16-tied";
        let exp = expected(v);
        let model = common::load_stored(model_dir(v));
        for _ in 0..20 {
            let opts = GenerateOptions {
                max_tokens: 50,
                submit_thread: Some(true),
                ..Default::default()
            };
            let mut g = model.generate(&exp.prompt, opts).unwrap();
            assert_eq!(g.next().unwrap().unwrap(), exp.greedy[0]);
            drop(g);
            // MLX work on this thread right after: nothing races with the stopped thread.
            let mut cache = model.new_cache();
            let ids = Array::from_slice(&exp.prompt, &[1, exp.prompt.len() as i32]).unwrap();
            model.forward(&ids, &mut cache).unwrap().eval().unwrap();
        }
    })
}

#[test]
fn sampling_without_a_seed_runs_on_the_thread_under_the_global_seed() {
    cpu(|| {
        let v = "mlx-bf16-tied";
        let exp = expected(v);
        let model = common::load_stored(model_dir(v));
        let opts = GenerateOptions {
            max_tokens: 16,
            sampling: SamplingParams {
                temperature: 1.0,
                ..Default::default()
            },
            ..Default::default()
        };
        // The global seed decides the draws, with and without the thread.
        mlx_rs::random::seed(21).unwrap();
        let (a, _, _) = run(&model, &exp.prompt, &opts, true);
        mlx_rs::random::seed(21).unwrap();
        let (b, _, _) = run(&model, &exp.prompt, &opts, false);
        assert_eq!(a.len(), 16);
        assert_eq!(a, b);
    })
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn on_the_gpu_the_default_thread_gives_the_tokens_and_cache_of_one_thread() {
    gpu(|| {
        // A dense and a quantized variant (every variant, with NVRTC compiling the kernels
        // for each, took longer than 150 s on an H200).
        for v in ["mlx-bf16-untied", "mlx-q4-tied"] {
            let exp = expected(v);
            let model = common::load_stored(model_dir(v));
            let n = exp.greedy.len();
            let opts = GenerateOptions {
                max_tokens: n,
                ..Default::default()
            };
            let (a, _, _) = run(&model, &exp.prompt, &opts, None);
            let (b, _, _) = run(&model, &exp.prompt, &opts, false);
            assert_eq!(a, b, "{v}: greedy ids, default (thread) against none");
            for at in [0, n / 2] {
                let stop = a[at];
                let opts = GenerateOptions {
                    max_tokens: n,
                    stop_tokens: vec![stop],
                    ..Default::default()
                };
                let (x, _, mut cache_x) = run(&model, &exp.prompt, &opts, None);
                let (y, _, mut cache_y) = run(&model, &exp.prompt, &opts, false);
                assert_eq!(x, y, "{v}: stop at {at}");
                assert_eq!(cache_x.offset(), cache_y.offset(), "{v}: stop at {at}");
                assert_eq!(
                    next_logits(&model, &mut cache_x, 3),
                    next_logits(&model, &mut cache_y, 3),
                    "{v}: stop at {at}: logits after the cache"
                );
            }
        }
    })
}
