//! `POST /tokenize` and `POST /detokenize` (the vLLM extensions): what the server makes of a
//! prompt or a conversation (the chat template applied), and the text of token ids.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::chat::{chat_prompt, ChatMessage};
use super::completions::encode;
use super::error::{read_body, ApiError};
use super::params::check_model;
use super::AppState;

/// `/tokenize` body: a prompt or messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeBody {
    /// Model name (must be the served one when given).
    pub model: Option<String>,
    /// Text to tokenize.
    pub prompt: Option<String>,
    /// A conversation, rendered with the chat template first.
    pub messages: Option<Vec<ChatMessage>>,
    /// With `messages`: end with the assistant's turn opener (default true).
    pub add_generation_prompt: Option<bool>,
}

/// `/detokenize` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetokenizeBody {
    /// Model name (must be the served one when given).
    pub model: Option<String>,
    /// Token ids.
    pub tokens: Vec<u32>,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("request body: {e}")))
}

/// `POST /tokenize`.
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let run = || -> Result<Vec<u32>, ApiError> {
        let bytes = read_body(bytes)?;
        let b: TokenizeBody = body(&bytes)?;
        check_model(&state, &b.model)?;
        match (b.prompt, b.messages) {
            (Some(p), None) => encode(&state, "prompt", &p),
            (None, Some(m)) => chat_prompt(&state, m, b.add_generation_prompt.unwrap_or(true)),
            _ => Err(ApiError::bad("give one of prompt and messages")),
        }
    };
    match run() {
        Ok(tokens) => Json(json!({"count": tokens.len(), "tokens": tokens,
                                  "max_model_len": state.model.config.max_position_embeddings}))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /detokenize`.
pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let run = || -> Result<String, ApiError> {
        let bytes = read_body(bytes)?;
        let b: DetokenizeBody = body(&bytes)?;
        check_model(&state, &b.model)?;
        let vocab = state.model.config.vocab_size;
        if let Some(t) = b.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ApiError::bad(format!(
                "tokens: {t} is outside the vocabulary of {vocab}"
            )));
        }
        let Some(tok) = &state.tokenizer else {
            return Err(ApiError::bad("the model has no tokenizer.json"));
        };
        tok.decode(&b.tokens, false)
            .map_err(|e| ApiError::bad(format!("tokens: {e}")))
    };
    match run() {
        Ok(text) => Json(json!({ "prompt": text })).into_response(),
        Err(e) => e.into_response(),
    }
}
