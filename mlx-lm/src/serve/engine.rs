//! The engine: the thread that owns the model and runs every request's tokens.
//!
//! Each turn of its loop does, in order:
//! 1. drop the sequences whose client went away (their event channel is closed);
//! 2. take one waiting request into prefill when the batch has room, starting from the
//!    longest saved state of the [prefix cache](super::prefix) that its prompt extends;
//! 3. run one chunk (at most [`EngineOptions::prefill_chunk`] tokens) of the request in
//!    prefill, alone (a batch of one, no padding); after the last chunk its first token
//!    is sampled and it joins the batch ([`Cache::merge`]: caches of different lengths
//!    are padded on the left, each sequence keeps its own positions);
//! 4. run one decode step of the whole batch: one forward over one token per sequence,
//!    one sample per sequence with its own parameters, one evaluation; finished
//!    sequences leave the batch ([`Cache::filter`]).
//!
//! So a long prompt delays the others' next token by one chunk at a time, not by its
//! whole prefill, and a request that finishes frees its row at once. Greedy output does
//! not depend on the rest of the batch: padded positions are masked out of attention and
//! recurrent states are per sequence.
//!
//! A failure of one request's prefill fails that request; a failure (or a panic) of a
//! batched step fails the requests in the batch and the engine goes on with an empty one.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mlx_rs::{ops, Array, Dtype};
use tokio::sync::mpsc::UnboundedSender;

use super::prefix::PrefixCache;
use super::protocol::{
    EngineHandle, EngineStatus, EngineTiming, Event, Finish, Submission, TokenEvent,
};
use crate::cache::Cache;
use crate::error::{panic_message, Error, Result};
use crate::model::LanguageModel;
use crate::sampling::Sampler;

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
    /// Bytes of model states the prefix cache may hold (0 turns it off).
    pub prompt_cache_bytes: usize,
    /// Tokens that end a reply (the tokenizer's end-of-turn and end-of-text tokens).
    pub stop_tokens: Vec<u32>,
    /// Ids at or above this (padding rows of the output layer) are never sampled.
    pub valid_vocab: Option<i32>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            device: None,
            max_concurrency: 32,
            queue_size: 256,
            prefill_chunk: 512,
            prompt_cache_bytes: 1 << 30,
            stop_tokens: Vec::new(),
            valid_vocab: None,
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
    status.ready.store(true, Ordering::SeqCst);
    Engine::new(&model, options, rx, status).run();
    "the engine has shut down".into()
}

/// A request in prefill.
struct Prefill {
    request: Request,
    /// The state so far (a batch of one).
    cache: Cache,
    /// Prompt tokens already in `cache`.
    done: usize,
}

/// A request's own state, in prefill or in the batch.
struct Request {
    events: UnboundedSender<Event>,
    sampler: Sampler,
    logprobs: Option<usize>,
    max_tokens: usize,
    prompt_len: usize,
    /// The prompt, then every sampled token.
    tokens: Vec<u32>,
    /// How many recent tokens the penalties look at (0: no penalties).
    history: usize,
    /// Prompt lengths at which to save the state (ascending).
    save_at: Vec<usize>,
    /// Ended by a stop token or `max_tokens` (not by its client going away).
    finished: bool,
}

impl Request {
    fn new(s: Submission) -> Result<Request> {
        let sampler = Sampler::new(s.sampling)?;
        let history = sampler.params().history_len();
        Ok(Request {
            events: s.events,
            logprobs: s.logprobs,
            max_tokens: s.max_tokens.max(1),
            prompt_len: s.prompt.len(),
            tokens: s.prompt,
            history,
            sampler,
            finished: false,
            save_at: {
                let mut v = s.save_at;
                v.sort_unstable();
                v
            },
        })
    }

    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    fn cancelled(&self) -> bool {
        self.events.is_closed()
    }

    /// Sends an event; a closed channel is noticed at the next step.
    fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// The last token fed to the model next.
    fn next_input(&self) -> u32 {
        *self.tokens.last().expect("a request has a prompt")
    }
}

/// What sampling one row builds (lazy): the token and, when asked, log-probabilities.
struct Draw {
    token: Array,
    logprob: Option<Array>,
    top: Option<(Array, Array)>,
}

