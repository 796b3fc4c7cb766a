//! The model's output text split into reasoning, content and tool calls, incrementally.
//!
//! - A leading `<think>…</think>` block is reasoning (`reasoning_content`). A Qwen 3.5 prompt
//!   with thinking on ends with `<think>\n`, so the output then starts inside the block:
//!   [`ParserOptions::in_think`] says so.
//! - `<tool_call>…</tool_call>` blocks are tool calls, in Qwen 3.5's form
//!   (`<function=NAME>` with `<parameter=P>\nVALUE\n</parameter>` lines; values that parse
//!   as JSON become JSON, others strings) or in the Hermes / Qwen 3 JSON form
//!   (`{"name": …, "arguments": {…}}`).
//!
//! Text that may still turn out to be the start of a tag (`<tool_c`) is held back until the
//! next piece decides it. A block that does not parse comes out as plain content, never as an
//! error.

use serde_json::{Map, Value};

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";

/// A tool call the model made, as OpenAI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToolCall {
    /// The call's id (`call_<n>`).
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as a JSON object's text.
    pub arguments: String,
}

/// A piece of the parsed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text of the thinking block.
    Reasoning(String),
    /// Text of the answer.
    Content(String),
    /// A complete tool call.
    ToolCall(ParsedToolCall),
}

/// What the parser looks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParserOptions {
    /// The prompt ended inside a `<think>` block: the output starts as reasoning.
    pub in_think: bool,
    /// Parse `<tool_call>` blocks (the request offered tools); else they are content.
    pub tools: bool,
    /// Text the prompt ended with that belongs to the reply: the opening of a tool call
    /// that `tool_choice` forced (see [`forced_opening`]). Parsed before the output.
    pub primer: String,
}

