//! The engine's prefill: requests whose prompt is not in a state yet, run a chunk at a
//! time between the batch's decode steps, and joining the batch once their prompt is in.
//!
//! Each turn of the engine's loop runs one unit of prefill work:
//! - when at least two requests start from nothing (no saved prefix), the first chunk of
//!   each, as many as [`EngineOptions::prefill_batch_tokens`] lets in, in one forward
//!   pass padded on the right ([`LanguageModel::prefill_rows`](crate::LanguageModel::prefill_rows)):
//!   requests that arrive together (a burst of clients, the next requests of clients whose
//!   replies ended together) no longer wait for each other's prefill one by one;
//! - else the next chunk of the first request in prefill, alone.
//!
//! Then every request whose prompt is in its state but for its last token joins the
//! batch, and while the batch has rows, also one with at most [`STEP_FED`] prompt tokens
//! left, which the decode steps feed, one per step.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use mlx_rs::Array;

use super::{failure, Engine, EngineOptions, STEP_FED};
use crate::cache::Cache;
use crate::error::Result;
use crate::serve::protocol::{EngineTiming, Event};
use crate::serve::request::{deliver, sample_one, save_finished, Request};

/// A request in prefill.
pub(super) struct Prefill {
    pub(super) request: Request,
    /// The state so far (a batch of one).
    pub(super) cache: Cache,
    /// Prompt tokens already in `cache`.
    pub(super) done: usize,
}

impl Prefill {
    /// All of the prompt but its last token.
    fn head(&self) -> usize {
        self.request.prompt_len - 1
    }

    /// Whether it can join the batch: all of its prompt but the last token is in its
    /// state (a prompt of one token joins through a forward of its own), or, when other
    /// sequences are decoding (`busy`), all but at most [`STEP_FED`] tokens. (Alone, the
    /// steps that feed them would each compute the output head for nothing.)
    fn ready(&self, busy: bool) -> bool {
        let head = self.head();
        self.done == head || (busy && self.done > 0 && head - self.done < STEP_FED)
    }

    /// Whether it starts from nothing and needs a chunk (a prompt of two tokens or more).
    fn fresh(&self) -> bool {
        self.done == 0 && self.head() > 0
    }

    /// The end of its next chunk: at most `options.prefill_chunk` tokens, ending where a
    /// state is to be saved.
    fn chunk_end(&self, options: &EngineOptions) -> usize {
        let end = self.head().min(self.done + options.prefill_chunk);
        match self
            .request
            .save_at
            .iter()
            .find(|&&at| at > self.done && at < end)
        {
            Some(&at) => at,
            None => end,
        }
    }
}

