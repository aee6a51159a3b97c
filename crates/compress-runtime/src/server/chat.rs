//! `POST /v1/chat/completions`: messages rendered into one prompt with the model's chat
//! template ([`super::template`]); a model without one gets a 400 that says how to give one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::completions::encode;
use super::error::{read_body, ApiError};
use super::params::{parse, plan, Plan};
use super::respond::{respond, Endpoint};
use super::template::Message;
use super::AppState;

/// Message content: text, or a list of parts of which only text parts are supported.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": …}`).
    Parts(Vec<Value>),
}

/// One message of the request.
#[derive(Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// Its content (null for an assistant turn without text).
    pub content: Option<Content>,
    /// Accepted and ignored (a participant name).
    pub name: Option<String>,
}

/// The fields only `/v1/chat/completions` takes.
#[derive(Deserialize)]
pub struct ChatBody {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Report each token's log-probability.
    pub logprobs: Option<bool>,
    /// Alternatives per token (0–20; needs `logprobs: true`).
    pub top_logprobs: Option<i64>,
    /// Newer name of `max_tokens`.
    pub max_completion_tokens: Option<i64>,
    /// Only an empty list is supported.
    pub tools: Option<Vec<Value>>,
    /// Only `none` is supported.
    pub tool_choice: Option<Value>,
    /// Accepted and ignored (no tools).
    pub parallel_tool_calls: Option<bool>,
    /// Only `{"type": "text"}` is supported.
    pub response_format: Option<Value>,
    /// End the prompt with the assistant's turn opener (default true).
    pub add_generation_prompt: Option<bool>,
}

const OWN_FIELDS: &[&str] = &[
    "messages",
    "logprobs",
    "top_logprobs",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "add_generation_prompt",
];

fn text_of(i: usize, c: Option<Content>) -> Result<String, ApiError> {
    match c {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t),
        Some(Content::Parts(parts)) => {
            let mut texts = Vec::new();
            for p in parts {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => texts.push(t.to_string()),
                    (kind, _) => {
                        return Err(ApiError::bad(format!(
                            "messages[{i}].content: only text parts are supported (got type {})",
                            kind.unwrap_or("?")
                        )))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

/// The token ids of `messages` under the model's chat template.
pub fn chat_prompt(
    state: &AppState,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ApiError> {
    let Some(template) = &state.chat_template else {
        return Err(ApiError::bad(
            "this model has no chat template (tokenizer_config.json `chat_template` or \
             chat_template.jinja); use /v1/completions, or start compress serve with \
             --chat-template FILE",
        ));
    };
    if messages.is_empty() {
        return Err(ApiError::bad("messages: empty"));
    }
    let messages: Vec<Message> = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(Message {
                role: m.role,
                content: text_of(i, m.content)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let text = template
        .render(&messages, add_generation_prompt)
        .map_err(|e| ApiError::bad(format!("messages: {e}")))?;
    encode(state, "messages", &text)
}

/// Every check of a `/v1/chat/completions` body before anything is queued: the parsed
/// request's plan and its rendered prompt as ids (the fuzzer calls this too).
pub fn check(state: &AppState, body: &[u8]) -> Result<(Plan, Vec<u32>), ApiError> {
    let (req, mut common) = parse::<ChatBody>(body, OWN_FIELDS)?;
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad("tools: not supported"));
    }
    if req.tool_choice.as_ref().is_some_and(|c| c != "none") {
        return Err(ApiError::bad("tool_choice: only \"none\" is supported"));
    }
    if let Some(f) = &req.response_format {
        if f["type"] != "text" {
            return Err(ApiError::bad(format!(
                "response_format: only {{\"type\": \"text\"}} is supported, got {f}"
            )));
        }
    }
    if let Some(m) = req.max_completion_tokens {
        if common.max_tokens.is_some_and(|t| t != m) {
            return Err(ApiError::bad(
                "max_tokens and max_completion_tokens: give one (or equal values)",
            ));
        }
        common.max_tokens = Some(m);
    }
    let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (_, Some(k)) if k < 0 => {
            return Err(ApiError::bad(format!("top_logprobs: must be ≥ 0, got {k}")))
        }
        (false, Some(_)) => return Err(ApiError::bad("top_logprobs: needs logprobs: true")),
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, None) => None,
    };
    let plan = plan(state, &common, logprobs)?;
    let add = req.add_generation_prompt.unwrap_or(true);
    let prompt = chat_prompt(state, req.messages, add)?;
    Ok((plan, prompt))
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match read_body(body).and_then(|body| check(&state, &body)) {
        Ok((plan, prompt)) => respond(state, Endpoint::Chat, plan, vec![prompt]).await,
        Err(e) => e.into_response(),
    }
}
