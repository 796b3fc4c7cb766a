//! OpenAI's API as serde types: the chat and text completion requests (with their checks,
//! which name the bad parameter), the responses and stream chunks, and the error object.
//!
//! Unknown request fields are ignored (clients send many); a field of the wrong type or
//! out of range is a 400 naming it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sampling::SamplingParams;

/// An error as OpenAI answers it: an HTTP status and
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// `invalid_request_error` (4xx) or `server_error` (5xx).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request parameter at fault, if one is.
    pub param: Option<String>,
    /// A short machine-readable code, if any.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// An error with `status` (the type follows from it).
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: if status >= 500 {
                "server_error"
            } else {
                "invalid_request_error"
            },
            param: None,
            code: None,
        }
    }

    /// A 400 about `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.into()),
            ..ApiError::new(400, message)
        }
    }

    /// Sets the code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The response body, `{"error": {...}}`.
    pub fn body(&self) -> Value {
        serde_json::json!({ "error": self })
    }
}

/// Reads a request body: JSON syntax errors and fields of the wrong type are 400s naming
/// the place.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::new(400, "the body must be a JSON object"));
    }
    from_value(&value)
}

/// Deserializes `value`, naming the field at fault.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = format!("{path}: {}", e.inner());
        if path == "." {
            ApiError::new(400, e.inner().to_string())
        } else {
            ApiError::invalid(path, message)
        }
    })
}

/// A string or a list of strings (`stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The fields both completion requests share (sampling, stopping, streaming).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommonFields {
    /// Most tokens to generate (deprecated name in chat).
    pub max_tokens: Option<i64>,
    /// Most tokens to generate.
    pub max_completion_tokens: Option<i64>,
    /// Softmax temperature, 0..=2.
    pub temperature: Option<f64>,
    /// Nucleus mass, (0, 1].
    pub top_p: Option<f64>,
    /// Keep the k most likely tokens (0 or -1: off).
    pub top_k: Option<i64>,
    /// Drop tokens below `min_p ×` the most likely, 0..=1.
    pub min_p: Option<f64>,
    /// Penalty on tokens already present, −2..=2.
    pub presence_penalty: Option<f64>,
    /// Penalty per occurrence, −2..=2.
    pub frequency_penalty: Option<f64>,
    /// Multiplicative penalty on repeated tokens, > 0.
    pub repetition_penalty: Option<f64>,
    /// Seed of the draws.
    pub seed: Option<i64>,
    /// Stop strings.
    pub stop: Option<StringOrList>,
    /// Stream server-sent events.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// How many choices (only 1).
    pub n: Option<i64>,
}

/// The checked generation settings of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// `max_tokens` as asked (`None`: up to the context, capped by the server's default).
    pub max_tokens: Option<usize>,
    /// How to sample.
    pub sampling: SamplingParams,
    /// Stop strings (non-empty ones).
    pub stop: Vec<String>,
    /// Stream the answer.
    pub stream: bool,
    /// Send the usage chunk at the end of the stream.
    pub include_usage: bool,
    /// Log-probabilities: `None` off, `Some(n)` with `n` alternatives.
    pub logprobs: Option<usize>,
}

fn range(param: &str, value: f64, ok: bool, what: &str) -> Result<f32, ApiError> {
    if ok && value.is_finite() {
        Ok(value as f32)
    } else {
        Err(ApiError::invalid(
            param,
            format!("{param} must be {what}, got {value}"),
        ))
    }
}