impl Engine<'_> {
    /// Runs one unit of prefill work, then lets the requests that are ready join the
    /// batch. When a unit of several requests fails (or panics), each runs alone, so that
    /// only a request that fails by itself fails.
    pub(super) fn prefill_work(&mut self) {
        let mut unit = self.next_unit();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.run_unit(&mut unit)));
        if unit.len() > 1 && !matches!(outcome, Ok(Ok(()))) {
            let mut alone = Vec::with_capacity(unit.len());
            for p in unit {
                let mut one = vec![p];
                let outcome = catch_unwind(AssertUnwindSafe(|| self.run_unit(&mut one)));
                alone.push((one, outcome));
            }
            for (one, outcome) in alone.into_iter().rev() {
                self.settle_unit(one, outcome);
            }
        } else {
            self.settle_unit(unit, outcome);
        }
        let mut i = 0;
        while i < self.prefills.len() {
            if !self.prefills[i].ready(!self.rows.is_empty()) {
                i += 1;
                continue;
            }
            let Some(p) = self.prefills.remove(i) else {
                break;
            };
            let events = p.request.events.clone();
            let outcome = catch_unwind(AssertUnwindSafe(|| self.join_prefilled(p)));
            if let Some(why) = failure(outcome.map(Ok)) {
                let _ = events.send(Event::Failed(why));
            }
        }
    }

    /// Puts the requests of a unit back at the front of the queue, or fails them with
    /// the unit's error.
    fn settle_unit(&mut self, unit: Vec<Prefill>, outcome: std::thread::Result<Result<()>>) {
        match failure(outcome) {
            Some(why) => {
                for p in unit {
                    p.request.send(Event::Failed(why.clone()));
                }
            }
            None => {
                for p in unit.into_iter().rev() {
                    self.prefills.push_front(p);
                }
            }
        }
    }

    /// The requests of the next unit, taken out of the queue: the fresh ones that fit one
    /// padded batch when there are two or more, else the first one that needs a chunk.
    fn next_unit(&mut self) -> Vec<Prefill> {
        let budget = self.options.prefill_batch_tokens;
        let (mut picked, mut longest) = (Vec::new(), 0);
        for (i, p) in self.prefills.iter().enumerate() {
            if !p.fresh() {
                continue;
            }
            let len = p.chunk_end(&self.options);
            let wider = longest.max(len);
            if !picked.is_empty() && wider * (picked.len() + 1) > budget {
                break;
            }
            picked.push(i);
            longest = wider;
        }
        if picked.len() < 2 {
            let busy = !self.rows.is_empty();
            picked = self
                .prefills
                .iter()
                .position(|p| !p.ready(busy))
                .into_iter()
                .collect();
        }
        // Taken from the back, so that the indices before stay valid.
        let mut unit: Vec<Prefill> = picked
            .iter()
            .rev()
            .filter_map(|&i| self.prefills.remove(i))
            .collect();
        unit.reverse();
        unit
    }

    /// Runs the next chunk of each request of `unit` (all fresh when there are several)
    /// and saves the states the requests ask for.
    fn run_unit(&mut self, unit: &mut [Prefill]) -> Result<()> {
        if unit.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let ends: Vec<usize> = unit.iter().map(|p| p.chunk_end(&self.options)).collect();
        if let [p] = unit {
            let chunk = &p.request.tokens[p.done..ends[0]];
            let ids = Array::from_slice(chunk, &[1, chunk.len() as i32])?;
            self.model.prefill(&ids, &mut p.cache)?;
            mlx_rs::eval(&p.cache.arrays())?;
        } else {
            let prompts: Vec<&[u32]> = unit
                .iter()
                .zip(&ends)
                .map(|(p, &end)| &p.request.tokens[..end])
                .collect();
            // The states are the requests' only once evaluated: after a failure each
            // request runs alone from its own (untouched) state.
            let caches = self.model.prefill_rows(&prompts)?;
            mlx_rs::eval(&caches.iter().flat_map(Cache::arrays).collect::<Vec<_>>())?;
            for (p, cache) in unit.iter_mut().zip(caches) {
                p.cache = cache;
            }
        }
        for (p, end) in unit.iter_mut().zip(ends) {
            p.done = end;
            if end == p.head() || p.request.save_at.contains(&end) {
                self.prefix
                    .insert(p.request.tokens[..end].to_vec(), p.cache.clone());
            }
        }
        let t = &self.status.timing;
        EngineTiming::add(&t.prefill_chunks, 1, &t.prefill_ns, started.elapsed());
        Ok(())
    }

    /// Adds a ready request to the batch, the first prompt token not in its state as its
    /// next input; a one-token prompt runs alone first. A failure fails the request.
    fn join_prefilled(&mut self, mut p: Prefill) {
        let started = Instant::now();
        let events = p.request.events.clone();
        let joined = match p.done {
            0 => self.join_alone(p),
            _ => {
                p.request.fed = p.done;
                Array::from_slice(&[p.request.next_input()], &[1])
                    .map_err(Into::into)
                    .map(|next| self.join(p.request, p.cache, next))
            }
        };
        match joined {
            Ok(()) => {
                let t = &self.status.timing;
                EngineTiming::add(&t.joins, 1, &t.join_ns, started.elapsed());
            }
            Err(e) => {
                let _ = events.send(Event::Failed(e.to_string()));
            }
        }
    }

    /// Runs a one-token prompt alone (a batch can only take a row with a state), sends its
    /// first token, and adds it to the batch unless that token finished it.
    fn join_alone(&mut self, mut p: Prefill) -> Result<()> {
        let ids = Array::from_slice(&[p.request.next_input()], &[1, 1])?;
        let logits = self.model.forward_last(&ids, &mut p.cache)?;
        let draw = sample_one(&mut p.request, &logits, self.options.valid_vocab)?;
        let mut arrays = draw.arrays();
        arrays.extend(p.cache.arrays());
        mlx_rs::eval(&arrays)?;
        p.request.fed = p.request.prompt_len;
        let event = draw.read()?;
        let first = Array::from_slice(&[event.id], &[1])?;
        if deliver(&mut p.request, event, &self.options.stop_tokens) {
            if self.options.prompt_cache_bytes > 0 && p.request.finished {
                save_finished(&mut self.prefix, &p.request, p.cache);
            }
            return Ok(());
        }
        self.join(p.request, p.cache, first);
        Ok(())
    }
}
