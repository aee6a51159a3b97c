//! `POST /v1/completions`: prompts as text, token ids, or a list of either; each prompt gets
//! `n` choices, numbered `prompt · n + sample`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{read_body, ApiError};
use super::params::{parse, plan, Plan};
use super::respond::{respond, Endpoint};
use super::AppState;

/// A prompt: text, token ids, or a list of either.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text (tokenized with the model's tokenizer).
    Text(String),
    /// Token ids.
    Ids(Vec<u32>),
    /// Several texts.
    Texts(Vec<String>),
    /// Several token-id lists.
    IdLists(Vec<Vec<u32>>),
}

/// The fields only `/v1/completions` takes.
#[derive(Deserialize)]
pub struct CompletionBody {
    /// The prompt(s).
    pub prompt: Prompt,
    /// Report each token's log-probability and this many alternatives (0–20).
    pub logprobs: Option<i64>,
    /// Only false is supported.
    pub echo: Option<bool>,
    /// Only `n` (or absent) is supported.
    pub best_of: Option<i64>,
    /// Only null is supported.
    pub suffix: Option<String>,
}

const OWN_FIELDS: &[&str] = &["prompt", "logprobs", "echo", "best_of", "suffix"];

/// The ids of `text` under the model's tokenizer (special tokens in the text are recognised;
/// none are added).
pub fn encode(state: &AppState, what: &str, text: &str) -> Result<Vec<u32>, ApiError> {
    let Some(t) = &state.tokenizer else {
        return Err(ApiError::bad(format!(
            "{what}: the model has no tokenizer.json; send token ids"
        )));
    };
    let enc = t
        .encode(text, false)
        .map_err(|e| ApiError::bad(format!("{what}: {e}")))?;
    Ok(enc.get_ids().to_vec())
}

fn prompts(state: &AppState, p: Prompt) -> Result<Vec<Vec<u32>>, ApiError> {
    let list = match p {
        Prompt::Text(t) => vec![encode(state, "prompt", &t)?],
        Prompt::Ids(ids) => vec![ids],
        Prompt::Texts(ts) => ts
            .iter()
            .map(|t| encode(state, "prompt", t))
            .collect::<Result<_, _>>()?,
        Prompt::IdLists(l) => l,
    };
    if list.is_empty() {
        return Err(ApiError::bad("prompt: an empty list"));
    }
    Ok(list)
}

/// Every check of a `/v1/completions` body before anything is queued: the parsed request's
/// plan and its prompts as ids (the fuzzer calls this too).
pub fn check(state: &AppState, body: &[u8]) -> Result<(Plan, Vec<Vec<u32>>), ApiError> {
    let (req, common) = parse::<CompletionBody>(body, OWN_FIELDS)?;
    if req.echo == Some(true) {
        return Err(ApiError::bad("echo: not supported"));
    }
    if req.suffix.is_some() {
        return Err(ApiError::bad("suffix: not supported"));
    }
    let logprobs = match req.logprobs {
        Some(k) if k < 0 => return Err(ApiError::bad(format!("logprobs: must be ≥ 0, got {k}"))),
        k => k.map(|k| k as usize),
    };
    let plan = plan(state, &common, logprobs)?;
    if req.best_of.is_some_and(|b| b != plan.request.n as i64) {
        return Err(ApiError::bad("best_of: only equal to n is supported"));
    }
    let prompts = prompts(state, req.prompt)?;
    Ok((plan, prompts))
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match read_body(body).and_then(|body| check(&state, &body)) {
        Ok((plan, prompts)) => respond(state, Endpoint::Completions, plan, prompts).await,
        Err(e) => e.into_response(),
    }
}