impl CommonFields {
    /// Checks the ranges and applies the values over `defaults`.
    pub fn validate(&self, defaults: &SamplingParams) -> Result<Generation, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid(
                    "n",
                    format!("only n = 1 is supported, got {n}"),
                ));
            }
        }
        let mut max_tokens = None;
        for (param, value) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if let Some(v) = value {
                if v < 1 {
                    return Err(ApiError::invalid(
                        param,
                        format!("{param} must be at least 1, got {v}"),
                    ));
                }
                max_tokens = Some(usize::try_from(v).unwrap_or(usize::MAX));
            }
        }
        let mut s = defaults.clone();
        if let Some(t) = self.temperature {
            s.temperature = range("temperature", t, (0.0..=2.0).contains(&t), "in [0, 2]")?;
        }
        if let Some(p) = self.top_p {
            s.top_p = range("top_p", p, p > 0.0 && p <= 1.0, "in (0, 1]")?;
        }
        if let Some(k) = self.top_k {
            if k < -1 {
                return Err(ApiError::invalid(
                    "top_k",
                    format!("top_k must be ≥ 0 (or -1: off), got {k}"),
                ));
            }
            s.top_k = usize::try_from(k).unwrap_or(0);
        }
        if let Some(p) = self.min_p {
            s.min_p = range("min_p", p, (0.0..=1.0).contains(&p), "in [0, 1]")?;
        }
        if let Some(p) = self.presence_penalty {
            let ok = (-2.0..=2.0).contains(&p);
            s.presence_penalty = range("presence_penalty", p, ok, "in [-2, 2]")?;
        }
        if let Some(p) = self.frequency_penalty {
            let ok = (-2.0..=2.0).contains(&p);
            s.frequency_penalty = range("frequency_penalty", p, ok, "in [-2, 2]")?;
        }
        if let Some(p) = self.repetition_penalty {
            s.repetition_penalty = range("repetition_penalty", p, p > 0.0, "> 0")?;
        }
        if let Some(seed) = self.seed {
            s.seed = Some(seed as u64);
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StringOrList::One(s)) => vec![s.clone()],
            Some(StringOrList::Many(v)) => v.clone(),
        };
        let stream = self.stream.unwrap_or(false);
        let include_usage = self
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        Ok(Generation {
            max_tokens,
            sampling: s,
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            stream,
            include_usage: stream && include_usage,
            logprobs: None,
        })
    }
}

/// A part of a message's content given as a list.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// `text` (others are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// A message's content: a string or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts (only text parts are supported).
    Parts(Vec<ContentPart>),
}

/// One message of a chat request.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer` (taken as `system`), `user`, `assistant` or `tool`.
    pub role: String,
    /// The text (absent or null for an assistant turn that only calls tools).
    pub content: Option<Content>,
    /// An assistant turn's earlier reasoning, shown to templates that read it.
    pub reasoning_content: Option<String>,
    /// An assistant turn's tool calls (OpenAI's shape; `function.arguments` a JSON string).
    pub tool_calls: Option<Vec<Value>>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
    /// The author's name.
    pub name: Option<String>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model (any value: the server has one).
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Report log-probabilities.
    pub logprobs: Option<bool>,
    /// Alternatives per token, 0..=20 (needs `logprobs`).
    pub top_logprobs: Option<i64>,
    /// Tool definitions.
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or `{"type": "function", "function": {"name": …}}`.
    pub tool_choice: Option<Value>,
    /// Variables for the chat template (`enable_thinking`).
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

/// A chat request made ready for the template.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPrompt {
    /// The messages as the template reads them.
    pub messages: Value,
    /// The tools the template shows (none when `tool_choice` is `none`).
    pub tools: Option<Value>,
    /// `chat_template_kwargs.enable_thinking`.
    pub enable_thinking: Option<bool>,
    /// What `tool_choice` asks of the reply.
    pub forcing: ToolForcing,
}

/// What `tool_choice` asks of the reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolForcing {
    /// `auto` (or absent, or `none`): the model decides.
    #[default]
    Auto,
    /// `required`: the reply is a tool call (to any of the tools).
    Required,
    /// `{"type": "function", "function": {"name": …}}`: the reply calls this tool.
    Named(String),
}

