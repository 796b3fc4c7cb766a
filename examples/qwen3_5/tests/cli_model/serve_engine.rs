//! The serving engine (`mlx_lm::serve::engine`) on a tiny Qwen 3.5 in float32 on the CPU:
//! continuous batching gives each request the tokens it gets alone, the prefix cache gives
//! the tokens of a cold run, and a client that goes away frees its row.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mlx_lm::checkpoint::Checkpoint;
use mlx_lm::serve::engine::{self, EngineOptions, STEP_FED};
use mlx_lm::serve::protocol::{EngineHandle, Event, Finish, Submission, TokenEvent};
use mlx_rs::{Device, Dtype};
use qwen3_5::{Config, Decode, Model, ModelOptions, SamplingParams};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::common;

/// The fixture with every tensor in float32 (greedy decoding then has no ties that
/// bf16 rounding could flip between a batched and a lone run).
fn f32_model(decode: Decode) -> qwen3_5::Result<Model> {
    let dir = common::model_dir("mlx-bf16-untied");
    let config = Config::from_file(&dir)?;
    let tensors = Checkpoint::open(&dir)?.load_all()?;
    let tensors = tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.astype(Dtype::Float32)?)))
        .collect::<qwen3_5::Result<_>>()?;
    let options = ModelOptions {
        decode,
        ..ModelOptions::default()
    };
    Model::from_tensors(config, tensors, options)
}

/// Prompts of different lengths (ids below the fixtures' 250 real ones).
fn prompts() -> Vec<Vec<u32>> {
    [3usize, 9, 17, 1, 30]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (0..n)
                .map(|j| ((i * 37 + j * 11 + 5) % 240) as u32)
                .collect()
        })
        .collect()
}

/// What a lone greedy run gives (the reference).
fn alone(model: &Model, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    alone_with(model, prompt, max_tokens, SamplingParams::greedy())
}

/// What a lone run with these sampling parameters gives.
fn alone_with(
    model: &Model,
    prompt: &[u32],
    max_tokens: usize,
    sampling: SamplingParams,
) -> Vec<u32> {
    let options = qwen3_5::GenerateOptions {
        max_tokens,
        sampling,
        stop_tokens: Vec::new(),
        valid_vocab_size: Some(250),
        ..Default::default()
    };
    mlx_lm::generate(model, prompt, options)
        .unwrap()
        .collect::<mlx_lm::Result<Vec<u32>>>()
        .unwrap()
}

