//! The engine: the thread that owns the model and runs every request's tokens.
//!
//! Each turn of its loop does, in order:
//! 1. drop the sequences whose client went away (their event channel is closed);
//! 2. take the waiting requests into prefill while the batch has room, each starting
//!    from the longest saved state of the [prefix cache](super::prefix) that its prompt
//!    extends;
//! 3. run one unit of prefill (module `prefill`): the first chunk of every request that starts
//!    from nothing, when there are several, as one batch padded on the right, else one
//!    chunk (at most [`EngineOptions::prefill_chunk`] tokens) of the first request in
//!    prefill, alone; a request with its last prompt token left (or, while others
//!    decode, at most [`STEP_FED`]: a chat prompt's opening of the reply, after the state
//!    saved for the next turn) joins the batch ([`Cache::merge`]: caches of different
//!    lengths are padded on the left, each sequence keeps its own positions) with those
//!    tokens still to feed, one per step;
//! 4. start one decode step of the whole batch: one forward over one token per sequence,
//!    one sample per sequence with its own parameters, handed to MLX without waiting;
//!    then read the tokens of the step before it (the device has run it meanwhile), send
//!    them, and let finished sequences leave the batch ([`Cache::filter`]).
//!
//! A step's inputs are the previous step's sampled tokens as a lazy array, so building
//! and encoding step `j + 1` on the host overlaps the device running step `j`, as
//! mlx-lm's generation loop does. A sequence that finished at step `j` is found out only
//! after step `j + 1` started, which runs its row once more for nothing (and its saved
//! state then covers its last token too). Requests with penalties (repetition, presence,
//! frequency) need every earlier token on the host, so while one is in the batch the
//! engine reads each step before starting the next.
//!
//! So a long prompt delays the others' next token by one chunk at a time, not by its
//! whole prefill, and a request that finishes frees its row at once. Greedy output does
//! not depend on the rest of the batch: padded positions are masked out of attention and
//! recurrent states are per sequence.
//!
//! A failure of a unit of prefill fails the requests in it; a failure (or a panic) of a
//! batched step fails the requests in the batch and the engine goes on with an empty one.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mlx_rs::{ops, Array, Dtype};

mod prefill;

use prefill::Prefill;

use super::prefix::PrefixCache;
use super::protocol::{EngineHandle, EngineStatus, EngineTiming, Event, Submission};
use super::request::{cut_vocab, deliver, lost, sample_one, save_finished, Draw, Request, Step};
use crate::cache::Cache;
use crate::error::{panic_message, Error, Result};
use crate::generate::GenerateOptions;
use crate::model::LanguageModel;

/// Most prompt tokens a request may still have to feed when it joins a batch that has
/// rows decoding: the batch's decode steps feed them one at a time, and the step that
/// feeds the last samples the request's first token. A row more in a step costs far less
/// than a prefill chunk of a few tokens, during which the batch waits.
pub const STEP_FED: usize = 16;

/// How the engine batches and caches.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The device the model runs on; `None` takes MLX's default device (the GPU when
    /// there is one).
    pub device: Option<mlx_rs::Device>,
    /// Most sequences decoded together (the batch size); more requests wait.
    pub max_concurrency: usize,
    /// Most requests waiting for a row; more are refused ([`SubmitError::QueueFull`]).
    ///
    /// [`SubmitError::QueueFull`]: super::protocol::SubmitError::QueueFull
    pub queue_size: usize,
    /// Most prompt tokens run in one prefill chunk, between two decode steps of the batch.
    pub prefill_chunk: usize,
    /// Most tokens (padding included) of one padded batch of first chunks: requests that
    /// start from nothing at the same time are prefilled together up to this many.
    pub prefill_batch_tokens: usize,
    /// Bytes of model states the prefix cache may hold (0 turns it off).
    pub prompt_cache_bytes: usize,
    /// Tokens that end a reply (the tokenizer's end-of-turn and end-of-text tokens).
    pub stop_tokens: Vec<u32>,
    /// Ids at or above this (padding rows of the output layer) are never sampled.
    pub valid_vocab: Option<i32>,
    /// Run a short prompt and two decode steps after loading, before the engine reports
    /// ready: a model's first tokens compile its GPU kernels (MLX's JIT and the custom
    /// kernels; the 2B's first request on a fresh H200 process took 25–33 s), which the
    /// first client would otherwise wait for.
    pub warm_up: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            device: None,
            max_concurrency: 32,
            queue_size: 256,
            prefill_chunk: 512,
            prefill_batch_tokens: 2048,
            prompt_cache_bytes: 1 << 30,
            stop_tokens: Vec::new(),
            valid_vocab: None,
            warm_up: true,
        }
    }
}

