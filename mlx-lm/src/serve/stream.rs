//! One request's output: the engine's [`Event`]s turned into text pieces, through the
//! streaming detokenizer, the stop strings and the reasoning / tool-call parser.

use tokio::sync::mpsc::UnboundedReceiver;

use super::api::{ChatLogprobs, CompletionLogprobs, TokenLogprob, Usage};
use super::protocol::{Event, Finish, TokenEvent};
use super::tools::{OutputParser, ParserOptions, Piece};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Holds back text while it may be the start of a stop string; cuts at the first match.
#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    buf: String,
}

impl StopMatcher {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops,
            buf: String::new(),
        }
    }

    /// Adds text; returns the text that is safe to show and whether a stop string matched
    /// (then the returned text ends where the match starts, and nothing more follows).
    pub(crate) fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.buf.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.buf.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.buf[..at].to_string();
            self.buf.clear();
            return (out, true);
        }
        // Hold from the first position whose rest is a start of some stop string.
        let hold = (0..self.buf.len())
            .filter(|&i| self.buf.is_char_boundary(i))
            .find(|&i| {
                let rest = &self.buf[i..];
                self.stops.iter().any(|s| s.starts_with(rest))
            })
            .unwrap_or(self.buf.len());
        let out = self.buf[..hold].to_string();
        self.buf.drain(..hold);
        (out, false)
    }

    /// The end of the text: everything held back.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.buf)
    }
}

/// Token ids → pieces of reasoning, content and tool calls.
pub(crate) struct Pipeline<'t> {
    tokenizer: &'t Tokenizer,
    decoder: StreamDecoder<'t>,
    stop: StopMatcher,
    /// `None` for text completions (raw text).
    parser: Option<OutputParser>,
    stopped: bool,
}

impl<'t> Pipeline<'t> {
    pub(crate) fn new(
        tokenizer: &'t Tokenizer,
        stops: Vec<String>,
        parser: Option<ParserOptions>,
    ) -> Self {
        Pipeline {
            tokenizer,
            decoder: tokenizer.stream(true),
            stop: StopMatcher::new(stops),
            parser: parser.map(OutputParser::new),
            stopped: false,
        }
    }

    /// Adds a token; `Ok(true)` once a stop string matched (pieces up to it returned).
    fn push(&mut self, id: u32, out: &mut Vec<Piece>) -> Result<bool, String> {
        if self.stopped {
            return Ok(true);
        }
        let text = self.decoder.push(id).map_err(|e| e.to_string())?;
        Ok(self.feed(&text, out))
    }

    fn feed(&mut self, text: &str, out: &mut Vec<Piece>) -> bool {
        let (safe, matched) = self.stop.push(text);
        self.parse(&safe, out);
        if matched {
            self.stopped = true;
            self.end_parser(out);
        }
        matched
    }

    fn parse(&mut self, text: &str, out: &mut Vec<Piece>) {
        match &mut self.parser {
            Some(p) => out.extend(p.push(text)),
            None if !text.is_empty() => out.push(Piece::Content(text.to_string())),
            None => {}
        }
    }

    fn end_parser(&mut self, out: &mut Vec<Piece>) {
        if let Some(p) = &mut self.parser {
            out.extend(p.finish());
        }
    }

    /// The end of the output: what the decoder, the stop strings and the parser held back.
    /// `true` when a stop string matched in it.
    fn finish(&mut self, out: &mut Vec<Piece>) -> bool {
        if self.stopped {
            return true;
        }
        let rest = self.decoder.finish();
        if self.feed(&rest, out) {
            return true;
        }
        let rest = self.stop.finish();
        self.parse(&rest, out);
        self.end_parser(out);
        false
    }

    fn tool_calls(&self) -> usize {
        self.parser.as_ref().map_or(0, OutputParser::tool_calls)
    }

    /// The text of one token as the logprobs report it.
    pub(crate) fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Done: `stop`, `length` or `tool_calls`.
    Finish(&'static str),
    /// The engine failed.
    Failed(String),
}

/// What one wait on the engine gave.
#[derive(Debug, Default)]
pub(crate) struct Step {
    pub(crate) pieces: Vec<Piece>,
    /// The tokens sampled, when log-probabilities were asked for.
    pub(crate) tokens: Vec<TokenEvent>,
    pub(crate) end: Option<End>,
}

/// A request in flight: its events and its pipeline.
pub(crate) struct Run<'t> {
    /// Dropped (the request cancelled) as soon as a stop string matches.
    events: Option<UnboundedReceiver<Event>>,
    pub(crate) pipeline: Pipeline<'t>,
    pub(crate) usage: Usage,
    logprobs: bool,
}

