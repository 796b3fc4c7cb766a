//! The prefix cache: model states saved at request boundaries, so that a request whose
//! prompt extends an earlier one (the next turn of a chat, the same system prompt and
//! tools) starts from there instead of running the shared prefix again.
//!
//! A hybrid model's recurrent state cannot be cut back to an earlier position (it holds
//! the whole prefix folded into a fixed size), so an entry is used only as a whole: the
//! state after exactly its tokens, for a prompt that starts with all of them. Entries are
//! saved where they are cheap and likely to be met again: after a prompt's prefill (all
//! of the prompt but its last token, which is fed with the first decode step) and at the
//! end of a reply (the prompt and the reply but its last token). Both are a prefix of the
//! next turn's prompt when the chat template renders the earlier turns as they were
//! prompted and answered.
//!
//! Entries share their arrays with the caches they were taken from (MLX arrays are
//! immutable; a cache that continues from an entry writes new buffers), and are evicted
//! least recently used first when their bytes pass the budget.

use crate::cache::Cache;

/// One saved state.
struct Entry {
    /// The tokens the state has seen.
    tokens: Vec<u32>,
    /// The state after them (batch of one).
    cache: Cache,
    /// Bytes held by `cache`'s arrays.
    bytes: usize,
    /// When it was last used or saved (a counter).
    used: u64,
}

/// Saved states of earlier requests, looked up by the longest saved prefix of a prompt.
pub struct PrefixCache {
    entries: Vec<Entry>,
    budget: usize,
    bytes: usize,
    clock: u64,
    hits: u64,
    lookups: u64,
}

impl PrefixCache {
    /// An empty cache that holds at most `budget` bytes of states (0 turns it off).
    pub fn new(budget: usize) -> PrefixCache {
        PrefixCache {
            entries: Vec::new(),
            budget,
            bytes: 0,
            clock: 0,
            hits: 0,
            lookups: 0,
        }
    }

    /// The saved state with the longest token sequence that is a prefix of `prompt` and
    /// shorter than it (at least one token must be left to run), and its length; `None`
    /// when no entry fits. The state is a cheap copy (shared arrays).
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<(Cache, usize)> {
        self.lookups += 1;
        self.clock += 1;
        let clock = self.clock;
        let best = self
            .entries
            .iter_mut()
            .filter(|e| e.tokens.len() < prompt.len() && prompt.starts_with(&e.tokens))
            .max_by_key(|e| e.tokens.len())?;
        best.used = clock;
        self.hits += 1;
        Some((best.cache.clone(), best.tokens.len()))
    }

    /// Saves `cache` as the state after `tokens`, evicting the least recently used
    /// entries to stay within the budget. A state larger than the whole budget, or for
    /// tokens already saved, is not kept.
    pub fn insert(&mut self, tokens: Vec<u32>, cache: Cache) {
        let bytes = cache.nbytes();
        if tokens.is_empty() || bytes > self.budget {
            return;
        }
        self.clock += 1;
        if let Some(e) = self.entries.iter_mut().find(|e| e.tokens == tokens) {
            e.used = self.clock;
            return;
        }
        while self.bytes + bytes > self.budget {
            let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used) else {
                break;
            };
            let e = self.entries.swap_remove(oldest);
            self.bytes -= e.bytes;
        }
        self.bytes += bytes;
        self.entries.push(Entry {
            tokens,
            cache,
            bytes,
            used: self.clock,
        });
    }

    /// Number of saved states.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is saved.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held by the saved states.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lookups that found a state, and all lookups.
    pub fn hit_rate(&self) -> (u64, u64) {
        (self.hits, self.lookups)
    }

    /// Drops every saved state.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}