impl ChatCompletionRequest {
    /// Checks the chat-only fields; returns the prompt's inputs and the log-probability
    /// setting.
    pub fn validate(&self) -> Result<(ChatPrompt, Option<usize>), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "messages must not be empty"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            messages.push(message_json(i, m)?);
        }
        let logprobs = match (self.logprobs.unwrap_or(false), self.top_logprobs) {
            (_, Some(n)) if !(0..=20).contains(&n) => {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    format!("top_logprobs must be in [0, 20], got {n}"),
                ))
            }
            (true, n) => Some(n.unwrap_or(0) as usize),
            (false, _) => None,
        };
        let mut tools = match &self.tools {
            Some(t) if !t.is_empty() => Some(Value::Array(t.clone())),
            _ => None,
        };
        let mut forcing = ToolForcing::Auto;
        match &self.tool_choice {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "none" => tools = None,
            Some(Value::String(s)) if s == "auto" => {}
            Some(Value::String(s)) if s == "required" => {
                if tools.is_none() {
                    return Err(ApiError::invalid(
                        "tool_choice",
                        "tool_choice \"required\" needs a non-empty tools list",
                    ));
                }
                forcing = ToolForcing::Required;
            }
            Some(v) if v.pointer("/function/name").is_some_and(Value::is_string) => {
                let name = v.pointer("/function/name").and_then(Value::as_str);
                let name = name.unwrap_or_default().to_string();
                let offered = self.tools.iter().flatten().any(|t| {
                    t.pointer("/function/name").and_then(Value::as_str) == Some(name.as_str())
                });
                if !offered {
                    return Err(ApiError::invalid(
                        "tool_choice",
                        format!("tool_choice names {name:?}, which is not in tools"),
                    ));
                }
                forcing = ToolForcing::Named(name);
            }
            Some(v) => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("tool_choice must be \"none\", \"auto\", \"required\" or a named function, got {v}"),
                ))
            }
        }
        let enable_thinking = match self
            .chat_template_kwargs
            .as_ref()
            .and_then(|k| k.get("enable_thinking"))
        {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => {
                return Err(ApiError::invalid(
                    "chat_template_kwargs.enable_thinking",
                    format!("enable_thinking must be a boolean, got {v}"),
                ))
            }
        };
        let prompt = ChatPrompt {
            messages: Value::Array(messages),
            tools,
            enable_thinking,
            forcing,
        };
        Ok((prompt, logprobs))
    }
}

/// A message as the template reads it: role normalized, content a string, tool call
/// arguments objects (Hugging Face's convention) rather than JSON strings.
fn message_json(i: usize, m: &ChatMessage) -> Result<Value, ApiError> {
    let role = match m.role.as_str() {
        "system" | "developer" => "system",
        r @ ("user" | "assistant" | "tool") => r,
        other => {
            return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                format!(
                    "unknown role {other:?}: expected system, developer, user, assistant or tool"
                ),
            ))
        }
    };
    let content = match &m.content {
        None => String::new(),
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.kind.as_str(), &part.text) {
                    ("text", Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("messages[{i}].content[{j}]"),
                            format!("only text content parts are supported, got type {kind:?}"),
                        ))
                    }
                }
            }
            text
        }
    };
    let mut out = serde_json::Map::new();
    out.insert("role".into(), role.into());
    out.insert("content".into(), content.into());
    if let Some(r) = &m.reasoning_content {
        out.insert("reasoning_content".into(), r.clone().into());
    }
    if let Some(calls) = &m.tool_calls {
        let calls = calls
            .iter()
            .map(|call| {
                let mut call = call.clone();
                if let Some(args) = call.pointer_mut("/function/arguments") {
                    if let Some(parsed) = args.as_str().and_then(|s| serde_json::from_str(s).ok()) {
                        *args = parsed;
                    }
                }
                call
            })
            .collect();
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        out.insert("tool_call_id".into(), id.clone().into());
    }
    if let Some(name) = &m.name {
        out.insert("name".into(), name.clone().into());
    }
    Ok(Value::Object(out))
}

/// A text completion's prompt: text, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// A list of texts (only one is supported).
    Texts(Vec<String>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The model (any value: the server has one).
    pub model: Option<String>,
    /// The prompt.
    pub prompt: Prompt,
    /// Echo the prompt (only `false`).
    pub echo: Option<bool>,
    /// Report log-probabilities with this many alternatives (0..=20).
    pub logprobs: Option<i64>,
}

/// A completion prompt, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    /// Text to tokenize.
    Text(String),
    /// Ids as given.
    Tokens(Vec<u32>),
}

