//! The chat template from `tokenizer_config.json`, rendered with minijinja.
//!
//! Hugging Face chat templates are Jinja2 programs written against Python: they call string
//! methods (`content.split('</think>')`, `.startswith`, `.strip`), `raise_exception(...)`,
//! `namespace(...)`, loop controls and a `tojson` filter that behaves like Python's
//! `json.dumps`. [`ChatTemplate`] sets minijinja up the way transformers' `apply_chat_template`
//! sets up Jinja2 (`trim_blocks`, `lstrip_blocks`, Python string methods, the same `tojson`),
//! so a template renders to the same prompt text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

/// Errors of loading and rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `tokenizer_config.json` is not valid JSON or has an unexpected shape.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The model folder has no chat template.
    #[error(
        "no chat template in {0} (neither chat_template.jinja nor a chat_template field in tokenizer_config.json)"
    )]
    Missing(PathBuf),
    /// The template does not parse.
    #[error("chat template does not parse: {0}")]
    Syntax(String),
    /// Rendering failed: the template called `raise_exception` (bad conversation) or hit an
    /// error.
    #[error("chat template: {0}")]
    Render(String),
    /// Rendering used up its budget ([`ChatTemplate::set_budget`]): the template loops too
    /// long or builds too much text (a template from a model folder is untrusted input).
    #[error(
        "chat template: exceeded its budget of {steps} steps (about {mib} MiB of text); \
         the template loops too long or builds too much text"
    )]
    Budget {
        /// The budget, in minijinja fuel (one instruction, or 64 bytes of data made).
        steps: u64,
        /// The data it allows, in MiB.
        mib: u64,
    },
}

/// The default rendering budget of a [`ChatTemplate`], in minijinja fuel: one unit per
/// instruction and per 64 bytes of text made or written. 16 million bounds a render to a
/// second or so and about 1 GiB of text made along the way; the Qwen 3.5 template renders a
/// 200-turn conversation with tools in a small fraction of it (see `docs/bad-input.md`).
///
/// One gap is minijinja's: it joins lists with `+` lazily and, past 32 levels, copies the
/// chain into a new list without charging it, so a template that doubles a list 40 times
/// still runs for hours and takes all memory. The command line therefore also watches the
/// time and memory a render takes (`cli`); a server rendering untrusted templates should
/// do the same.
pub const DEFAULT_BUDGET: u64 = 16 << 20;

