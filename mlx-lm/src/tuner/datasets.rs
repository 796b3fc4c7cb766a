//! Training data in mlx-lm's formats (`tuner/datasets.py`): a folder with `train.jsonl`,
//! `valid.jsonl` and `test.jsonl`, one JSON object a line, in one of three forms (chosen
//! by the first line's keys, as mlx-lm chooses):
//!
//! - completions: `{"prompt": …, "completion": …}`, rendered as a user turn and an
//!   assistant turn with the chat template;
//! - chat: `{"messages": [{"role": …, "content": …}, …]}` (and optional `tools`), rendered
//!   with the chat template;
//! - text: `{"text": …}`, tokenized as it is, the end-of-text token appended.
//!
//! With `mask_prompt` the loss skips the prompt: everything before the last message (chat)
//! or the completion (completions), as an offset into the tokens.

use crate::chat::{ChatOptions, ChatTemplate};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::Path;

/// One training example: its token ids and how many leading ones the loss skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The ids.
    pub tokens: Vec<u32>,
    /// The prompt's length when the prompt is masked, else 0.
    pub offset: usize,
}

/// The form of a data set's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// `{"prompt": …, "completion": …}`.
    Completions,
    /// `{"messages": […]}`.
    Chat,
    /// `{"text": …}`.
    Text,
}

/// How lines become examples.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataOptions {
    /// Skip the prompt in the loss (not for text data).
    pub mask_prompt: bool,
    /// The id appended to text examples that do not end with it (`None`: nothing).
    pub eos: Option<u32>,
}

/// One JSON object per line of `path`, with its line number (1-based). Blank lines are
/// skipped.
///
/// # Errors
/// An unreadable file; a line that is not a JSON object (the error names the file and
/// the line).
pub fn read_jsonl(path: &Path) -> Result<Vec<(usize, Value)>> {
    let text = crate::load::read_text_file(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at =
            |why: String| Error::InvalidArgument(format!("{}:{}: {why}", path.display(), i + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
        if !v.is_object() {
            return Err(at("not a JSON object".into()));
        }
        out.push((i + 1, v));
    }
    Ok(out)
}

/// The form of a data set, from the keys of its first line (mlx-lm's order:
/// prompt/completion, then messages, then text).
pub fn detect_format(first: &Value) -> Option<DataFormat> {
    let has = |k: &str| first.get(k).is_some();
    if has("prompt") && has("completion") {
        Some(DataFormat::Completions)
    } else if has("messages") {
        Some(DataFormat::Chat)
    } else if has("text") {
        Some(DataFormat::Text)
    } else {
        None
    }
}

/// Tokenizes the lines of `path` (see [`read_jsonl`]) into examples. `template` is needed
/// for chat and completions data.
///
/// # Errors
/// An empty file, an unknown form, a line without its form's keys or with values of the
/// wrong type, a template that fails on a line: every error names the file and line.
/// Prompt masking of text data.
pub fn load_examples(
    path: &Path,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    options: &DataOptions,
) -> Result<Vec<Example>> {
    let lines = read_jsonl(path)?;
    let Some((_, first)) = lines.first() else {
        return Err(Error::InvalidArgument(format!(
            "{}: the data set is empty",
            path.display()
        )));
    };
    let format = detect_format(first).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{}:{}: unsupported data format: expected `prompt` and `completion`, \
             `messages` or `text` keys",
            path.display(),
            lines[0].0
        ))
    })?;
    if format == DataFormat::Text && options.mask_prompt {
        return Err(Error::InvalidArgument(format!(
            "{}: prompt masking is not supported for text data",
            path.display()
        )));
    }
    lines
        .iter()
        .map(|(line, v)| {
            example(v, format, tokenizer, template, options)
                .map_err(|why| Error::InvalidArgument(format!("{}:{line}: {why}", path.display())))
        })
        .collect()
}

/// One line as an example; the error says what is wrong with it.
fn example(
    v: &Value,
    format: DataFormat,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    options: &DataOptions,
) -> std::result::Result<Example, String> {
    let string = |key: &str| -> std::result::Result<&str, String> {
        match v.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(format!("`{key}` is not a string")),
            None => Err(format!("`{key}` is missing")),
        }
    };
    let encode = |text: &str| tokenizer.encode(text).map_err(|e| e.to_string());
    if format == DataFormat::Text {
        let mut tokens = encode(string("text")?)?;
        if let Some(eos) = options.eos {
            if tokens.last() != Some(&eos) {
                tokens.push(eos);
            }
        }
        return Ok(Example { tokens, offset: 0 });
    }
    let template = template.ok_or("chat and completions data need a chat template")?;
    let messages = match format {
        DataFormat::Completions => serde_json::json!([
            {"role": "user", "content": string("prompt")?},
            {"role": "assistant", "content": string("completion")?},
        ]),
        _ => match v.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => Value::Array(m.clone()),
            Some(Value::Array(_)) => return Err("`messages` is empty".into()),
            Some(_) => return Err("`messages` is not a list".into()),
            None => return Err("`messages` is missing".into()),
        },
    };
    let tools = v.get("tools").filter(|t| !t.is_null()).cloned();
    let render = |messages: &Value, add_generation_prompt: bool| {
        let options = ChatOptions {
            add_generation_prompt,
            enable_thinking: None,
            tools: tools.clone(),
        };
        template
            .render_json(messages, &options)
            .map_err(|e| e.to_string())
    };
    let tokens = encode(&render(&messages, false)?)?;
    let offset = if options.mask_prompt {
        let all = messages.as_array().map(Vec::as_slice).unwrap_or_default();
        let last_is_assistant = all
            .last()
            .and_then(|m| m.get("role"))
            .is_some_and(|r| r == "assistant");
        let prompt = Value::Array(all[..all.len() - 1].to_vec());
        encode(&render(&prompt, last_is_assistant)?)?.len()
    } else {
        0
    };
    Ok(Example { tokens, offset })
}

/// The three splits of a data folder (`train.jsonl`, `valid.jsonl`, `test.jsonl`); a
/// missing file is an empty split, as in mlx-lm.
pub fn load_local_dataset(
    dir: &Path,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    options: &DataOptions,
) -> Result<[Vec<Example>; 3]> {
    let split = |name: &str| -> Result<Vec<Example>> {
        let path = dir.join(format!("{name}.jsonl"));
        if !path.exists() {
            return Ok(Vec::new());
        }
        load_examples(&path, tokenizer, template, options)
    };
    Ok([split("train")?, split("valid")?, split("test")?])
}
