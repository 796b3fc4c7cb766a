//! Continuous batching checked on a whole model: sequences join a running batch (prefilled
//! alone, then [`Cache::merge`]), decode together one token per step, and leave it
//! ([`Cache::filter`]); each must get the greedy tokens and logits it gets decoded alone.
//! Shared with the model crates' tests, which include this file (with `assert_close` of
//! `close.rs` in scope at their root).
#![allow(dead_code)]

use super::assert_close;
use mlx_lm::{Cache, LanguageModel};
use mlx_rs::Array;

/// One sequence of a schedule.
pub struct Request {
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// The decode step at which it joins the batch.
    pub join: usize,
    /// The decode step at which it leaves the batch (`None`: it stays to the end).
    pub leave: Option<usize>,
}

/// What one sequence decoded: the greedy token and the logits of each decode step (the
/// first token comes from the prompt's logits, which are not compared).
#[derive(Debug, Default)]
pub struct Decoded {
    /// Greedy tokens fed to the decode steps, in order.
    pub fed: Vec<u32>,
    /// Last-position logits of each decode step.
    pub logits: Vec<Vec<f32>>,
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// The logits `[B, vocab]` of a `forward_last` as one vector per row.
fn rows(logits: &Array) -> Vec<Vec<f32>> {
    let vocab = logits.shape()[1] as usize;
    let v = logits
        .astype(mlx_rs::Dtype::Float32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    v.chunks(vocab).map(<[f32]>::to_vec).collect()
}

/// The prompt through a fresh cache of its own: the cache and the first greedy token.
fn prefill<M: LanguageModel>(model: &M, prompt: &[u32]) -> (Cache, u32) {
    let mut cache = model.new_cache();
    let ids = Array::from_slice(prompt, &[1, prompt.len() as i32]).unwrap();
    let logits = model.forward_last(&ids, &mut cache).unwrap();
    (cache, argmax(&rows(&logits)[0]))
}

/// `prompt` decoded alone for `steps` greedy steps.
pub fn decode_alone<M: LanguageModel>(model: &M, prompt: &[u32], steps: usize) -> Decoded {
    let (mut cache, mut token) = prefill(model, prompt);
    let mut out = Decoded::default();
    for _ in 0..steps {
        let ids = Array::from_slice(&[token], &[1, 1]).unwrap();
        let row = rows(&model.forward_last(&ids, &mut cache).unwrap()).remove(0);
        out.fed.push(token);
        token = argmax(&row);
        out.logits.push(row);
    }
    out
}

/// The prompts through [`LanguageModel::prefill_rows`] (as one padded batch), all but
/// each one's last token, which then runs in a step of its own: the caches and the first
/// greedy tokens.
fn prefill_together<M: LanguageModel>(model: &M, prompts: &[&[u32]]) -> Vec<(Cache, u32)> {
    let heads: Vec<&[u32]> = prompts.iter().map(|p| &p[..p.len() - 1]).collect();
    let caches = model.prefill_rows(&heads).unwrap();
    assert_eq!(caches.len(), prompts.len());
    caches
        .into_iter()
        .zip(prompts)
        .map(|(mut cache, p)| {
            assert_eq!(cache.lengths(), Some(vec![p.len() as i32 - 1]));
            let ids = Array::from_slice(&p[p.len() - 1..], &[1, 1]).unwrap();
            let logits = model.forward_last(&ids, &mut cache).unwrap();
            (cache, argmax(&rows(&logits)[0]))
        })
        .collect()
}

/// Runs `requests` for `steps` decode steps the way a continuous-batching engine does:
/// at each step the leaving sequences are filtered out, the joining ones prefilled alone
/// (or, `together`, those of at least two tokens in one padded batch) and merged in, then
/// every sequence in the batch decodes one token in one forward pass.
pub fn decode_batched<M: LanguageModel>(
    model: &M,
    requests: &[Request],
    steps: usize,
    together: bool,
) -> Vec<Decoded> {
    let mut out: Vec<Decoded> = requests.iter().map(|_| Decoded::default()).collect();
    let mut next = vec![0u32; requests.len()];
    // The request of each row of the batch.
    let mut active: Vec<usize> = Vec::new();
    let mut batch: Option<Cache> = None;
    for step in 0..steps {
        let keep: Vec<i32> = (0..active.len() as i32)
            .filter(|&r| requests[active[r as usize]].leave != Some(step))
            .collect();
        if keep.len() < active.len() {
            active = keep.iter().map(|&r| active[r as usize]).collect();
            batch = match keep.is_empty() {
                true => None,
                false => Some(batch.unwrap().filter(&keep).unwrap()),
            };
        }
        let joining: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].join == step)
            .collect();
        let mut prefilled: Vec<(Cache, u32)> = match together {
            true => {
                let prompts: Vec<&[u32]> = joining
                    .iter()
                    .map(|&i| requests[i].prompt.as_slice())
                    .collect();
                match prompts.iter().all(|p| p.len() >= 2) && !prompts.is_empty() {
                    true => prefill_together(model, &prompts),
                    false => prompts.iter().map(|p| prefill(model, p)).collect(),
                }
            }
            false => joining
                .iter()
                .map(|&i| prefill(model, &requests[i].prompt))
                .collect(),
        };
        for (&i, (cache, token)) in joining.iter().zip(prefilled.drain(..)) {
            next[i] = token;
            active.push(i);
            batch = Some(match batch.take() {
                Some(b) => Cache::merge(&[b, cache]).unwrap(),
                None => cache,
            });
        }
        let Some(cache) = batch.as_mut() else {
            continue;
        };
        let tokens: Vec<u32> = active.iter().map(|&i| next[i]).collect();
        let ids = Array::from_slice(&tokens, &[tokens.len() as i32, 1]).unwrap();
        let logits = model.forward_last(&ids, cache).unwrap();
        for (&i, row) in active.iter().zip(rows(&logits)) {
            out[i].fed.push(next[i]);
            next[i] = argmax(&row);
            out[i].logits.push(row);
        }
    }
    out
}