/// Who speaks in a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the assistant; first message only.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's answer to a tool call.
    Tool,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said. For an assistant turn, a leading `<think>…</think>` block is taken
    /// apart by the Qwen template.
    pub content: String,
    /// The assistant's reasoning, when kept apart from `content`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl Message {
    /// A message with the given role and content.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            reasoning_content: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// How to render a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOptions {
    /// Append the opening of the assistant's turn (`<|im_start|>assistant\n`, then the
    /// thinking prefix) so the model writes the reply.
    pub add_generation_prompt: bool,
    /// `enable_thinking` as the template sees it; `None` leaves it undefined, so the
    /// template's default applies (off for the small Qwen 3.5 models: the prompt then ends
    /// with an empty `<think>\n\n</think>\n\n`; on: it ends with `<think>\n`).
    pub enable_thinking: Option<bool>,
    /// Tool definitions (JSON schemas), passed to the template as `tools`.
    pub tools: Option<serde_json::Value>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            add_generation_prompt: true,
            enable_thinking: None,
            tools: None,
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`… from `tokenizer_config.json`, visible to the template.
    special_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles a template from its source text.
    pub fn new(source: impl Into<String>) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| ChatError::Syntax(e.to_string()))?;
        env.set_syntax(syntax);
        // Prompts are plain text: never HTML-escape.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // Print values as Python does (`True`, `None`, `['a', 1.5]`), not as minijinja does.
        env.set_formatter(|out, state, value| match value.kind() {
            ValueKind::Bool
            | ValueKind::None
            | ValueKind::Number
            | ValueKind::Seq
            | ValueKind::Map => {
                let mut text = String::new();
                python_repr(&mut text, value, false)?;
                out.write_str(&text).map_err(minijinja::Error::from)
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        env.add_function("raise_exception", raise_exception);
        // Jinja2's `sequence` test is true for anything with a length and indexing: strings
        // and dicts too.
        env.add_test("sequence", |v: &Value| {
            matches!(
                v.kind(),
                ValueKind::String | ValueKind::Seq | ValueKind::Map
            )
        });
        env.add_filter("tojson", tojson);
        // A template is untrusted input: bound its loops and the text it makes.
        env.set_fuel(Some(DEFAULT_BUDGET));
        env.add_template_owned(NAME, source.into())
            .map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            special_tokens: BTreeMap::new(),
        })
    }

    /// Loads the template of a model folder: `chat_template.jinja` if present, else the
    /// `chat_template` field of `tokenizer_config.json` (a string, or a list of named
    /// templates of which `default` is taken). Special token strings of
    /// `tokenizer_config.json` (`eos_token`…) are made visible to the template.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self, ChatError> {
        let dir = dir.as_ref();
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            let text = read(&config_path)?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ChatError::Config {
                    path: config_path.clone(),
                    message: format!("not valid JSON: {e}"),
                })?;
            Some(json)
        } else {
            None
        };
        let jinja_path = dir.join("chat_template.jinja");
        let source = if jinja_path.is_file() {
            read(&jinja_path)?
        } else {
            match config.as_ref().and_then(|c| c.get("chat_template")) {
                Some(t) => template_from_config(t).ok_or_else(|| ChatError::Config {
                    path: config_path.clone(),
                    message: "chat_template is neither a string nor a list of {name, template}"
                        .into(),
                })?,
                None => return Err(ChatError::Missing(dir.to_path_buf())),
            }
        };
        let mut template = Self::new(source)?;
        if let Some(config) = &config {
            template.special_tokens = special_token_strings(config);
        }
        Ok(template)
    }

    /// Makes a special token string (`"eos_token"` → `"<|im_end|>"`) visible to the template.
    pub fn set_special_token(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.special_tokens.insert(name.into(), value.into());
    }

    /// Sets the rendering budget, in minijinja fuel (one unit per instruction executed and
    /// per 64 bytes of text made, output included): a render that needs more fails with
    /// [`ChatError::Budget`]. The default is [`DEFAULT_BUDGET`]; 0 is taken as 1.
    pub fn set_budget(&mut self, fuel: u64) {
        self.env.set_fuel(Some(fuel.max(1)));
    }

    /// The rendering budget ([`ChatTemplate::set_budget`]).
    pub fn budget(&self) -> u64 {
        self.env.fuel().unwrap_or(DEFAULT_BUDGET)
    }

    /// Renders a conversation to the prompt text.
    pub fn render(&self, messages: &[Message], options: &ChatOptions) -> Result<String, ChatError> {
        let messages =
            serde_json::to_value(messages).map_err(|e| ChatError::Render(e.to_string()))?;
        self.render_json(&messages, options)
    }

    /// Renders messages given as JSON (any fields the template reads: `tool_calls`,
    /// structured `content`…).
    pub fn render_json(
        &self,
        messages: &serde_json::Value,
        options: &ChatOptions,
    ) -> Result<String, ChatError> {
        let mut ctx = serde_json::Map::new();
        for (name, value) in &self.special_tokens {
            ctx.insert(name.clone(), value.clone().into());
        }
        ctx.insert("messages".into(), messages.clone());
        ctx.insert(
            "add_generation_prompt".into(),
            options.add_generation_prompt.into(),
        );
        if let Some(thinking) = options.enable_thinking {
            ctx.insert("enable_thinking".into(), thinking.into());
        }
        if let Some(tools) = &options.tools {
            ctx.insert("tools".into(), tools.clone());
        }
        self.render_context(&serde_json::Value::Object(ctx))
    }

    /// Renders with exactly the given top-level variables (a JSON object), for templates
    /// that read more than `messages`, `tools` and the flags.
    pub fn render_context(&self, context: &serde_json::Value) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| ChatError::Render(describe(&e)))?;
        template
            .render(Value::from(minijinja::value::Serde(context)))
            .map_err(|e| match e.kind() {
                ErrorKind::OutOfFuel => {
                    let steps = self.budget();
                    ChatError::Budget {
                        steps,
                        mib: steps.saturating_mul(64) >> 20,
                    }
                }
                _ => ChatError::Render(describe(&e)),
            })
    }
}

fn read(path: &Path) -> Result<String, ChatError> {
    std::fs::read_to_string(path).map_err(|e| ChatError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn template_from_config(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => {
            let named = |want: Option<&str>| {
                list.iter().find_map(|item| {
                    let name = item.get("name")?.as_str()?;
                    let template = item.get("template")?.as_str()?;
                    (want.is_none() || want == Some(name)).then(|| template.to_string())
                })
            };
            named(Some("default")).or_else(|| named(None))
        }
        _ => None,
    }
}

/// `bos_token`, `eos_token`, `pad_token`, `unk_token`: strings, or `{"content": …}` objects.
fn special_token_strings(config: &serde_json::Value) -> BTreeMap<String, String> {
    ["bos_token", "eos_token", "pad_token", "unk_token"]
        .iter()
        .filter_map(|&name| {
            let value = config.get(name)?;
            let text = value.as_str().or_else(|| value.get("content")?.as_str())?;
            Some((name.to_string(), text.to_string()))
        })
        .collect()
}

/// The message of a template error: for `raise_exception`, the template's own words.
fn describe(err: &minijinja::Error) -> String {
    let mut out = match (err.kind(), err.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
        _ => err.to_string(),
    };
    if let (Some(name), Some(line)) = (err.name(), err.line()) {
        if !out.contains(" (in ") {
            let _ = write!(out, " (in {name} line {line})");
        }
    }
    out
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `tojson` as transformers defines it: Python's `json.dumps` (`", "` and `": "` separators,
/// non-ASCII kept, nothing HTML-escaped), with `indent`, `sort_keys` and `ensure_ascii`.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(" ".repeat(n as usize)),
            _ => match v.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be a non-negative integer or a string",
                    ))
                }
            },
        },
    };
    let options = JsonStyle {
        indent,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, value, &options, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<String>,
    sort_keys: bool,
    ensure_ascii: bool,
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    depth: usize,
) -> Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = value.as_i64().filter(|_| value.is_integer()) {
                let _ = write!(out, "{i}");
            } else {
                let f = f64::try_from(value.clone())?;
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, '[', ']', &items, style, depth, |out, item, depth| {
                write_json(out, item, style, depth)
            })?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key, item));
            }
            if style.sort_keys {
                entries.sort_by_key(|a| a.0.to_string());
            }
            write_container(
                out,
                '{',
                '}',
                &entries,
                style,
                depth,
                |out, (k, v), depth| {
                    match k.as_str() {
                        Some(s) => write_json_string(out, s, style),
                        None => write_json_string(out, &k.to_string(), style),
                    }
                    out.push_str(": ");
                    write_json(out, v, style, depth)
                },
            )?;
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a {} value", value.kind()),
            ))
        }
    }
    Ok(())
}

fn write_container<T>(
    out: &mut String,
    open: char,
    close: char,
    items: &[T],
    style: &JsonStyle,
    depth: usize,
    mut write_item: impl FnMut(&mut String, &T, usize) -> Result<(), minijinja::Error>,
) -> Result<(), minijinja::Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        match &style.indent {
            Some(indent) => {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&indent.repeat(depth + 1));
            }
            None if i > 0 => out.push_str(", "),
            None => {}
        }
        write_item(out, item, depth + 1)?;
    }
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(depth));
    }
    out.push(close);
    Ok(())
}

fn write_json_string(out: &mut String, s: &str, style: &JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if style.ensure_ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `str(value)` as Python writes it; `nested` values (inside a list or dict) use `repr`, so
/// strings get quotes.
fn python_repr(out: &mut String, value: &Value, nested: bool) -> Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined if !nested => {}
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if let Some(i) = value.as_i64().filter(|_| value.is_integer()) {
                let _ = write!(out, "{i}");
            } else {
                out.push_str(&python_float(f64::try_from(value.clone())?));
            }
        }
        ValueKind::String if nested => python_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(out, &item, true)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(out, &key, true)?;
                out.push_str(": ");
                python_repr(out, &value.get_item(&key)?, true)?;
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
    Ok(())
}

/// Python's `repr` of a string: single quotes unless the text has `'` and no `"`.
fn python_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// A float as Python's `repr` writes it (`1.0`, `0.5`, `1e-05`, `1e+16`, `NaN`, `Infinity`
/// as `json.dumps` spells those).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:?}` is the shortest round-trip form with the same switch to exponent
    // notation as Python (below 1e-4, from 1e16); only the exponent is spelled differently.
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_follow_python_repr() {
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(1e-5), "1e-05");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(1.5e300), "1.5e+300");
        assert_eq!(python_float(123456.789), "123456.789");
    }

    #[test]
    fn values_print_like_python() {
        let t = ChatTemplate::new(
            "{{ t }} {{ f }} {{ n }} {{ x }} {{ [1, 'a', \"it's\", none, true] }} {{ {'k': 2.5} }}",
        )
        .unwrap();
        let ctx = serde_json::json!({"t": true, "f": false, "n": null, "x": 1e-7});
        let out = t.render_context(&ctx).unwrap();
        assert_eq!(
            out,
            "True False None 1e-07 [1, 'a', \"it's\", None, True] {'k': 2.5}"
        );
    }
}
