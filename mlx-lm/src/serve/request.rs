//! A request as the engine holds it (its tokens, sampler and events), what sampling a
//! row builds, and the decode step in flight whose tokens are not read yet.

use mlx_rs::{ops, Array, Dtype};
use tokio::sync::mpsc::UnboundedSender;

use super::prefix::PrefixCache;
use super::protocol::{Event, Finish, Submission, TokenEvent};
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::sampling::Sampler;

/// A request's own state, in prefill or in the batch.
pub(super) struct Request {
    pub(super) events: UnboundedSender<Event>,
    pub(super) sampler: Sampler,
    pub(super) logprobs: Option<usize>,
    pub(super) max_tokens: usize,
    pub(super) prompt_len: usize,
    /// The prompt, then every sampled token.
    pub(super) tokens: Vec<u32>,
    /// How many recent tokens the penalties look at (0: no penalties).
    pub(super) history: usize,
    /// Prompt lengths at which to save the state (ascending).
    pub(super) save_at: Vec<usize>,
    /// Ended by a stop token or `max_tokens` (not by its client going away).
    pub(super) finished: bool,
    /// How many of `tokens` the model has been fed (the state in its cache row covers
    /// them): the prompt once it is prefilled, then one more per decode step started.
    /// With a step in flight this runs one ahead of the tokens read back.
    pub(super) fed: usize,
}

impl Request {
    pub(super) fn new(s: Submission) -> Result<Request> {
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
            fed: 0,
            save_at: {
                let mut v = s.save_at;
                v.sort_unstable();
                v
            },
        })
    }

    pub(super) fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    pub(super) fn cancelled(&self) -> bool {
        self.events.is_closed()
    }

    /// Sends an event; a closed channel is noticed at the next step.
    pub(super) fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// The token the model is fed next: the next prompt token while some are left (a
    /// request joins the batch with its last few prompt tokens still to feed), else the
    /// last one sampled.
    pub(super) fn next_input(&self) -> u32 {
        match self.tokens.get(self.fed) {
            Some(&id) if self.fed < self.prompt_len => id,
            _ => *self.tokens.last().expect("a request has a prompt"),
        }
    }

    /// Prompt tokens not fed to the model yet.
    pub(super) fn prompt_left(&self) -> usize {
        self.prompt_len.saturating_sub(self.fed)
    }
}

/// What sampling one row builds (lazy): the token and, when asked, log-probabilities.
pub(super) struct Draw {
    pub(super) token: Array,
    pub(super) logprob: Option<Array>,
    pub(super) top: Option<(Array, Array)>,
}

/// Saves the state of a finished request in the prefix cache, under the tokens it was fed
/// (all of them when the step after its last token was already started, else all but
/// the last).
pub(super) fn save_finished(prefix: &mut PrefixCache, request: &Request, cache: Cache) {
    let fed = request.fed.min(request.tokens.len());
    if fed >= 1 {
        prefix.insert(request.tokens[..fed].to_vec(), cache);
    }
}

/// Records a sampled token and sends it to the client; `true` when the request is
/// finished (a stop token, `max_tokens`, or a client gone).
pub(super) fn deliver(request: &mut Request, event: TokenEvent, stop_tokens: &[u32]) -> bool {
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
    pub(super) fn read(&self) -> Result<TokenEvent> {
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

    pub(super) fn arrays(&self) -> Vec<&Array> {
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
pub(super) fn sample_one(
    request: &mut Request,
    logits: &Array,
    valid: Option<i32>,
) -> Result<Draw> {
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
pub(super) fn cut_vocab(logits: &Array, valid: Option<i32>) -> Result<Array> {
    let (b, v) = (logits.try_dim(0)?, logits.try_dim(-1)?);
    match valid {
        Some(n) if n > 0 && n < v => Ok(ops::slice(logits, &[0, 0], &[b, n], &[1, 1])?),
        _ => Ok(logits.clone()),
    }
}

/// A decode step that was started and whose tokens are not read yet: the draws of rows
/// `0..rows` of the batch (rows that joined since come after them).
pub(super) struct Step {
    /// One draw per row, or one draw of every row's token (`[rows]`, greedy rows).
    pub(super) draws: Vec<Draw>,
    pub(super) rows: usize,
    /// Per row, whether the step fed it a prompt token that is not its last (its draw is
    /// then no reply token and is dropped); empty when no row was fed one.
    pub(super) in_prompt: Vec<bool>,
}

impl Step {
    /// The tokens (and log-probabilities) of the step's rows, in order; waits for the
    /// device.
    pub(super) fn read(&self) -> Result<Vec<TokenEvent>> {
        let events = if self.draws.len() == self.rows {
            self.draws
                .iter()
                .map(Draw::read)
                .collect::<Result<Vec<_>>>()?
        } else {
            let all = self.draws.first().ok_or_else(lost)?;
            all.token
                .to_vec::<u32>()?
                .into_iter()
                .map(|id| TokenEvent {
                    id,
                    logprob: None,
                    top_logprobs: Vec::new(),
                })
                .collect()
        };
        if events.len() != self.rows {
            return Err(lost());
        }
        Ok(events)
    }

    /// Keeps the rows `keep` (ascending indices into the batch before a removal; those
    /// past this step's rows are ignored). `None` when no row of the step is left.
    pub(super) fn retain(self, keep: &[i32]) -> Result<Option<Step>> {
        let kept: Vec<i32> = keep
            .iter()
            .copied()
            .filter(|&k| (k as usize) < self.rows)
            .collect();
        if kept.is_empty() {
            return Ok(None);
        }
        let draws = if self.draws.len() == self.rows {
            let mut draws: Vec<Option<Draw>> = self.draws.into_iter().map(Some).collect();
            kept.iter()
                .map(|&k| draws[k as usize].take().ok_or_else(lost))
                .collect::<Result<Vec<_>>>()?
        } else {
            let all = self.draws.into_iter().next().ok_or_else(lost)?;
            let idx = Array::from_slice(&kept, &[kept.len() as i32])?;
            vec![Draw {
                token: all.token.take_axis(&idx, 0)?,
                logprob: None,
                top: None,
            }]
        };
        let in_prompt = match self.in_prompt.is_empty() {
            true => Vec::new(),
            false => kept.iter().map(|&k| self.in_prompt[k as usize]).collect(),
        };
        Ok(Some(Step {
            draws,
            rows: kept.len(),
            in_prompt,
        }))
    }

    /// The rows' sampled tokens as one array (`[rows]`, `uint32`, not evaluated): their
    /// next inputs.
    pub(super) fn tokens(&self) -> Result<Array> {
        if self.draws.len() == 1 {
            let t = &self.draws[0].token;
            return Ok(t.reshape(&[self.rows as i32])?);
        }
        let parts = self
            .draws
            .iter()
            .map(|d| d.token.reshape(&[1]))
            .collect::<mlx_rs::Result<Vec<_>>>()?;
        Ok(ops::concatenate_axis(&parts, 0)?)
    }
}

pub(super) fn lost() -> Error {
    Error::InvalidArgument("engine: a step's result is missing".into())
}
