//! A thread that hands decode steps to MLX, so that building the next step's graph (on the
//! generating thread) and MLX's walk and encoding of the current one (here) overlap.
//!
//! On a fast GPU a decode step is bound by the host: building the graph of one token and
//! handing it to MLX (`async_eval`, which walks the graph and, on CUDA, encodes every
//! kernel on the calling thread) each take about as long as the GPU needs for the token.
//! With both on one thread they add up; here they run side by side.
//!
//! The protocol keeps all of MLX's evaluation on this thread while it runs: the generating
//! thread only builds graphs (MLX allows building graphs that use arrays another thread is
//! evaluating; its CPU streams do the same). It sends the step that samples token `j`; this
//! thread starts it, then reads token `j − 1` (waiting for the device) and sends that id
//! back. So the generating thread gets token `j − 1` once step `j` is on its way, and
//! builds step `j + 1` while this thread starts step `j`.
//!
//! MLX 0.32's streams belong to the thread that made them, except the ones made with
//! `new_thread_unsafe`, which any thread may evaluate on as long as no two do at once. The
//! steps are built on such a stream, lent for the generation ([`LentStream`]).
//!
//! When the [`Submitter`] is dropped the thread finishes the step in hand and goes back to
//! a pool of idle submit threads (a thread's first steps cost MLX more on CUDA, see
//! [`Worker`]), and the lent stream is synchronized when it goes back, so MLX work on the
//! generating thread never races with either afterwards.

use crate::error::{Error, Result};
use mlx_rs::{Array, Device, DeviceType, Stream};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// What the generating thread sends.
enum Message {
    /// Start these arrays (the sampled token first), then report the previous token.
    Step(Vec<Array>),
    /// Report the last token started (there is no next step).
    Flush,
}

/// What this thread sends back: a token id, and the time `async_eval` took for the steps
/// started since the previous reply.
type Reply = Result<(u32, Duration)>;

/// The submitting thread (lent from [`IDLE_WORKERS`] for one generation) and its two
/// channels.
pub(crate) struct Submitter {
    steps: Option<mpsc::Sender<Message>>,
    replies: mpsc::Receiver<Reply>,
    worker: Option<Worker>,
}

/// One generation's channels, as the worker thread receives them.
struct Job {
    inbox: mpsc::Receiver<Message>,
    outbox: mpsc::Sender<Reply>,
}

/// A submit thread that outlives generations: it serves one [`Job`] after another and
/// says when each is over. Made once and kept, because MLX 0.32's CUDA backend keeps per
/// thread what a step needs (cuBLAS and cuDNN handles, cuDNN attention graphs, the
/// stream's command encoder): a new thread per generation rebuilt them all, and on an
/// H200 Qwen3-0.6B's first token came 87–135 ms after a 2,047-token prompt that way
/// against 16 ms with no submit thread.
struct Worker {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<()>,
}

/// Submit threads not serving a generation now.
static IDLE_WORKERS: Mutex<Vec<Worker>> = Mutex::new(Vec::new());

