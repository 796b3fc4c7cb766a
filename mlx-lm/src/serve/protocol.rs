//! What the HTTP side and the engine say to each other.
//!
//! The HTTP side turns an OpenAI request into a [`Submission`] (the prompt already rendered
//! and tokenized, every value checked) and hands it to the engine through an
//! [`EngineHandle`]. The engine answers on the submission's channel with [`Event`]s: one
//! [`Event::Prefilled`], then one [`Event::Token`] per sampled token, then one
//! [`Event::Finished`] (or one [`Event::Failed`]). Dropping the receiver cancels the
//! request: the engine sees the closed channel before its next step and frees the slot.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::sampling::SamplingParams;

/// One generation request, ready for the engine.
#[derive(Debug)]
pub struct Submission {
    /// The prompt's token ids (template applied).
    pub prompt: Vec<u32>,
    /// Prompt lengths after which the engine saves the state in its prefix cache (besides
    /// the end of the prompt): for a chat, the conversation before the reply's opening,
    /// which the next turn's prompt starts with even when the template renders earlier
    /// replies otherwise than they were prompted (Qwen 3.5 drops the empty `<think>`
    /// block of earlier turns).
    pub save_at: Vec<usize>,
    /// Most tokens to sample (at least 1).
    pub max_tokens: usize,
    /// How to sample (validated).
    pub sampling: SamplingParams,
    /// How many alternatives to report with each token's log-probability: `None` reports
    /// no log-probabilities, `Some(0)` only the chosen token's.
    pub logprobs: Option<usize>,
    /// Where the engine sends this request's events.
    pub events: UnboundedSender<Event>,
}

/// A sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// The token id.
    pub id: u32,
    /// Its log-probability (natural log, after the penalties, before the sampling filters,
    /// as OpenAI reports it), when the request asked for log-probabilities.
    pub logprob: Option<f32>,
    /// The most likely tokens at this position with their log-probabilities, most likely
    /// first (as many as asked for).
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Why the engine stopped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token was sampled (it is the last [`Event::Token`]).
    Stop,
    /// `max_tokens` tokens were sampled.
    Length,
}

/// What the engine reports about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The prompt is in the cache; `cached_tokens` of its `prompt_tokens` came from the
    /// prefix cache instead of being computed.
    Prefilled {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Tokens of the prompt taken from the prefix cache.
        cached_tokens: usize,
    },
    /// One sampled token.
    Token(TokenEvent),
    /// The request is done; no more events follow.
    Finished(Finish),
    /// The request failed (the message says why); no more events follow.
    Failed(String),
}

/// Why a submission was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue of waiting requests is full (answer 429).
    #[error("the server is busy: {0} requests are waiting; retry later")]
    QueueFull(usize),
    /// The engine has stopped (answer 503).
    #[error("the model engine has stopped: {0}")]
    Stopped(String),
}

/// The engine's state as the HTTP side sees it.
#[derive(Debug, Default)]
pub struct EngineStatus {
    /// The model is loaded and the engine takes requests.
    pub ready: AtomicBool,
    /// Requests submitted and not yet taken into the batch.
    pub waiting: AtomicUsize,
    /// Requests in the batch (prefilling or decoding).
    pub active: AtomicUsize,
    /// Bytes of model states held by the prefix cache.
    pub prefix_bytes: AtomicUsize,
    /// Why the engine stopped, once it has.
    pub stopped: std::sync::Mutex<Option<String>>,
    /// Where the engine thread's time went (since it started).
    pub timing: EngineTiming,
}

/// Cumulative time of the engine thread's kinds of work and their counts: what `GET
/// /health` reports under `"engine"`, so that a benchmark can tell the batched decode
/// steps from the work around them (prefill, joins, leaves).
#[derive(Debug, Default)]
pub struct EngineTiming {
    /// Prompt chunks run (newcomers' prefill).
    pub prefill_chunks: AtomicU64,
    /// Nanoseconds the engine spent on them: building each chunk and waiting for the chunk
    /// before it (a chunk runs on the device while the engine goes on).
    pub prefill_ns: AtomicU64,
    /// Newcomers taken into the batch.
    pub joins: AtomicU64,
    /// Nanoseconds joining them (each one's last prompt token, run alone for its first
    /// token, and the merge of its state into the batch's).
    pub join_ns: AtomicU64,
    /// Batched decode steps.
    pub steps: AtomicU64,
    /// Rows over all decode steps (the mean batch is `step_rows / steps`).
    pub step_rows: AtomicU64,
    /// Nanoseconds in the decode steps (build, evaluation, delivery of the tokens).
    pub step_ns: AtomicU64,
    /// Requests that left the batch.
    pub leaves: AtomicU64,
    /// Nanoseconds removing them (saving their state in the prefix cache, the batch's
    /// gather of the rows that stay).
    pub leave_ns: AtomicU64,
}

impl EngineTiming {
    /// Adds `n` pieces of work that took `took` together: `count` += `n`, `nanos` +=
    /// `took`.
    pub fn add(count: &AtomicU64, n: u64, nanos: &AtomicU64, took: Duration) {
        count.fetch_add(n, Ordering::Relaxed);
        nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The figures as JSON: counts, and seconds with 3 decimals.
    pub fn to_json(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = |a: &AtomicU64| (a.load(Ordering::Relaxed) as f64 / 1e6).round() / 1e3;
        serde_json::json!({
            "prefill_chunks": n(&self.prefill_chunks),
            "prefill_s": s(&self.prefill_ns),
            "joins": n(&self.joins),
            "join_s": s(&self.join_ns),
            "steps": n(&self.steps),
            "step_rows": n(&self.step_rows),
            "step_s": s(&self.step_ns),
            "leaves": n(&self.leaves),
            "leave_s": s(&self.leave_ns),
        })
    }
}

/// The HTTP side's end of the engine: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct EngineHandle {
    /// Submissions to the engine thread (bounded: the queue).
    pub(crate) tx: SyncSender<Submission>,
    /// Shared state.
    pub(crate) status: Arc<EngineStatus>,
    /// The bound of the queue.
    pub(crate) queue_size: usize,
}

impl EngineHandle {
    /// A handle over a channel to an engine (or to a test's stand-in for one): `tx` takes
    /// at most `queue_size` waiting submissions.
    pub fn new(tx: SyncSender<Submission>, status: Arc<EngineStatus>, queue_size: usize) -> Self {
        EngineHandle {
            tx,
            status,
            queue_size,
        }
    }

    /// Queues a submission without waiting.
    pub fn submit(&self, submission: Submission) -> Result<(), SubmitError> {
        if let Some(why) = self.stopped() {
            return Err(SubmitError::Stopped(why));
        }
        match self.tx.try_send(submission) {
            Ok(()) => {
                self.status.waiting.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(SubmitError::QueueFull(self.queue_size)),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped(
                self.stopped().unwrap_or_else(|| "it exited".into()),
            )),
        }
    }

    /// Whether the model is loaded and requests are taken.
    pub fn ready(&self) -> bool {
        self.status.ready.load(Ordering::SeqCst) && self.stopped().is_none()
    }

    /// Why the engine stopped, if it has.
    pub fn stopped(&self) -> Option<String> {
        self.status
            .stopped
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The shared state (queue length, batch size).
    pub fn status(&self) -> &EngineStatus {
        &self.status
    }
}