/// The opening of a tool call that the server writes at the end of the prompt when
/// `tool_choice` is `required` (`name` is `None`) or names a function, so that the reply
/// is that call. `xml` picks Qwen 3.5's form (`<function=NAME>`), else the Hermes / Qwen 3
/// JSON form.
pub fn forced_opening(name: Option<&str>, xml: bool) -> String {
    match (name, xml) {
        (None, _) => format!("{CALL_OPEN}\n"),
        (Some(n), true) => format!("{CALL_OPEN}\n<function={n}>\n"),
        (Some(n), false) => format!(
            "{CALL_OPEN}\n{{\"name\": {}, \"arguments\": ",
            Value::String(n.to_string())
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace seen: a `<think>` may still open.
    Start,
    Reasoning,
    Content,
    /// Inside `<tool_call>`; the buffer holds the body.
    ToolCall,
}

/// The incremental parser: feed it text with [`push`](Self::push), end with
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct OutputParser {
    options: ParserOptions,
    state: State,
    /// Text not yet decided (a possible tag start, a tool call's body).
    buf: String,
    /// Drop whitespace at the start of the next content (after `</think>` or a tool call).
    trim_start: bool,
    calls: usize,
}

impl OutputParser {
    /// A parser for one response.
    pub fn new(options: ParserOptions) -> Self {
        let primer = options.primer.clone();
        let mut parser = OutputParser {
            state: if options.in_think {
                State::Reasoning
            } else {
                State::Start
            },
            options,
            buf: String::new(),
            trim_start: false,
            calls: 0,
        };
        if !primer.is_empty() {
            // An unfinished tool call's opening: it decides nothing yet.
            let early = parser.push(&primer);
            debug_assert!(early.is_empty(), "{early:?}");
        }
        parser
    }

    /// How many tool calls were parsed so far.
    pub fn tool_calls(&self) -> usize {
        self.calls
    }

    /// Adds text; returns the pieces it decides (adjacent texts of one kind merged).
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        self.run(&mut out, false);
        merge(out)
    }

    /// Ends the output: returns everything held back.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        self.run(&mut out, true);
        merge(out)
    }

    fn run(&mut self, out: &mut Vec<Piece>, end: bool) {
        loop {
            match self.state {
                State::Start => {
                    let rest = self.buf.trim_start();
                    if rest.starts_with(THINK_OPEN) {
                        let skip = self.buf.len() - rest.len() + THINK_OPEN.len();
                        self.buf.drain(..skip);
                        self.state = State::Reasoning;
                    } else if !end && THINK_OPEN.starts_with(rest) {
                        return; // empty, or a possible `<think>`
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning => match self.buf.find(THINK_CLOSE) {
                    Some(at) => {
                        emit(out, Piece::Reasoning, &self.buf[..at]);
                        self.buf.drain(..at + THINK_CLOSE.len());
                        self.state = State::Content;
                        self.trim_start = true;
                    }
                    None => {
                        let keep = if end {
                            0
                        } else {
                            partial_tag(&self.buf, THINK_CLOSE)
                        };
                        let upto = self.buf.len() - keep;
                        emit(out, Piece::Reasoning, &self.buf[..upto]);
                        self.buf.drain(..upto);
                        return;
                    }
                },
                State::Content => {
                    if self.trim_start {
                        let trimmed = self.buf.len() - self.buf.trim_start().len();
                        self.buf.drain(..trimmed);
                        if self.buf.is_empty() && !end {
                            return;
                        }
                        self.trim_start = false;
                    }
                    let open = if self.options.tools {
                        self.buf.find(CALL_OPEN)
                    } else {
                        None
                    };
                    match open {
                        Some(at) => {
                            emit(out, Piece::Content, &self.buf[..at]);
                            self.buf.drain(..at + CALL_OPEN.len());
                            self.state = State::ToolCall;
                        }
                        None => {
                            let keep = if end || !self.options.tools {
                                0
                            } else {
                                partial_tag(&self.buf, CALL_OPEN)
                            };
                            let upto = self.buf.len() - keep;
                            emit(out, Piece::Content, &self.buf[..upto]);
                            self.buf.drain(..upto);
                            return;
                        }
                    }
                }
                State::ToolCall => {
                    let (body_end, rest_at) = match self.buf.find(CALL_CLOSE) {
                        Some(at) => (at, at + CALL_CLOSE.len()),
                        None if end => (self.buf.len(), self.buf.len()),
                        None => return,
                    };
                    let body = &self.buf[..body_end];
                    match parse_call(body) {
                        Some((name, arguments)) => {
                            self.calls += 1;
                            self.trim_start = true;
                            out.push(Piece::ToolCall(ParsedToolCall {
                                id: format!("call_{}", self.calls),
                                name,
                                arguments,
                            }));
                        }
                        None => {
                            let raw = &self.buf[..rest_at];
                            out.push(Piece::Content(format!("{CALL_OPEN}{raw}")));
                            self.trim_start = false;
                        }
                    }
                    self.buf.drain(..rest_at);
                    self.state = State::Content;
                }
            }
        }
    }
}

fn emit(out: &mut Vec<Piece>, kind: fn(String) -> Piece, text: &str) {
    if !text.is_empty() {
        out.push(kind(text.to_string()));
    }
}

/// Joins adjacent reasoning or content pieces.
fn merge(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match (out.last_mut(), piece) {
            (Some(Piece::Content(a)), Piece::Content(b))
            | (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(&b),
            (_, piece) => out.push(piece),
        }
    }
    out
}

/// The length of the longest end of `text` that is a proper start of `tag` (held back: the
/// next text may complete the tag).
pub(crate) fn partial_tag(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && text.ends_with(&tag[..n]))
        .unwrap_or(0)
}

/// A tool call's body in either form: `(name, arguments as JSON text)`.
fn parse_call(body: &str) -> Option<(String, String)> {
    let body = body.trim();
    if body.starts_with('{') {
        parse_json_call(body)
    } else {
        parse_xml_call(body)
    }
}

/// `{"name": "f", "arguments": {...}}` (arguments may also be a JSON string of an object).
fn parse_json_call(body: &str) -> Option<(String, String)> {
    let value: Value = serde_json::from_str(body).ok()?;
    let name = value.get("name")?.as_str()?.to_string();
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(_) => return None,
    };
    (!name.is_empty()).then_some((name, arguments))
}