/// A running engine; dropping it closes its queue and waits for its thread (so that the
/// process never exits under a running step).
struct Running {
    handle: Option<EngineHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for Running {
    type Target = EngineHandle;
    fn deref(&self) -> &EngineHandle {
        self.handle.as_ref().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(options: EngineOptions, decode: Decode) -> Running {
    let (handle, thread) = engine::spawn(
        move || f32_model(decode),
        EngineOptions {
            device: Some(Device::cpu()),
            valid_vocab: Some(250),
            ..options
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !handle.ready() {
        assert!(handle.stopped().is_none(), "{:?}", handle.stopped());
        assert!(Instant::now() < deadline, "the engine did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Running {
        handle: Some(handle),
        thread: Some(thread),
    }
}

fn submit(handle: &EngineHandle, prompt: &[u32], max_tokens: usize) -> UnboundedReceiver<Event> {
    submit_saving(handle, prompt, max_tokens, Vec::new())
}

fn submit_saving(
    handle: &EngineHandle,
    prompt: &[u32],
    max_tokens: usize,
    save_at: Vec<usize>,
) -> UnboundedReceiver<Event> {
    submit_with(
        handle,
        prompt,
        max_tokens,
        save_at,
        SamplingParams::greedy(),
        None,
    )
}

fn submit_with(
    handle: &EngineHandle,
    prompt: &[u32],
    max_tokens: usize,
    save_at: Vec<usize>,
    sampling: SamplingParams,
    logprobs: Option<usize>,
) -> UnboundedReceiver<Event> {
    let (tx, rx) = unbounded_channel();
    handle
        .submit(Submission {
            prompt: prompt.to_vec(),
            save_at,
            max_tokens,
            sampling,
            logprobs,
            events: tx,
        })
        .unwrap();
    rx
}

/// Every token event of a finished request.
fn collect_events(mut rx: UnboundedReceiver<Event>) -> Vec<TokenEvent> {
    let mut events = Vec::new();
    loop {
        match rx.blocking_recv().expect("the engine dropped a request") {
            Event::Prefilled { .. } => {}
            Event::Token(t) => events.push(t),
            Event::Finished(_) => return events,
            Event::Failed(why) => panic!("request failed: {why}"),
        }
    }
}

/// The tokens of a finished request and its cached prompt tokens.
fn collect(mut rx: UnboundedReceiver<Event>) -> (Vec<u32>, usize, Finish) {
    let (mut tokens, mut cached) = (Vec::new(), usize::MAX);
    loop {
        match rx.blocking_recv().expect("the engine dropped a request") {
            Event::Prefilled { cached_tokens, .. } => cached = cached_tokens,
            Event::Token(t) => tokens.push(t.id),
            Event::Finished(f) => return (tokens, cached, f),
            Event::Failed(why) => panic!("request failed: {why}"),
        }
    }
}

#[test]
fn batched_requests_get_the_tokens_they_get_alone() {
    for decode in [Decode::Reference, Decode::Fused] {
        let max_tokens = 12;
        let reference = common::cpu(|| {
            let model = f32_model(decode).unwrap();
            prompts()
                .iter()
                .map(|p| alone(&model, p, max_tokens))
                .collect::<Vec<_>>()
        });
        // Small prefill chunks and a batch of 3: requests join and leave while others
        // decode, at different lengths.
        let handle = start(
            EngineOptions {
                max_concurrency: 3,
                prefill_chunk: 4,
                prompt_cache_bytes: 0,
                ..EngineOptions::default()
            },
            decode,
        );
        let receivers: Vec<_> = prompts()
            .iter()
            .enumerate()
            .map(|(i, p)| submit(&handle, p, max_tokens - i % 3))
            .collect();
        for (i, rx) in receivers.into_iter().enumerate() {
            let (tokens, cached, finish) = collect(rx);
            let n = max_tokens - i % 3;
            assert_eq!(tokens, reference[i][..n], "{decode:?}: request {i}");
            assert_eq!(cached, 0);
            assert_eq!(finish, Finish::Length);
        }
    }
}

/// Three fresh prompts that reach an engine while it decodes another request (so that
/// they are all waiting when it next takes requests in), and `extra` before them: each
/// of the three gets its lone greedy tokens. Returns the engine's prefill chunks for them
/// and `extra`'s events.
fn submitted_while_busy(max_tokens: usize, extra: &[u32]) -> (u64, UnboundedReceiver<Event>) {
    let prompts = prompts();
    let reference = common::cpu(|| {
        let model = f32_model(Decode::Fused).unwrap();
        prompts[..3]
            .iter()
            .map(|p| alone(&model, p, max_tokens))
            .collect::<Vec<_>>()
    });
    let handle = start(
        EngineOptions {
            prompt_cache_bytes: 0,
            ..EngineOptions::default()
        },
        Decode::Fused,
    );
    let mut busy = submit(&handle, &prompts[4], 40);
    while !matches!(busy.blocking_recv(), Some(Event::Token(_))) {}
    let chunks = || handle.status().timing.prefill_chunks.load(Ordering::SeqCst);
    let before = chunks();
    let extra = submit(&handle, extra, max_tokens);
    let receivers: Vec<_> = prompts[..3]
        .iter()
        .map(|p| submit(&handle, p, max_tokens))
        .collect();
    for (i, rx) in receivers.into_iter().enumerate() {
        assert_eq!(collect(rx).0, reference[i], "request {i}");
    }
    let used = chunks() - before;
    collect(busy);
    (used, extra)
}

/// Requests that start from nothing while the engine is busy are prefilled together, in
/// one batch padded on the right (`LanguageModel::prefill_rows`), and each still gets the
/// tokens it gets alone.
#[test]
fn requests_that_arrive_together_are_prefilled_together() {
    let (used, extra) = submitted_while_busy(8, &prompts()[2]);
    // One chunk each alone; fewer when (some of) them ran as one batch.
    assert!(used < 4, "four fresh prompts took {used} prefill chunks");
    collect(extra);
}

/// A request that fails in a batched prefill (a token id the model does not have, sent
/// to the engine directly) fails alone: the others of its batch run again one by one and
/// get their lone tokens.
#[test]
fn a_bad_request_in_a_batched_prefill_fails_alone() {
    let mut bad = prompts()[1].clone();
    bad[2] = 1_000_000;
    let (_, mut bad_rx) = submitted_while_busy(6, &bad);
    let why = loop {
        match bad_rx
            .blocking_recv()
            .expect("the engine dropped a request")
        {
            Event::Failed(why) => break why,
            Event::Prefilled { .. } => {}
            other => panic!("the bad request went on: {other:?}"),
        }
    };
    assert!(why.contains("1000000"), "{why}");
}

/// Requests whose samplers differ share one batch: a presence penalty (the engine then
/// reads each step before starting the next, as the penalty looks at every token), a
/// seeded draw at temperature 0.8, log-probabilities, and plain greedy. Each gets the
/// tokens of `generate` alone with the same parameters, and the log-probabilities of a
/// lone run through the engine.
#[test]
fn requests_with_different_samplers_share_a_batch() {
    let max_tokens = 10;
    let penalty = SamplingParams {
        // Negative: the last two tokens are made likelier, so the reply follows them.
        presence_penalty: -8.0,
        presence_context_size: 2,
        ..SamplingParams::greedy()
    };
    let seeded = SamplingParams {
        temperature: 0.8,
        seed: Some(7),
        ..SamplingParams::greedy()
    };
    let kinds = [
        (penalty, None),
        (seeded, None),
        (SamplingParams::greedy(), Some(3)),
        (SamplingParams::greedy(), None),
    ];
    let prompts = prompts();
    let reference = common::cpu(|| {
        let model = f32_model(Decode::Fused).unwrap();
        kinds
            .iter()
            .zip(&prompts)
            .map(|((s, _), p)| alone_with(&model, p, max_tokens, s.clone()))
            .collect::<Vec<_>>()
    });
    // The penalty changes this prompt's greedy reply (so a step started before reading
    // the previous token, which the penalty would miss, shows).
    let plain = common::cpu(|| {
        let model = f32_model(Decode::Fused).unwrap();
        alone(&model, &prompts[0], max_tokens)
    });
    assert_ne!(plain, reference[0], "the penalty changes nothing here");
    let run = |concurrency: usize| {
        let handle = start(
            EngineOptions {
                max_concurrency: concurrency,
                prefill_chunk: 4,
                prompt_cache_bytes: 0,
                ..EngineOptions::default()
            },
            Decode::Fused,
        );
        let receivers: Vec<_> = kinds
            .iter()
            .zip(&prompts)
            .map(|((s, lp), p)| submit_with(&handle, p, max_tokens, Vec::new(), s.clone(), *lp))
            .collect();
        receivers
            .into_iter()
            .map(collect_events)
            .collect::<Vec<_>>()
    };
    let lone = run(1);
    let batched = run(4);
    for (i, (events, lone)) in batched.iter().zip(&lone).enumerate() {
        let ids: Vec<u32> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, reference[i], "request {i}");
        for (e, l) in events.iter().zip(lone) {
            assert_eq!(e.logprob.is_some(), i == 2, "request {i}");
            if let (Some(a), Some(b)) = (e.logprob, l.logprob) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "request {i}: log-probability {a} vs {b}"
                );
            }
            assert_eq!(e.top_logprobs.len(), if i == 2 { 3 } else { 0 });
        }
    }
}

#[test]
fn a_prefix_cache_hit_gives_the_tokens_of_a_cold_run() {
    let first: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % 240).collect();
    let handle = start(EngineOptions::default(), Decode::Fused);
    let (reply, cached, _) = collect(submit(&handle, &first, 8));
    assert_eq!(cached, 0);
    // The next turn: the first prompt, the reply, and more (more than the batch's steps
    // feed: the rest of the prompt runs as a prefill chunk, whose end state is saved).
    let mut second = first.clone();
    second.extend(&reply);
    second.extend((0..STEP_FED as u32 + 4).map(|i| 11 + i));
    let (warm, cached, _) = collect(submit(&handle, &second, 10));
    // The state saved at the reply's end: every token of the reply, the last one fed by
    // the step that was already running when the reply's end was read.
    assert_eq!(
        cached,
        first.len() + reply.len(),
        "the reply's state is reused"
    );
    // The same prompt again hits the state saved after its prefill.
    let (again, cached_again, _) = collect(submit(&handle, &second, 10));
    assert_eq!(cached_again, second.len() - 1);
    let cold = start(
        EngineOptions {
            prompt_cache_bytes: 0,
            ..EngineOptions::default()
        },
        Decode::Fused,
    );
    let (expected, cached, _) = collect(submit(&cold, &second, 10));
    assert_eq!(cached, 0);
    assert_eq!(warm, expected);
    assert_eq!(again, expected);

    // A state saved inside a prompt (a chat's history before the reply's opening) serves
    // a prompt that shares only that much.
    let history: Vec<u32> = (0..13).map(|i| (i * 5 + 1) % 240).collect();
    let mut turn = history.clone();
    turn.extend([200, 201, 202]);
    let (_, cached, _) = collect(submit_saving(&handle, &turn, 3, vec![history.len()]));
    assert_eq!(cached, 0);
    let mut next = history.clone();
    next.extend([210, 211, 212, 213]);
    let (warm, cached, _) = collect(submit(&handle, &next, 6));
    assert_eq!(cached, history.len());
    let (expected, _, _) = collect(submit(&cold, &next, 6));
    assert_eq!(warm, expected);
    // A prompt within `STEP_FED` tokens of a saved state, while another request decodes:
    // no prefill chunk, the batch's steps feed the rest. (Alone, a chunk runs them.)
    let chunks = |h: &EngineHandle| h.status().timing.prefill_chunks.load(Ordering::SeqCst);
    let mut busy = submit(&handle, &(0..9).map(|i| 100 + i).collect::<Vec<u32>>(), 40);
    while !matches!(busy.blocking_recv(), Some(Event::Token(_))) {}
    let before = chunks(&handle);
    let mut third = history.clone();
    third.extend([220, 221, 222]);
    let (warm, cached, _) = collect(submit(&handle, &third, 4));
    assert_eq!((cached, chunks(&handle)), (history.len(), before));
    collect(busy);
    let cold_before = chunks(&cold);
    let (expected, _, _) = collect(submit(&cold, &third, 4));
    assert_eq!(chunks(&cold), cold_before + 1, "a cold run prefills once");
    assert_eq!(warm, expected);
}

#[test]
fn a_client_that_goes_away_frees_its_row() {
    let handle = start(
        EngineOptions {
            max_concurrency: 1,
            ..EngineOptions::default()
        },
        Decode::Fused,
    );
    let mut rx = submit(&handle, &[1, 2, 3], 100_000);
    // Wait for its first token, then hang up.
    loop {
        if let Some(Event::Token(_)) = rx.blocking_recv() {
            break;
        }
    }
    drop(rx);
    // The only row is free again: the next request runs to its end.
    let (tokens, _, finish) = collect(submit(&handle, &[4, 5, 6], 5));
    assert_eq!((tokens.len(), finish), (5, Finish::Length));
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.status().active.load(Ordering::SeqCst) != 0 {
        assert!(Instant::now() < deadline, "rows still active");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A model whose forward pass always fails (a stand-in for a model that cannot run).
struct Broken(Model);

impl mlx_lm::LanguageModel for Broken {
    fn forward(
        &self,
        _tokens: &mlx_rs::Array,
        _cache: &mut mlx_lm::cache::Cache,
    ) -> mlx_lm::Result<mlx_rs::Array> {
        Err(mlx_lm::Error::InvalidArgument(
            "this model cannot run".into(),
        ))
    }
    fn new_cache(&self) -> mlx_lm::cache::Cache {
        mlx_lm::LanguageModel::new_cache(&self.0)
    }
    fn vocab_size(&self) -> i32 {
        mlx_lm::LanguageModel::vocab_size(&self.0)
    }
    fn dtype(&self) -> Dtype {
        mlx_lm::LanguageModel::dtype(&self.0)
    }
}

/// The warm-up runs the model before the engine reports ready: a model that cannot run
/// stops the engine with the reason, and it never reports ready; without the warm-up the
/// same engine reports ready (and fails the requests instead).
#[test]
fn a_model_that_fails_its_warm_up_stops_the_engine_with_the_reason() {
    for warm_up in [true, false] {
        let (handle, thread) = engine::spawn(
            move || f32_model(Decode::Fused).map(Broken),
            EngineOptions {
                device: Some(Device::cpu()),
                warm_up,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !handle.ready() && handle.stopped().is_none() {
            assert!(
                Instant::now() < deadline,
                "the engine neither started nor stopped"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if warm_up {
            let why = handle.stopped().unwrap();
            assert!(!handle.ready());
            assert!(
                why.contains("warming up the model failed") && why.contains("cannot run"),
                "{why}"
            );
        } else {
            assert!(handle.ready() && handle.stopped().is_none());
        }
        drop(handle);
        thread.join().unwrap();
    }
}