impl CompletionRequest {
    /// Checks the completion-only fields.
    pub fn validate(&self) -> Result<(PromptInput, Option<usize>), ApiError> {
        if self.echo == Some(true) {
            return Err(ApiError::invalid("echo", "echo is not supported"));
        }
        let prompt = match &self.prompt {
            Prompt::Text(t) => PromptInput::Text(t.clone()),
            Prompt::Tokens(ids) => PromptInput::Tokens(ids.clone()),
            Prompt::Texts(texts) if texts.len() == 1 => PromptInput::Text(texts[0].clone()),
            Prompt::Texts(texts) => {
                return Err(ApiError::invalid(
                    "prompt",
                    format!(
                        "only one prompt per request is supported, got {}",
                        texts.len()
                    ),
                ))
            }
        };
        if matches!(&prompt, PromptInput::Tokens(ids) if ids.is_empty()) {
            return Err(ApiError::invalid("prompt", "the prompt must not be empty"));
        }
        let logprobs = match self.logprobs {
            None => None,
            Some(n) if (0..=20).contains(&n) => Some(n as usize),
            Some(n) => {
                return Err(ApiError::invalid(
                    "logprobs",
                    format!("logprobs must be in [0, 20], got {n}"),
                ))
            }
        };
        Ok((prompt, logprobs))
    }
}

/// Token counts of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
    /// Where the prompt's tokens came from.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens taken from the prefix cache.
    pub cached_tokens: usize,
}

/// A tool call in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCall {
    /// Its position among the calls (stream deltas only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// `call_…`.
    pub id: String,
    /// `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionCall {
    /// Its name.
    pub name: String,
    /// Its arguments, a JSON object's text.
    pub arguments: String,
}

/// One token's log-probability in a chat response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its text's UTF-8 bytes.
    pub bytes: Vec<u8>,
    /// The most likely tokens at this position (chosen token's entry only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Vec<TokenLogprob>>,
}

/// A chat choice's `logprobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<TokenLogprob>,
}

/// The assistant's message of a chat completion (or a stream chunk's `delta`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delta {
    /// `assistant` (first chunk, or the whole message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// The answer's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The thinking text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// A choice of a chat completion (`message`) or chunk (`delta`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChoice {
    /// Always 0.
    pub index: usize,
    /// The whole message (non-streamed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Delta>,
    /// The new part (streamed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    /// Log-probabilities, when asked.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop`, `length` or `tool_calls`; null until the last chunk.
    pub finish_reason: Option<&'static str>,
}

/// A chat completion (`chat.completion`) or stream chunk (`chat.completion.chunk`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`, the same in every chunk.
    pub id: String,
    /// `chat.completion` or `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model's id.
    pub model: String,
    /// One choice (none in the usage chunk).
    pub choices: Vec<ChatChoice>,
    /// Token counts (whole response, or the usage chunk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A text completion choice's `logprobs` (the legacy shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompletionLogprobs {
    /// The tokens' texts.
    pub tokens: Vec<String>,
    /// Their log-probabilities.
    pub token_logprobs: Vec<f32>,
    /// The alternatives at each position, text → log-probability.
    pub top_logprobs: Vec<serde_json::Map<String, Value>>,
    /// Each token's character offset in the generated text.
    pub text_offset: Vec<usize>,
}

/// A text completion choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionChoice {
    /// Always 0.
    pub index: usize,
    /// The generated text (or its new part).
    pub text: String,
    /// Log-probabilities, when asked.
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` or `length`; null until the last chunk.
    pub finish_reason: Option<&'static str>,
}

/// A text completion (`text_completion`), whole or one stream chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextCompletion {
    /// `cmpl-…`.
    pub id: String,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model's id.
    pub model: String,
    /// One choice (none in the usage chunk).
    pub choices: Vec<CompletionChoice>,
    /// Token counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// `GET /v1/models`' entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelCard {
    /// The model's id.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// Unix seconds (when the server started).
    pub created: u64,
    /// `mlx-lm`.
    pub owned_by: &'static str,
}