/// `<function=NAME>\n<parameter=P>\nVALUE\n</parameter>\n…</function>`.
fn parse_xml_call(body: &str) -> Option<(String, String)> {
    let rest = body.strip_prefix("<function=")?;
    let (name, mut rest) = rest.split_once('>')?;
    let name = name.trim();
    if name.is_empty() || name.contains('<') {
        return None;
    }
    let mut arguments = Map::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("</function>") {
            if !after.trim().is_empty() {
                return None;
            }
            break;
        }
        let after = rest.strip_prefix("<parameter=")?;
        let (param, after) = after.split_once('>')?;
        let (value, after) = after.split_once("</parameter>")?;
        let value = value.strip_prefix('\n').unwrap_or(value);
        let value = value.strip_suffix('\n').unwrap_or(value);
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        arguments.insert(param.trim().to_string(), value);
        rest = after;
    }
    Some((name.to_string(), Value::Object(arguments).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(n: usize, name: &str, arguments: &str) -> Piece {
        Piece::ToolCall(ParsedToolCall {
            id: format!("call_{n}"),
            name: name.into(),
            arguments: arguments.into(),
        })
    }
    fn content(s: &str) -> Piece {
        Piece::Content(s.into())
    }
    fn reasoning(s: &str) -> Piece {
        Piece::Reasoning(s.into())
    }

    fn parse_whole(options: ParserOptions, text: &str) -> Vec<Piece> {
        let mut p = OutputParser::new(options);
        let mut out = p.push(text);
        out.extend(p.finish());
        merge(out)
    }

    /// Every split of `text` into two pushes, and one push per character, give the same
    /// pieces as one push.
    fn parse_split(options: ParserOptions, text: &str) -> Vec<Piece> {
        let whole = parse_whole(options.clone(), text);
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let mut p = OutputParser::new(options.clone());
            let mut out = p.push(&text[..cut]);
            out.extend(p.push(&text[cut..]));
            out.extend(p.finish());
            assert_eq!(merge(out), whole, "split at byte {cut} of {text:?}");
        }
        let mut p = OutputParser::new(options);
        let mut out = Vec::new();
        for ch in text.chars() {
            out.extend(p.push(ch.encode_utf8(&mut [0; 4])));
        }
        out.extend(p.finish());
        assert_eq!(merge(out), whole, "char by char: {text:?}");
        whole
    }

    const PLAIN: ParserOptions = ParserOptions {
        primer: String::new(),
        in_think: false,
        tools: false,
    };
    const TOOLS: ParserOptions = ParserOptions {
        primer: String::new(),
        in_think: false,
        tools: true,
    };
    const THINK_TOOLS: ParserOptions = ParserOptions {
        primer: String::new(),
        in_think: true,
        tools: true,
    };

    #[test]
    fn table() {
        let qwen = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n\
                    <parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";
        let hermes = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>";
        let args = r#"{"city":"Paris","days":3}"#;
        let cases: Vec<(ParserOptions, String, Vec<Piece>)> = vec![
            (PLAIN, "Hello world".into(), vec![content("Hello world")]),
            (PLAIN, "".into(), vec![]),
            (PLAIN, "a < b <tool".into(), vec![content("a < b <tool")]),
            (PLAIN, format!("x{hermes}"), vec![content(&format!("x{hermes}"))]),
            (
                PLAIN,
                "<think>hmm</think>\n\nHi".into(),
                vec![reasoning("hmm"), content("Hi")],
            ),
            (
                PLAIN,
                "  <think>a</think>b".into(),
                vec![reasoning("a"), content("b")],
            ),
            (PLAIN, "<thinking".into(), vec![content("<thinking")]),
            (PLAIN, "<thin".into(), vec![content("<thin")]),
            (PLAIN, "Hi <think>x</think>".into(), vec![content("Hi <think>x</think>")]),
            (
                THINK_TOOLS,
                "\nlet me see\n</think>\n\nIt is".into(),
                vec![reasoning("\nlet me see\n"), content("It is")],
            ),
            (THINK_TOOLS, "unfinished thought".into(), vec![reasoning("unfinished thought")]),
            (TOOLS, qwen.into(), vec![call(1, "get_weather", args)]),
            (TOOLS, hermes.into(), vec![call(1, "get_weather", args)]),
            (
                TOOLS,
                format!("Let me check.\n\n{qwen}\n{hermes}"),
                vec![
                    content("Let me check.\n\n"),
                    call(1, "get_weather", args),
                    call(2, "get_weather", args),
                ],
            ),
            (
                THINK_TOOLS,
                format!("I should call it.</think>\n\n{qwen}"),
                vec![reasoning("I should call it."), call(1, "get_weather", args)],
            ),
            (
                TOOLS,
                "<tool_call>\n<function=f>\n<parameter=q>\nsay \"hi\"\nline 2\n</parameter>\n<parameter=o>\n{\"a\": [1, null]}\n</parameter>\n<parameter=b>\ntrue\n</parameter>\n</function>\n</tool_call>".into(),
                vec![call(1, "f", r#"{"q":"say \"hi\"\nline 2","o":{"a":[1,null]},"b":true}"#)],
            ),
            (
                TOOLS,
                "<tool_call>\n<function=noargs>\n</function>\n</tool_call>".into(),
                vec![call(1, "noargs", "{}")],
            ),
            (
                TOOLS,
                "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>".into(),
                vec![call(1, "f", r#"{"x": 1}"#)],
            ),
            // Malformed blocks come out as content.
            (
                TOOLS,
                "<tool_call>\n{\"name\": \"f\", \"arguments\": {\n</tool_call> ok".into(),
                vec![content("<tool_call>\n{\"name\": \"f\", \"arguments\": {\n</tool_call> ok")],
            ),
            (
                TOOLS,
                "<tool_call>\n<function=f>\n<parameter=a>\n1\n</function>\n</tool_call>".into(),
                vec![content("<tool_call>\n<function=f>\n<parameter=a>\n1\n</function>\n</tool_call>")],
            ),
            (
                TOOLS,
                "<tool_call>\n[1, 2]\n</tool_call>".into(),
                vec![content("<tool_call>\n[1, 2]\n</tool_call>")],
            ),
            // Unterminated: parsed if complete, else content.
            (
                TOOLS,
                "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n".into(),
                vec![call(1, "f", "{}")],
            ),
            (
                TOOLS,
                "<tool_call>\n<function=f>\n<param".into(),
                vec![content("<tool_call>\n<function=f>\n<param")],
            ),
            (TOOLS, "ends with <tool_c".into(), vec![content("ends with <tool_c")]),
            (TOOLS, "é <tool_call>{\"name\":\"ü\"}</tool_call> ñ".into(), vec![content("é "), call(1, "ü", "{}"), content("ñ")]),
        ];
        for (options, text, want) in cases {
            assert_eq!(parse_split(options, &text), want, "{text:?}");
        }
    }

    #[test]
    fn held_back_until_decided() {
        let mut p = OutputParser::new(TOOLS);
        assert_eq!(p.push("Hi <tool_c"), vec![content("Hi ")]);
        assert_eq!(p.push("all>\n{\"name\": \"f\"}"), vec![]);
        assert_eq!(p.push("\n</tool_call>"), vec![call(1, "f", "{}")]);
        assert_eq!(p.tool_calls(), 1);
        assert_eq!(p.push("\n"), vec![]);
        assert_eq!(p.finish(), vec![]);

        let mut p = OutputParser::new(TOOLS);
        assert_eq!(p.push("<tool"), vec![]);
        assert_eq!(p.push("box>"), vec![content("<toolbox>")]);

        let mut p = OutputParser::new(PLAIN);
        assert_eq!(p.push("<thi"), vec![]);
        assert_eq!(p.push("nk>abc</thi"), vec![reasoning("abc")]);
        assert_eq!(p.push("nk>"), vec![]);
        assert_eq!(p.push("\n\n"), vec![]);
        assert_eq!(p.push("A"), vec![content("A")]);
    }

    #[test]
    fn partial_tags() {
        assert_eq!(partial_tag("abc<tool_c", CALL_OPEN), 7);
        assert_eq!(partial_tag("abc<", CALL_OPEN), 1);
        assert_eq!(partial_tag("abc", CALL_OPEN), 0);
        assert_eq!(partial_tag("<tool_call>", CALL_OPEN), 0);
        assert_eq!(partial_tag("", CALL_OPEN), 0);
        assert_eq!(partial_tag("é<", THINK_CLOSE), 1);
    }

    /// A forced opening in either form, then the rest of the call as the model writes it.
    #[test]
    fn primed_with_a_forced_opening() {
        let cases = [
            (
                forced_opening(Some("get_weather"), true),
                "<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
            ),
            (
                forced_opening(Some("get_weather"), false),
                "{\"city\": \"Paris\"}}\n</tool_call>",
            ),
            (
                forced_opening(None, true),
                "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
            ),
        ];
        for (primer, rest) in cases {
            let mut p = OutputParser::new(ParserOptions {
                primer: primer.clone(),
                ..TOOLS
            });
            let mut pieces = p.push(rest);
            pieces.extend(p.finish());
            assert_eq!(pieces.len(), 1, "{primer:?}: {pieces:?}");
            let Piece::ToolCall(call) = &pieces[0] else {
                panic!("{primer:?}: {pieces:?}");
            };
            assert_eq!(call.name, "get_weather");
            let args: Value = serde_json::from_str(&call.arguments).unwrap();
            assert_eq!(args, serde_json::json!({"city": "Paris"}));
        }
        assert_eq!(
            forced_opening(Some("a\"b"), false),
            "<tool_call>\n{\"name\": \"a\\\"b\", \"arguments\": "
        );
    }
}
