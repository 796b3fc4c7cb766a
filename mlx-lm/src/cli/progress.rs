//! A one-line progress display on stderr for long work (building random weights, prefill,
//! decode, waiting for the bench peer), redrawn in place with `\r` and cleared at the end.
//!
//! It is drawn only when stderr is a terminal ([`Progress::stderr`]): piped or captured
//! output (tests, JSON reports, logs) gets nothing extra. A thread redraws the line a few
//! times a second, so that the elapsed time moves while MLX computes a long step; a phase
//! shorter than half a second is never drawn.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a phase runs before it is drawn.
const SHOW_AFTER: Duration = Duration::from_millis(500);
/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

/// What is being done.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Nothing to show.
    Idle,
    /// Building a model with random weights: tensors done of total.
    Build { done: usize, total: usize },
    /// Taking `tokens` prompt tokens into the model.
    Prefill { label: String, tokens: usize },
    /// Generating: `done` tokens of `total`; the phase began with the first one.
    Decode {
        label: String,
        done: usize,
        total: usize,
    },
    /// Waiting for something else (the peer process): `what` it does.
    Wait { label: String, what: String },
}

/// The line shown for `phase` after `elapsed` in it (`None`: nothing to show).
fn render(phase: &Phase, elapsed: Duration) -> Option<String> {
    let s = elapsed.as_secs_f64();
    let rate = |n: usize| if s > 0.0 { n as f64 / s } else { 0.0 };
    Some(match phase {
        Phase::Idle => return None,
        Phase::Build { done, total } => {
            format!("building the model: tensor {done}/{total} · {s:.0} s")
        }
        Phase::Prefill { label, tokens } => format!("{label}prefill {tokens} tok · {s:.1} s"),
        Phase::Decode { label, done, total } => format!(
            "{label}decode {done}/{total} tok · {:.1} tok/s",
            rate(done.saturating_sub(1))
        ),
        Phase::Wait { label, what } => format!("{label}{what} · {s:.0} s"),
    })
}

struct State {
    phase: Phase,
    /// When the phase began.
    since: Instant,
    /// Whether a line is on the terminal now.
    drawn: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while drawing leaves nothing inconsistent: go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A progress line on stderr (see the module docs). Dropping it clears the line.
pub struct Progress {
    shared: Option<Arc<Shared>>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// A progress line on stderr when stderr is a terminal; otherwise one that shows
    /// nothing.
    pub fn stderr() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::shown()
        } else {
            Progress::hidden()
        }
    }

    /// A progress line that shows nothing.
    pub fn hidden() -> Progress {
        Progress {
            shared: None,
            ticker: None,
        }
    }

    fn shown() -> Progress {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                phase: Phase::Idle,
                since: Instant::now(),
                drawn: false,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let ticker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || tick(&shared))
                .ok()
        };
        match ticker {
            Some(ticker) => Progress {
                shared: Some(shared),
                ticker: Some(ticker),
            },
            None => Progress::hidden(),
        }
    }

    /// Building a model with random weights: `done` tensors of `total`.
    pub fn building(&self, done: usize, total: usize) {
        self.update(|p| match p {
            Phase::Build { done: d, total: t } => {
                *d = done;
                *t = total;
                true
            }
            _ => false,
        })
        .unwrap_or_else(|| self.set(Phase::Build { done, total }));
    }

    /// Taking a prompt of `tokens` tokens into the model; `label` (e.g. `ours: `) comes
    /// first.
    pub fn prefill(&self, label: &str, tokens: usize) {
        self.set(Phase::Prefill {
            label: label.into(),
            tokens,
        });
    }

    /// `done` tokens generated of `total`; the rate counts the tokens after the first
    /// call (the first token ends the prefill), as `bench` does.
    pub fn decode(&self, label: &str, done: usize, total: usize) {
        self.update(|p| match p {
            Phase::Decode { done: d, .. } => {
                *d = done;
                true
            }
            _ => false,
        })
        .unwrap_or_else(|| {
            self.set(Phase::Decode {
                label: label.into(),
                done,
                total,
            })
        });
    }

    /// Waiting while something else works: `what` (e.g. `running (prompt 512, gen 64)`).
    pub fn waiting(&self, label: &str, what: &str) {
        self.set(Phase::Wait {
            label: label.into(),
            what: what.into(),
        });
    }

    /// Clears the line (before other output to stderr, and at the end).
    pub fn clear(&self) {
        if let Some(shared) = &self.shared {
            let mut state = shared.lock();
            state.phase = Phase::Idle;
            if state.drawn {
                let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
                state.drawn = false;
            }
        }
    }

    fn set(&self, phase: Phase) {
        if let Some(shared) = &self.shared {
            let mut state = shared.lock();
            state.phase = phase;
            state.since = Instant::now();
            drop(state);
            shared.wake.notify_one();
        }
    }

    /// Changes the current phase in place if `change` accepts it: `Some(())` when it did
    /// (or nothing is shown), `None` when the phase is of another kind.
    fn update(&self, change: impl FnOnce(&mut Phase) -> bool) -> Option<()> {
        let Some(shared) = &self.shared else {
            return Some(());
        };
        change(&mut shared.lock().phase).then_some(())
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
        if let Some(shared) = &self.shared {
            shared.lock().stop = true;
            shared.wake.notify_one();
        }
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// The drawing thread: redraws the line every [`REDRAW`] until stopped.
fn tick(shared: &Shared) {
    let mut state = shared.lock();
    while !state.stop {
        let elapsed = state.since.elapsed();
        if elapsed >= SHOW_AFTER || state.drawn {
            if let Some(line) = render(&state.phase, elapsed) {
                let _ = write!(std::io::stderr().lock(), "\r{line}\x1b[K");
                state.drawn = true;
            }
        }
        state = shared
            .wake
            .wait_timeout(state, REDRAW)
            .map(|(s, _)| s)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let s = |secs: f64| Duration::from_secs_f64(secs);
        assert_eq!(render(&Phase::Idle, s(3.0)), None);
        let build = Phase::Build {
            done: 12,
            total: 300,
        };
        assert_eq!(
            render(&build, s(4.2)).unwrap(),
            "building the model: tensor 12/300 · 4 s"
        );
        let prefill = Phase::Prefill {
            label: "ours: ".into(),
            tokens: 512,
        };
        assert_eq!(
            render(&prefill, s(12.34)).unwrap(),
            "ours: prefill 512 tok · 12.3 s"
        );
        let decode = Phase::Decode {
            label: String::new(),
            done: 12,
            total: 64,
        };
        assert_eq!(
            render(&decode, s(2.0)).unwrap(),
            "decode 12/64 tok · 5.5 tok/s"
        );
        assert_eq!(
            render(&decode, Duration::ZERO).unwrap(),
            "decode 12/64 tok · 0.0 tok/s"
        );
        let wait = Phase::Wait {
            label: "mlx-lm: ".into(),
            what: "running".into(),
        };
        assert_eq!(render(&wait, s(61.0)).unwrap(), "mlx-lm: running · 61 s");
    }

    #[test]
    fn hidden_progress_is_inert() {
        let p = Progress::hidden();
        p.building(1, 2);
        p.prefill("ours: ", 3);
        p.decode("ours: ", 1, 4);
        p.waiting("mlx-lm: ", "running");
        p.clear();
        assert!(p.shared.is_none() && p.ticker.is_none());
    }
}