impl EngineOptions {
    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.into()));
        if self.max_concurrency == 0 {
            return bad("max_concurrency must be at least 1");
        }
        if self.queue_size == 0 {
            return bad("queue_size must be at least 1");
        }
        if self.prefill_chunk == 0 {
            return bad("prefill_chunk must be at least 1");
        }
        if self.prefill_batch_tokens == 0 {
            return bad("prefill_batch_tokens must be at least 1");
        }
        Ok(())
    }
}

/// Starts the engine on a thread of its own: `load` runs there (MLX arrays belong to the
/// thread that uses them), then requests are served until every [`EngineHandle`] is
/// dropped. The handle answers at once; [`EngineHandle::ready`] turns true once the model
/// is loaded, and if loading fails, [`EngineHandle::stopped`] says why.
pub fn spawn<M, E, F>(load: F, options: EngineOptions) -> Result<(EngineHandle, JoinHandle<()>)>
where
    M: LanguageModel + 'static,
    E: std::fmt::Display,
    F: FnOnce() -> std::result::Result<M, E> + Send + 'static,
{
    options.validate()?;
    let (tx, rx) = sync_channel(options.queue_size);
    let status = Arc::new(EngineStatus::default());
    let handle = EngineHandle::new(tx, status.clone(), options.queue_size);
    let thread = std::thread::Builder::new()
        .name("mlx-lm-engine".into())
        .spawn(move || {
            let device = options.device.clone();
            let shared = status.clone();
            let body = move || serve_requests(load, options, rx, shared);
            let why = match device {
                Some(device) => mlx_rs::with_device(&device, body)
                    .unwrap_or_else(|e| format!("cannot use {device:?}: {e}")),
                None => body(),
            };
            *status.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        })
        .map_err(|e| Error::InvalidArgument(format!("cannot start the engine thread: {e}")))?;
    Ok((handle, thread))
}

/// The engine thread's work: loads the model, then serves until every handle is gone.
/// Returns why it stopped.
fn serve_requests<M, E, F>(
    load: F,
    options: EngineOptions,
    rx: Receiver<Submission>,
    status: Arc<EngineStatus>,
) -> String
where
    M: LanguageModel,
    E: std::fmt::Display,
    F: FnOnce() -> std::result::Result<M, E>,
{
    let model = match catch_unwind(AssertUnwindSafe(load)) {
        Ok(Ok(model)) => model,
        Ok(Err(e)) => return format!("loading the model failed: {e}"),
        Err(p) => return format!("loading the model panicked: {}", panic_message(p.as_ref())),
    };
    if options.warm_up {
        match catch_unwind(AssertUnwindSafe(|| warm_up(&model))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return format!("warming up the model failed: {e}"),
            Err(p) => {
                return format!(
                    "warming up the model panicked: {}",
                    panic_message(p.as_ref())
                )
            }
        }
    }
    status.ready.store(true, Ordering::SeqCst);
    Engine::new(&model, options, rx, status).run();
    "the engine has shut down".into()
}

/// Two greedy tokens after an eight-token prompt through `model`, dropped (see
/// [`EngineOptions::warm_up`]): [`crate::generate`] without its submit thread, which the
/// engine does not use either.
fn warm_up(model: &dyn LanguageModel) -> Result<()> {
    let prompt: Vec<u32> = (0..8).collect();
    let options = GenerateOptions {
        max_tokens: 2,
        submit_thread: Some(false),
        ..GenerateOptions::default()
    };
    for token in crate::generate(model, &prompt, options)? {
        token?;
    }
    Ok(())
}