struct Engine<'m> {
    model: &'m dyn LanguageModel,
    options: EngineOptions,
    rx: Receiver<Submission>,
    status: Arc<EngineStatus>,
    prefix: PrefixCache,
    prefill: Option<Prefill>,
    /// The batch: one row of `cache` per entry of `rows`, in order.
    rows: Vec<Request>,
    cache: Option<Cache>,
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
            prefill: None,
            rows: Vec::new(),
            cache: None,
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
            if self.prefill.is_some() {
                let outcome = catch_unwind(AssertUnwindSafe(|| self.prefill_chunk()));
                if let Some(why) = failure(outcome) {
                    if let Some(p) = self.prefill.take() {
                        p.request.send(Event::Failed(why));
                    }
                }
            }
            if !self.rows.is_empty() {
                let outcome = catch_unwind(AssertUnwindSafe(|| self.decode_step()));
                if let Some(why) = failure(outcome) {
                    for r in self.rows.drain(..) {
                        r.send(Event::Failed(why.clone()));
                    }
                    self.cache = None;
                }
            }
            self.publish();
        }
    }

    /// Updates the counters the HTTP side reads.
    fn publish(&self) {
        let active = self.rows.len() + usize::from(self.prefill.is_some());
        self.status.active.store(active, Ordering::SeqCst);
        self.status
            .prefix_bytes
            .store(self.prefix.bytes(), Ordering::SeqCst);
    }

    /// Takes the next request into prefill when there is room; blocks while there is no
    /// work at all. Returns `false` when the engine should stop (no handle is left and no
    /// work remains).
    fn admit(&mut self) -> bool {
        let idle = self.prefill.is_none() && self.rows.is_empty();
        if self.prefill.is_some() || self.rows.len() >= self.options.max_concurrency {
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
        if submission.events.is_closed() {
            return true;
        }
        self.start(submission);
        true
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
        self.prefill = Some(Prefill {
            request,
            cache,
            done,
        });
    }

    /// Runs the next chunk of the request in prefill. All of the prompt but its last
    /// token goes through in chunks (the state there is saved in the prefix cache); the
    /// last token then runs alone and gives the first sampled token, and the request
    /// joins the batch.
    fn prefill_chunk(&mut self) -> Result<()> {
        let Some(p) = self.prefill.as_mut() else {
            return Ok(());
        };
        let head = p.request.prompt_len - 1;
        if p.done < head {
            let started = Instant::now();
            let mut end = head.min(p.done + self.options.prefill_chunk);
            if let Some(&at) = p
                .request
                .save_at
                .iter()
                .find(|&&at| at > p.done && at < end)
            {
                end = at;
            }
            let chunk = &p.request.tokens[p.done..end];
            let ids = Array::from_slice(chunk, &[1, chunk.len() as i32])?;
            self.model.prefill(&ids, &mut p.cache)?;
            mlx_rs::eval(&p.cache.arrays())?;
            p.done = end;
            if p.done == head || p.request.save_at.contains(&end) {
                self.prefix
                    .insert(p.request.tokens[..end].to_vec(), p.cache.clone());
            }
            let t = &self.status.timing;
            EngineTiming::add(&t.prefill_chunks, 1, &t.prefill_ns, started.elapsed());
            return Ok(());
        }
        let Some(mut p) = self.prefill.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let ids = Array::from_slice(&[p.request.next_input()], &[1, 1])?;
        let logits = self.model.forward_last(&ids, &mut p.cache)?;
        let draw = sample_one(&mut p.request, &logits, self.options.valid_vocab)?;
        let mut arrays = draw.arrays();
        arrays.extend(p.cache.arrays());
        mlx_rs::eval(&arrays)?;
        let done = deliver(&mut p.request, draw.read()?, &self.options.stop_tokens);
        if done {
            if self.options.prompt_cache_bytes > 0 && p.request.finished {
                save_finished(&mut self.prefix, &p.request, p.cache);
            }
            return Ok(());
        }
        self.cache = Some(match self.cache.take() {
            Some(batch) => Cache::merge(&[batch, p.cache])?,
            None => p.cache,
        });
        self.rows.push(p.request);
        let t = &self.status.timing;
        EngineTiming::add(&t.joins, 1, &t.join_ns, started.elapsed());
        Ok(())
    }

    /// One decode step of the whole batch.
    fn decode_step(&mut self) -> Result<()> {
        let Some(cache) = self.cache.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        let b = self.rows.len() as i32;
        let inputs: Vec<u32> = self.rows.iter().map(Request::next_input).collect();
        let ids = Array::from_slice(&inputs, &[b, 1])?;
        let logits = self.model.forward_last(&ids, cache)?;
        let draws = self.sample_batch(&logits)?;
        let mut arrays: Vec<&Array> = draws.iter().flat_map(Draw::arrays).collect();
        let cache = self.cache.as_ref().ok_or_else(lost)?;
        arrays.extend(cache.arrays());
        mlx_rs::eval(&arrays)?;
        let mut keep = Vec::with_capacity(self.rows.len());
        let mut finished = Vec::new();
        let plain = draws.len() == 1 && self.rows.len() > 1;
        let ids = if plain {
            draws[0].token.to_vec::<u32>()?
        } else {
            Vec::new()
        };
        for i in 0..self.rows.len() {
            let event = if plain {
                let id = *ids.get(i).ok_or_else(lost)?;
                TokenEvent {
                    id,
                    logprob: None,
                    top_logprobs: Vec::new(),
                }
            } else {
                draws.get(i).ok_or_else(lost)?.read()?
            };
            if deliver(&mut self.rows[i], event, &self.options.stop_tokens) {
                finished.push(i);
            } else {
                keep.push(i as i32);
            }
        }
        let t = &self.status.timing;
        EngineTiming::add(&t.steps, 1, &t.step_ns, started.elapsed());
        t.step_rows.fetch_add(b as u64, Ordering::Relaxed);
        if finished.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let cache = self.cache.take().ok_or_else(lost)?;
        for &i in &finished {
            if self.options.prompt_cache_bytes > 0 && self.rows[i].finished {
                let one = cache.extract(i as i32)?;
                // Evaluated now: left lazy, the row's gather would keep the whole batch's
                // buffers alive while the prefix cache counts one row's bytes.
                mlx_rs::eval(&one.arrays())?;
                save_finished(&mut self.prefix, &self.rows[i], one);
            }
        }
        let mut i = 0;
        self.rows.retain(|_| {
            let kept = !finished.contains(&i);
            i += 1;
            kept
        });
        self.cache = if keep.is_empty() {
            None
        } else {
            Some(cache.filter(&keep)?)
        };
        let t = &self.status.timing;
        let n = finished.len() as u64;
        EngineTiming::add(&t.leaves, n, &t.leave_ns, started.elapsed());
        Ok(())
    }

    /// Samples every row of `logits` (`[B, vocab]`): one arg-max over the batch when every
    /// row is greedy without penalties or log-probabilities (the usual case), else row by
    /// row with each request's sampler.
    fn sample_batch(&mut self, logits: &Array) -> Result<Vec<Draw>> {
        let plain = self.rows.iter().all(|r| {
            r.sampler.params().temperature == 0.0 && r.history == 0 && r.logprobs.is_none()
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
            let request = &mut self.rows[i as usize];
            draws.push(sample_one(request, &row, valid)?);
        }
        Ok(draws)
    }

    /// Removes requests whose client went away: the one in prefill and rows of the
    /// batch.
    fn drop_cancelled(&mut self) {
        if self.prefill.as_ref().is_some_and(|p| p.request.cancelled()) {
            self.prefill = None;
        }
        if !self.rows.iter().any(Request::cancelled) {
            return;
        }
        let keep: Vec<i32> = (0..self.rows.len() as i32)
            .filter(|&i| !self.rows[i as usize].cancelled())
            .collect();
        self.rows.retain(|r| !r.cancelled());
        self.cache = match (self.cache.take(), keep.is_empty()) {
            (Some(cache), false) => match cache.filter(&keep) {
                Ok(c) => Some(c),
                Err(e) => {
                    for r in self.rows.drain(..) {
                        r.send(Event::Failed(e.to_string()));
                    }
                    None
                }
            },
            _ => None,
        };
    }
}

/// Saves the state of a finished request (all its tokens but the last, which was never
/// fed) in the prefix cache.
fn save_finished(prefix: &mut PrefixCache, request: &Request, cache: Cache) {
    if request.tokens.len() >= 2 {
        prefix.insert(request.tokens[..request.tokens.len() - 1].to_vec(), cache);
    }
}

/// Records a sampled token and sends it to the client; `true` when the request is
/// finished (a stop token, `max_tokens`, or a client gone).
fn deliver(request: &mut Request, event: TokenEvent, stop_tokens: &[u32]) -> bool {
    let id = event.id;
    request.tokens.push(id);
    request.send(Event::Token(event));
    let finish = if stop_tokens.contains(&id) {
        Some(Finish::Stop)
    } else if request.generated() >= request.max_tokens {
        Some(Finish::Length)
    } else {
        None
    };
    if let Some(f) = finish {
        request.send(Event::Finished(f));
        request.finished = true;
        return true;
    }
    request.cancelled()
}

impl Draw {
    /// The host values of a one-row draw (evaluated).
    fn read(&self) -> Result<TokenEvent> {
        let id = *self.token.to_vec::<u32>()?.first().ok_or_else(lost)?;
        let logprob = match &self.logprob {
            Some(lp) => Some(*lp.to_vec::<f32>()?.first().ok_or_else(lost)?),
            None => None,
        };
        let top_logprobs = match &self.top {
            Some((idx, vals)) => {
                let mut top: Vec<(u32, f32)> = idx
                    .to_vec::<u32>()?
                    .into_iter()
                    .zip(vals.to_vec::<f32>()?)
                    .collect();
                top.sort_by(|a, b| b.1.total_cmp(&a.1));
                top
            }
            None => Vec::new(),
        };
        Ok(TokenEvent {
            id,
            logprob,
            top_logprobs,
        })
    }

    fn arrays(&self) -> Vec<&Array> {
        let mut v = vec![&self.token];
        v.extend(self.logprob.iter());
        if let Some((i, l)) = &self.top {
            v.push(i);
            v.push(l);
        }
        v
    }
}

/// Samples one row (`[1, vocab]`) with the request's sampler and, when asked, its
/// log-probabilities (after the penalties, before the filters).
fn sample_one(request: &mut Request, logits: &Array, valid: Option<i32>) -> Result<Draw> {
    let history = if request.history > 0 {
        let start = request.tokens.len().saturating_sub(request.history);
        let recent = &request.tokens[start..];
        Some(Array::from_slice(recent, &[recent.len() as i32])?)
    } else {
        None
    };
    let token = request.sampler.sample(logits, history.as_ref(), valid)?;
    let Some(k) = request.logprobs else {
        return Ok(Draw {
            token,
            logprob: None,
            top: None,
        });
    };
    let processed = request
        .sampler
        .process_logits(logits, history.as_ref(), valid)?;
    let logprobs = processed.subtract(&ops::logsumexp_axis(&processed, -1, true)?)?;
    let chosen = ops::take_along_axis(&logprobs, &token.reshape(&[1, 1])?, -1)?;
    let top = if k > 0 {
        let v = logprobs.try_dim(-1)?;
        let k = (k as i32).min(v);
        let order = ops::argpartition_axis(&logprobs.multiply(&Array::scalar(-1f32))?, k - 1, -1)?;
        let idx = ops::slice(&order, &[0, 0], &[1, k], &[1, 1])?;
        let vals = ops::take_along_axis(&logprobs, &idx, -1)?;
        Some((idx.astype(Dtype::Uint32)?, vals))
    } else {
        None
    };
    Ok(Draw {
        token,
        logprob: Some(chosen),
        top,
    })
}

/// `logits` without the columns at or above `valid` (padding rows of the output layer).
fn cut_vocab(logits: &Array, valid: Option<i32>) -> Result<Array> {
    let (b, v) = (logits.try_dim(0)?, logits.try_dim(-1)?);
    match valid {
        Some(n) if n > 0 && n < v => Ok(ops::slice(logits, &[0, 0], &[b, n], &[1, 1])?),
        _ => Ok(logits.clone()),
    }
}

fn lost() -> Error {
    Error::InvalidArgument("engine: a step's result is missing".into())
}

/// The message of a failed or panicked step, `None` when it succeeded.
fn failure(outcome: std::thread::Result<Result<()>>) -> Option<String> {
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(p) => Some(format!("internal error: {}", panic_message(p.as_ref()))),
    }
}