impl Worker {
    /// An idle worker, or a new one.
    fn lend() -> Result<Worker> {
        let idle = IDLE_WORKERS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(w) = idle {
            return Ok(w);
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let (finished, done) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("mlx-lm-submit".into())
            .spawn(move || {
                for job in queue {
                    serve(job.inbox, job.outbox);
                    if finished.send(()).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| Error::InvalidArgument(format!("cannot start the submit thread: {e}")))?;
        Ok(Worker { jobs, done })
    }
}

impl Submitter {
    /// Starts serving a generation on a submit thread.
    pub(crate) fn start() -> Result<Submitter> {
        let (steps, inbox) = mpsc::channel::<Message>();
        let (outbox, replies) = mpsc::channel::<Reply>();
        let worker = Worker::lend()?;
        worker
            .jobs
            .send(Job { inbox, outbox })
            .map_err(|_| stopped())?;
        Ok(Submitter {
            steps: Some(steps),
            replies,
            worker: Some(worker),
        })
    }

    /// Hands over one step: the arrays to start, the sampled token (one `uint32` id)
    /// first, then the others (the cache). Returns at once.
    pub(crate) fn send(&self, arrays: Vec<Array>) -> Result<()> {
        self.post(Message::Step(arrays))
    }

    /// Asks for the last token sent (no step follows it).
    pub(crate) fn flush(&self) -> Result<()> {
        self.post(Message::Flush)
    }

    /// The next reply: a token id (in the order the steps were sent) and the time MLX took
    /// to start the steps that this thread started since the previous reply.
    pub(crate) fn recv(&self) -> Result<(u32, Duration)> {
        self.replies.recv().map_err(|_| stopped())?
    }

    fn post(&self, m: Message) -> Result<()> {
        self.steps
            .as_ref()
            .ok_or_else(stopped)?
            .send(m)
            .map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::InvalidArgument("the submit thread has stopped".into())
}

impl Drop for Submitter {
    fn drop(&mut self) {
        // Closing the channel ends the job after the step in hand; the thread then says
        // so and waits for the next generation. A thread that panicked says nothing (the
        // panic has been reported on stderr) and is not lent again.
        self.steps = None;
        if let Some(w) = self.worker.take() {
            if w.done.recv().is_ok() {
                IDLE_WORKERS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(w);
            }
        }
    }
}

/// The thread's loop: start each step, then report the token of the one before.
fn serve(inbox: mpsc::Receiver<Message>, outbox: mpsc::Sender<Reply>) {
    let mut previous: Option<Array> = None;
    // `async_eval` time not reported yet (each reply carries what came before it).
    let mut unreported = Duration::ZERO;
    for message in inbox {
        let token = match message {
            Message::Step(arrays) => {
                let started = Instant::now();
                if let Err(e) = mlx_rs::async_eval(&arrays) {
                    let _ = outbox.send(Err(e.into()));
                    return;
                }
                unreported += started.elapsed();
                let token = arrays.into_iter().next();
                match std::mem::replace(&mut previous, token) {
                    Some(p) => p,
                    None => continue,
                }
            }
            Message::Flush => match previous.take() {
                Some(p) => p,
                None => {
                    let _ = outbox.send(Err(Error::InvalidArgument(
                        "no step to report: none was sent".into(),
                    )));
                    return;
                }
            },
        };
        // Waits for the device.
        let reply = token
            .item::<u32>()
            .map(|id| (id, std::mem::take(&mut unreported)))
            .map_err(Error::from);
        let failed = reply.is_err();
        if outbox.send(reply).is_err() || failed {
            return;
        }
    }
}

/// A stream made with [`Stream::new_thread_unsafe`]. MLX registers such streams for every
/// thread, so unlike other streams they may move between threads.
struct AnyThread(Stream);

// SAFETY: MLX registers thread-unsafe streams globally (any thread may use them); the
// handle is plain data. Use without synchronization is ruled out by `LentStream`: one
// generation at a time holds it, and that generation evaluates on it from one thread.
unsafe impl Send for AnyThread {}

/// Streams not lent now, by device. MLX never frees a stream, so they are kept for the
/// next generation rather than made anew each time.
static IDLE: Mutex<Vec<((bool, i32), AnyThread)>> = Mutex::new(Vec::new());

/// A stream that the submit thread may evaluate on, lent to one generation: it goes back
/// (after its work has finished) when this is dropped.
pub(crate) struct LentStream {
    stream: AnyThread,
    device: (bool, i32),
}

impl LentStream {
    /// Lends an idle stream of `device`, or makes one.
    pub(crate) fn lend(device: &Device) -> Result<LentStream> {
        let key = (device.kind()? == DeviceType::Gpu, device.index()?);
        let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
        let stream = match idle.iter().position(|(k, _)| *k == key) {
            Some(i) => idle.swap_remove(i).1,
            None => {
                // SAFETY: see `AnyThread`: only the generation that holds the lease uses
                // it, from one thread at a time.
                let s = unsafe { Stream::new_thread_unsafe(device) };
                s.device()?; // reports a stream MLX could not make
                AnyThread(s)
            }
        };
        Ok(LentStream {
            stream,
            device: key,
        })
    }

    /// The stream.
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream.0
    }
}

impl Drop for LentStream {
    fn drop(&mut self) {
        // Its last steps may still run; the next user (and the generating thread's own
        // streams, which do not wait for this one) must see them finished. A stream that
        // cannot synchronize is not lent again.
        if self.stream.0.synchronize().is_ok() {
            let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
            idle.push((self.device, AnyThread(self.stream.0.clone())));
        }
    }
}