struct Engine<'m> {
    model: &'m dyn LanguageModel,
    options: EngineOptions,
    rx: Receiver<Submission>,
    status: Arc<EngineStatus>,
    prefix: PrefixCache,
    /// Requests in prefill, in the order they came.
    prefills: VecDeque<Prefill>,
    /// The batch: one row of `cache` per entry of `rows`, in order.
    rows: Vec<Request>,
    cache: Option<Cache>,
    /// Each row's next input (`[rows]`, `uint32`): the token its last step sampled,
    /// perhaps not computed yet.
    next_ids: Option<Array>,
    /// The step started last, whose tokens are not read yet.
    unread: Option<Step>,
    /// Submissions taken from the channel that could not start yet (none normally: the
    /// channel is read only when there is room).
    waiting: VecDeque<Submission>,
    closed: bool,
}

impl<'m> Engine<'m> {
    fn new(
        model: &'m dyn LanguageModel,
        options: EngineOptions,
        rx: Receiver<Submission>,
        status: Arc<EngineStatus>,
    ) -> Engine<'m> {
        Engine {
            model,
            prefix: PrefixCache::new(options.prompt_cache_bytes),
            options,
            rx,
            status,
            prefills: VecDeque::new(),
            rows: Vec::new(),
            cache: None,
            next_ids: None,
            unread: None,
            waiting: VecDeque::new(),
            closed: false,
        }
    }

    fn run(&mut self) {
        loop {
            self.drop_cancelled();
            if !self.admit() {
                return;
            }
            if !self.prefills.is_empty() {
                self.prefill_work();
            }
            if !self.rows.is_empty() {
                let outcome = catch_unwind(AssertUnwindSafe(|| self.decode_step()));
                if let Some(why) = failure(outcome) {
                    self.fail_batch(&why);
                }
            }
            self.publish();
        }
    }

    /// Updates the counters the HTTP side reads.
    fn publish(&self) {
        let active = self.rows.len() + self.prefills.len();
        self.status.active.store(active, Ordering::SeqCst);
        self.status
            .prefix_bytes
            .store(self.prefix.bytes(), Ordering::SeqCst);
    }

    /// Takes waiting requests into prefill while the batch has room; blocks while there
    /// is no work at all. Returns `false` when the engine should stop (no handle is left
    /// and no work remains).
    fn admit(&mut self) -> bool {
        loop {
            let idle = self.prefills.is_empty() && self.rows.is_empty();
            if self.rows.len() + self.prefills.len() >= self.options.max_concurrency {
                return true;
            }
            let next = match self.waiting.pop_front() {
                Some(s) => Some(s),
                None if self.closed => None,
                None if idle => {
                    // Nothing to do: give memory back and wait.
                    let _ = mlx_rs::memory::clear_cache();
                    self.publish();
                    match self.rx.recv() {
                        Ok(s) => Some(s),
                        Err(_) => {
                            self.closed = true;
                            None
                        }
                    }
                }
                None => match self.rx.try_recv() {
                    Ok(s) => Some(s),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        self.closed = true;
                        None
                    }
                },
            };
            let Some(submission) = next else {
                return !(self.closed && idle);
            };
            self.status.waiting.fetch_sub(1, Ordering::SeqCst);
            if !submission.events.is_closed() {
                self.start(submission);
            }
        }
    }

    /// Starts the prefill of a submission from the longest saved prefix of its prompt.
    fn start(&mut self, submission: Submission) {
        if submission.prompt.is_empty() {
            let _ = submission
                .events
                .send(Event::Failed("the prompt is empty".into()));
            return;
        }
        let events = submission.events.clone();
        let request = match Request::new(submission) {
            Ok(r) => r,
            Err(e) => {
                let _ = events.send(Event::Failed(e.to_string()));
                return;
            }
        };
        let (cache, done) = self
            .prefix
            .lookup(&request.tokens)
            .unwrap_or_else(|| (self.model.new_cache(), 0));
        request.send(Event::Prefilled {
            prompt_tokens: request.prompt_len,
            cached_tokens: done,
        });
        self.prefills.push_back(Prefill {
            request,
            cache,
            done,
        });
    }

    /// Adds a request to the batch: its cache as a new row, `next` (`[1]`) its next input.
    /// If the batch cannot take it, that request fails and the batch goes on as it was.
    fn join(&mut self, request: Request, cache: Cache, next: Array) {
        let joined = || -> Result<(Cache, Array)> {
            let ids = match &self.next_ids {
                Some(ids) => ops::concatenate_axis(&[ids, &next], 0)?,
                None => next,
            };
            let cache = match &self.cache {
                Some(batch) => Cache::merge(&[batch.clone(), cache])?,
                None => cache,
            };
            Ok((cache, ids))
        };
        match joined() {
            Ok((cache, ids)) => {
                self.cache = Some(cache);
                self.next_ids = Some(ids);
                self.rows.push(request);
            }
            Err(e) => request.send(Event::Failed(e.to_string())),
        }
    }

    /// Starts one decode step of the whole batch, then reads and sends the tokens of the
    /// step before it (all of them first when a row has penalties).
    fn decode_step(&mut self) -> Result<()> {
        let started = Instant::now();
        if self.rows.iter().any(|r| r.history > 0) {
            self.settle()?;
        }
        if self.rows.is_empty() {
            return Ok(());
        }
        let b = self.rows.len();
        let ids = self.next_ids.as_ref().ok_or_else(lost)?;
        let ids = ids.reshape(&[b as i32, 1])?;
        let cache = self.cache.as_mut().ok_or_else(lost)?;
        let logits = self.model.forward_last(&ids, cache)?;
        // Rows fed a prompt token that is not their last sample nothing of their own.
        let mut in_prompt: Vec<bool> = self.rows.iter().map(|r| r.prompt_left() > 1).collect();
        if !in_prompt.contains(&true) {
            in_prompt.clear();
        }
        let step = Step {
            draws: self.sample_batch(&logits, &in_prompt)?,
            rows: b,
            in_prompt,
        };
        let mut arrays: Vec<&Array> = step.draws.iter().flat_map(Draw::arrays).collect();
        let cache = self.cache.as_ref().ok_or_else(lost)?;
        arrays.extend(cache.arrays());
        mlx_rs::async_eval(&arrays)?;
        for r in &mut self.rows {
            r.fed += 1;
        }
        self.next_ids = Some(self.next_inputs(&step)?);
        if let Some(previous) = self.unread.replace(step) {
            self.finish_step(previous)?;
        }
        let t = &self.status.timing;
        EngineTiming::add(&t.steps, 1, &t.step_ns, started.elapsed());
        t.step_rows.fetch_add(b as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The rows' inputs of the step after `step` (just started): the tokens it samples,
    /// or the next prompt token for rows still in their prompt.
    fn next_inputs(&self, step: &Step) -> Result<Array> {
        let sampled = step.tokens()?;
        if step.in_prompt.is_empty() {
            return Ok(sampled);
        }
        // A row fed a prompt token that was not its last has one more to feed.
        let (keep, forced): (Vec<u32>, Vec<u32>) = self
            .rows
            .iter()
            .zip(&step.in_prompt)
            .map(|(r, &fed)| match fed {
                true => (0, r.next_input()),
                false => (1, 0),
            })
            .unzip();
        let b = self.rows.len() as i32;
        let keep = Array::from_slice(&keep, &[b])?.astype(Dtype::Bool)?;
        let forced = Array::from_slice(&forced, &[b])?;
        Ok(ops::r#where(&keep, &sampled, &forced)?)
    }

    /// Reads and sends the step in flight, if any.
    fn settle(&mut self) -> Result<()> {
        match self.unread.take() {
            Some(step) => self.finish_step(step),
            None => Ok(()),
        }
    }

    /// Sends the tokens of `step` (rows `0..step.rows` of the batch); the rows that are
    /// finished leave.
    fn finish_step(&mut self, step: Step) -> Result<()> {
        let events = step.read()?;
        let mut finished = Vec::new();
        for (i, event) in events.into_iter().enumerate() {
            if step.in_prompt.get(i) == Some(&true) {
                continue;
            }
            let row = self.rows.get_mut(i).ok_or_else(lost)?;
            if deliver(row, event, &self.options.stop_tokens) {
                finished.push(i);
            }
        }
        if finished.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        if self.options.prompt_cache_bytes > 0 {
            let cache = self.cache.as_ref().ok_or_else(lost)?;
            let done: Vec<usize> = finished
                .iter()
                .copied()
                .filter(|&i| self.rows[i].finished)
                .collect();
            let states = done
                .iter()
                .map(|&i| cache.extract(i as i32))
                .collect::<Result<Vec<_>>>()?;
            // Evaluated now, all in one go: left lazy, a row's gather would keep the whole
            // batch's buffers alive while the prefix cache counts one row's bytes.
            mlx_rs::eval(&states.iter().flat_map(Cache::arrays).collect::<Vec<_>>())?;
            for (i, one) in done.into_iter().zip(states) {
                save_finished(&mut self.prefix, &self.rows[i], one);
            }
        }
        self.remove_rows(&finished)?;
        let t = &self.status.timing;
        let n = finished.len() as u64;
        EngineTiming::add(&t.leaves, n, &t.leave_ns, started.elapsed());
        Ok(())
    }

    /// Takes the rows `gone` (ascending indices) out of the batch: its requests, cache
    /// rows, next inputs and the step in flight.
    fn remove_rows(&mut self, gone: &[usize]) -> Result<()> {
        let keep: Vec<i32> = (0..self.rows.len())
            .filter(|i| !gone.contains(i))
            .map(|i| i as i32)
            .collect();
        let mut i = 0;
        self.rows.retain(|_| {
            let kept = !gone.contains(&i);
            i += 1;
            kept
        });
        let (cache, ids, step) = (self.cache.take(), self.next_ids.take(), self.unread.take());
        if keep.is_empty() {
            return Ok(());
        }
        let idx = Array::from_slice(&keep, &[keep.len() as i32])?;
        self.cache = Some(cache.ok_or_else(lost)?.filter(&keep)?);
        self.next_ids = Some(ids.ok_or_else(lost)?.take_axis(&idx, 0)?);
        self.unread = match step {
            Some(step) => step.retain(&keep)?,
            None => None,
        };
        Ok(())
    }

    /// Fails every request of the batch with `why` and empties it.
    fn fail_batch(&mut self, why: &str) {
        for r in self.rows.drain(..) {
            r.send(Event::Failed(why.to_string()));
        }
        self.cache = None;
        self.next_ids = None;
        self.unread = None;
    }

    /// Samples every row of `logits` (`[B, vocab]`): one arg-max over the batch when every
    /// row is greedy without penalties or log-probabilities (the usual case), else row by
    /// row with each request's sampler. Rows marked in `in_prompt` (empty: none) are
    /// still in their prompt: what they draw is dropped, so it is an arg-max, which leaves
    /// their sampler (its random state, its penalties) as it was.
    fn sample_batch(&mut self, logits: &Array, in_prompt: &[bool]) -> Result<Vec<Draw>> {
        let skipped = |i: usize| in_prompt.get(i) == Some(&true);
        let plain = self.rows.iter().enumerate().all(|(i, r)| {
            skipped(i)
                || (r.sampler.params().temperature == 0.0 && r.history == 0 && r.logprobs.is_none())
        });
        if plain {
            let logits = cut_vocab(logits, self.options.valid_vocab)?;
            let token = ops::argmax_axis(&logits, -1, false)?.astype(Dtype::Uint32)?;
            return Ok(vec![Draw {
                token,
                logprob: None,
                top: None,
            }]);
        }
        let b = self.rows.len() as i32;
        let v = logits.try_dim(-1)?;
        let mut draws = Vec::with_capacity(self.rows.len());
        for i in 0..b {
            let row = ops::slice(logits, &[i, 0], &[i + 1, v], &[1, 1])?;
            let valid = self.options.valid_vocab;
            if skipped(i as usize) {
                let token = ops::argmax_axis(&row, -1, false)?.astype(Dtype::Uint32)?;
                draws.push(Draw {
                    token,
                    logprob: None,
                    top: None,
                });
                continue;
            }
            let request = &mut self.rows[i as usize];
            draws.push(sample_one(request, &row, valid)?);
        }
        Ok(draws)
    }

    /// Removes requests whose client went away: the one in prefill and rows of the
    /// batch.
    fn drop_cancelled(&mut self) {
        self.prefills.retain(|p| !p.request.cancelled());
        let gone: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].cancelled())
            .collect();
        if gone.is_empty() {
            return;
        }
        if let Err(e) = self.remove_rows(&gone) {
            self.fail_batch(&e.to_string());
        }
    }
}

/// The message of a failed or panicked step, `None` when it succeeded.
fn failure(outcome: std::thread::Result<Result<()>>) -> Option<String> {
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(p) => Some(format!("internal error: {}", panic_message(p.as_ref()))),
    }
}
