//! OpenAI-style request and response bodies and the handlers that use them.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AppState;
use crate::engine::{Event, FinishReason, Request};
use crate::sampling::SamplingParams;

/// An OpenAI-style error response: `{"error": {"message", "type", "code"}}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::NOT_FOUND => "not_found_error",
        _ => "invalid_request_error",
    };
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

fn bad(message: impl Into<String>) -> Response {
    reject(message).into_response()
}

/// A refused request: the status and the code and message of its error body.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

fn reject(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        message: message.into(),
    }
}

/// A prompt: text, or token ids.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text (tokenized with the model's tokenizer).
    Text(String),
    /// Token ids.
    Ids(Vec<u32>),
}

/// `POST /v1/completions` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// Model name (must be the served one when given).
    pub model: Option<String>,
    /// The prompt.
    pub prompt: Prompt,
    /// Most tokens to generate.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: i64,
    /// Sampling temperature (0 = greedy).
    pub temperature: Option<f32>,
    /// Nucleus mass.
    pub top_p: Option<f32>,
    /// Seed of the request's sampler.
    pub seed: Option<u64>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Accepted for compatibility; must be 1 for now.
    pub n: Option<usize>,
    /// Accepted for compatibility and ignored.
    pub user: Option<String>,
}

fn default_max_tokens() -> i64 {
    16
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({
        "object": "list",
        "data": [{"id": state.config.model_name, "object": "model", "created": now(), "owned_by": "compress"}]
    }))
    .into_response()
}

fn finish_name(r: &FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Aborted => "abort",
    }
}

/// The checked engine request of a completion body, or the 4xx response.
fn engine_request(
    state: &AppState,
    req: &CompletionRequest,
) -> std::result::Result<Request, ApiError> {
    if let Some(m) = &req.model {
        if *m != state.config.model_name {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                code: "model_not_found",
                message: format!(
                    "model `{m}` is not served here (it serves `{}`)",
                    state.config.model_name
                ),
            });
        }
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(reject("n: only 1 is supported so far"));
    }
    if req.max_tokens <= 0 {
        return Err(reject(format!(
            "max_tokens: must be > 0, got {}",
            req.max_tokens
        )));
    }
    let cfg = &state.model.config;
    let prompt = match &req.prompt {
        Prompt::Ids(ids) => ids.clone(),
        Prompt::Text(text) => match &state.tokenizer {
            Some(t) => t
                .encode(text.as_str(), false)
                .map_err(|e| reject(format!("prompt: {e}")))?
                .get_ids()
                .to_vec(),
            None => {
                return Err(reject(
                    "prompt: the model has no tokenizer.json; send token ids",
                ))
            }
        },
    };
    if prompt.is_empty() {
        return Err(reject("prompt: empty"));
    }
    if let Some(&t) = prompt.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        return Err(reject(format!(
            "prompt: token {t} is outside the vocabulary of {}",
            cfg.vocab_size
        )));
    }
    if prompt.len() >= cfg.max_position_embeddings {
        return Err(reject(format!(
            "prompt: {} tokens, the model's context is {}",
            prompt.len(),
            cfg.max_position_embeddings
        )));
    }
    let temperature = req.temperature.unwrap_or(1.0);
    let top_p = req.top_p.unwrap_or(1.0);
    if !(temperature.is_finite() && temperature >= 0.0 && top_p > 0.0 && top_p <= 1.0) {
        return Err(reject("temperature must be ≥ 0 and top_p in (0, 1]"));
    }
    let room = cfg.max_position_embeddings - prompt.len();
    Ok(Request {
        prompt,
        max_tokens: (req.max_tokens as usize).min(room),
        sampling: SamplingParams {
            temperature,
            top_p,
            seed: req.seed.unwrap_or(0),
        },
        stop_tokens: cfg.eos_token_ids.clone(),
        n: 1,
    })
}

/// Text of `ids` (empty without a tokenizer).
fn text_of(state: &AppState, ids: &[u32]) -> String {
    state
        .tokenizer
        .as_ref()
        .and_then(|t| t.decode(ids, true).ok())
        .unwrap_or_default()
}

/// `POST /v1/completions`.
pub async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let req: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("request body: {e}")),
    };
    let engine_req = match engine_request(&state, &req) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let prompt_tokens = engine_req.prompt.len();
    let mut rx = match state.engine.submit(engine_req) {
        Ok(rx) => rx,
        Err(e) => return bad(e.to_string()),
    };
    let id = format!("cmpl-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let (created, model) = (now(), state.config.model_name.clone());
    if !req.stream {
        let mut tokens = Vec::new();
        let mut finish = FinishReason::Length;
        while let Some(e) = rx.recv().await {
            match e {
                Event::Token { token, .. } => tokens.push(token),
                Event::Finished { reason, .. } => {
                    finish = reason;
                    break;
                }
            }
        }
        let body = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text_of(&state, &tokens), "token_ids": tokens,
                         "logprobs": null, "finish_reason": finish_name(&finish)}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens.len(),
                      "total_tokens": prompt_tokens + tokens.len()}
        });
        return Json(body).into_response();
    }
    // Streaming: one event per token with the text it completes (whole characters only), a
    // last one with the finish reason, then `[DONE]`.
    let chunk = move |text: String, ids: Vec<u32>, finish: Option<&str>| -> Value {
        json!({"id": id, "object": "text_completion", "created": created, "model": model,
               "choices": [{"index": 0, "text": text, "token_ids": ids, "logprobs": null,
                            "finish_reason": finish}]})
    };
    let stream = futures_util::stream::unfold(
        (rx, Vec::<u32>::new(), 0usize, false, state),
        move |(mut rx, mut tokens, mut sent, done, state)| {
            let chunk = chunk.clone();
            async move {
                if done {
                    return None;
                }
                let event = match rx.recv().await {
                    Some(Event::Token { token, .. }) => {
                        tokens.push(token);
                        let text = text_of(&state, &tokens);
                        // Only whole characters, and nothing if decoding rewrote earlier text.
                        let delta = match text.get(sent..) {
                            Some(d) if !text.ends_with('\u{FFFD}') => {
                                let d = d.to_string();
                                sent = text.len();
                                d
                            }
                            _ => String::new(),
                        };
                        SseEvent::default().data(chunk(delta, vec![token], None).to_string())
                    }
                    Some(Event::Finished { reason, .. }) => {
                        let data = chunk(String::new(), vec![], Some(finish_name(&reason)));
                        let ev = SseEvent::default().data(data.to_string());
                        return Some((Ok::<_, Infallible>(ev), (rx, tokens, sent, true, state)));
                    }
                    None => return None,
                };
                Some((Ok(event), (rx, tokens, sent, false, state)))
            }
        },
    );
    let done = futures_util::stream::once(async { Ok(SseEvent::default().data("[DONE]")) });
    Sse::new(futures_util::StreamExt::chain(stream, done)).into_response()
}