impl<'t> Run<'t> {
    pub(crate) fn new(
        events: UnboundedReceiver<Event>,
        pipeline: Pipeline<'t>,
        prompt_tokens: usize,
        logprobs: bool,
    ) -> Self {
        Run {
            events: Some(events),
            pipeline,
            usage: Usage {
                prompt_tokens,
                total_tokens: prompt_tokens,
                ..Usage::default()
            },
            logprobs,
        }
    }

    /// Waits for the next tokens (cancel-safe: nothing is lost if the wait is dropped
    /// before an event arrives). After a step with `end`, returns empty steps.
    pub(crate) async fn next(&mut self) -> Step {
        let mut step = Step::default();
        let Some(events) = &mut self.events else {
            return step;
        };
        loop {
            let event = events.recv().await;
            let end = match event {
                Some(Event::Prefilled {
                    prompt_tokens,
                    cached_tokens,
                }) => {
                    self.usage.prompt_tokens = prompt_tokens;
                    self.usage.prompt_tokens_details.cached_tokens = cached_tokens;
                    self.usage.total_tokens = prompt_tokens + self.usage.completion_tokens;
                    continue;
                }
                Some(Event::Token(token)) => {
                    self.usage.completion_tokens += 1;
                    self.usage.total_tokens += 1;
                    let pushed = self.pipeline.push(token.id, &mut step.pieces);
                    if self.logprobs {
                        step.tokens.push(token);
                    }
                    match pushed {
                        Ok(true) => Some(End::Finish("stop")),
                        Ok(false) if step.pieces.is_empty() && step.tokens.is_empty() => continue,
                        Ok(false) => None,
                        Err(e) => Some(End::Failed(format!("cannot decode a token: {e}"))),
                    }
                }
                Some(Event::Finished(finish)) => {
                    let stopped = self.pipeline.finish(&mut step.pieces);
                    Some(End::Finish(match finish {
                        _ if stopped => "stop",
                        Finish::Stop => "stop",
                        Finish::Length => "length",
                    }))
                }
                Some(Event::Failed(why)) => Some(End::Failed(why)),
                None => Some(End::Failed("the engine dropped the request".into())),
            };
            if let Some(end) = end {
                self.events = None;
                step.end = Some(match end {
                    End::Finish("stop") if self.pipeline.tool_calls() > 0 => {
                        End::Finish("tool_calls")
                    }
                    end => end,
                });
            }
            return step;
        }
    }
}

/// Chat-shaped log-probabilities of `tokens`.
pub(crate) fn chat_logprobs(pipeline: &Pipeline<'_>, tokens: &[TokenEvent]) -> ChatLogprobs {
    let entry = |id: u32, logprob: f32| {
        let token = pipeline.token_text(id);
        TokenLogprob {
            bytes: token.as_bytes().to_vec(),
            token,
            logprob,
            top_logprobs: None,
        }
    };
    ChatLogprobs {
        content: tokens
            .iter()
            .map(|t| TokenLogprob {
                top_logprobs: Some(
                    t.top_logprobs
                        .iter()
                        .map(|&(id, lp)| entry(id, lp))
                        .collect(),
                ),
                ..entry(t.id, t.logprob.unwrap_or(f32::NAN))
            })
            .collect(),
    }
}

/// Completion-shaped log-probabilities of `tokens`, the first at character `offset`.
pub(crate) fn completion_logprobs(
    pipeline: &Pipeline<'_>,
    tokens: &[TokenEvent],
    mut offset: usize,
) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    for t in tokens {
        let text = pipeline.token_text(t.id);
        out.text_offset.push(offset);
        offset += text.chars().count();
        out.tokens.push(text);
        out.token_logprobs.push(t.logprob.unwrap_or(f32::NAN));
        out.top_logprobs.push(
            t.top_logprobs
                .iter()
                .map(|&(id, lp)| (pipeline.token_text(id), lp.into()))
                .collect(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], chunks: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for c in chunks {
            let (text, matched) = m.push(c);
            out.push_str(&text);
            if matched {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_strings() {
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&[], &["a", "b"], "ab", false),
            (&["END"], &["hello E", "N", "D more"], "hello ", true),
            (&["END"], &["hello E", "N"], "hello EN", false),
            (&["END", "ND"], &["xEND"], "x", true),
            (&["ND", "xEN"], &["axEND"], "a", true),
            (&["ab", "b"], &["a", "b"], "", true),
            (&["b"], &["a", "b"], "a", true),
            (&["é!"], &["café", "!"], "caf", true),
            (&["\n\n"], &["one\n", "two\n", "\nthree"], "one\ntwo", true),
        ];
        for (stops, chunks, want, matched) in cases {
            assert_eq!(
                run(stops, chunks),
                (want.to_string(), *matched),
                "{stops:?} {chunks:?}"
            );
        }
    }

    #[test]
    fn held_back_only_while_it_may_match() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("aS"), ("a".into(), false));
        assert_eq!(m.push("T"), ("".into(), false));
        assert_eq!(m.push("x"), ("STx".into(), false));
    }
}