/// Asserts that every request of the schedule, decoded in the batch, gets the tokens of
/// decoding it alone and logits within `atol + rtol·|alone|`: with joiners prefilled
/// alone, and with those that join at one step prefilled together.
pub fn assert_batched_matches_alone<M: LanguageModel>(
    what: &str,
    model: &M,
    requests: &[Request],
    steps: usize,
    atol: f32,
    rtol: f32,
) {
    for together in [false, true] {
        let batched = decode_batched(model, requests, steps, together);
        let what = match together {
            true => format!("{what} (joiners prefilled together)"),
            false => what.to_string(),
        };
        assert_each_matches_alone(&what, model, requests, &batched, atol, rtol);
    }
}

fn assert_each_matches_alone<M: LanguageModel>(
    what: &str,
    model: &M,
    requests: &[Request],
    batched: &[Decoded],
    atol: f32,
    rtol: f32,
) {
    for (i, (r, got)) in requests.iter().zip(batched).enumerate() {
        let alone = decode_alone(model, &r.prompt, got.fed.len());
        let what = format!("{what}: sequence {i} (prompt of {})", r.prompt.len());
        assert!(!got.fed.is_empty(), "{what}: never decoded");
        assert_eq!(got.fed, alone.fed, "{what}: tokens");
        for (s, (a, e)) in got.logits.iter().zip(&alone.logits).enumerate() {
            assert_close(&format!("{what}, step {s}"), a, e, atol, rtol);
        }
    }
}

/// A prompt of `len` token ids below `vocab`, different for each `seed`.
pub fn prompt(len: usize, seed: u32, vocab: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (seed * 31 + i * 7 + 1) % vocab)
        .collect()
}

/// The schedules every model is checked with: prompts of 3, 7 and 12 tokens decoding
/// together; and sequences joining a running batch and leaving it (a shorter and a longer
/// one joining, the middle one leaving, the longest leaving so that padding is trimmed).
pub fn schedules(vocab: u32) -> Vec<(&'static str, Vec<Request>, usize)> {
    let req = |len, seed, join, leave| Request {
        prompt: prompt(len, seed, vocab),
        join,
        leave,
    };
    vec![
        (
            "three lengths together",
            vec![req(3, 1, 0, None), req(7, 2, 0, None), req(12, 3, 0, None)],
            8,
        ),
        (
            "joining and leaving",
            vec![
                req(3, 4, 0, None),
                req(7, 5, 0, Some(5)),
                req(12, 6, 2, Some(8)),
                req(2, 7, 4, None),
                req(9, 8, 6, None),
            ],
            10,
        ),
    ]
}
