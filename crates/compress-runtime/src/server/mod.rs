//! `compress serve`: an OpenAI-compatible HTTP server (axum on tokio) on the continuous-batching
//! engine, which runs on its own thread ([`engine_thread`]).
//!
//! Endpoints: `GET /health`, `GET /v1/models`, `GET /metrics` (Prometheus),
//! `POST /v1/completions` (prompt as text, token ids, or a list of either) and
//! `POST /v1/chat/completions` (the model's chat template), and vLLM's `POST /tokenize` and
//! `POST /detokenize`. Both generation endpoints take `max_tokens`,
//! `temperature`, `top_p`, `seed`, `stop`, `n` (samples forked copy-on-write), logprobs, and
//! `stream: true` (server-sent events ending with `data: [DONE]`), and report `usage`. Bad
//! requests get a 4xx with an OpenAI-style JSON error body; `api_key` requires
//! `Authorization: Bearer <key>` (any case of the scheme); POST bodies must be
//! `application/json`, are limited in size and must arrive within [`Limits::read_timeout`], as
//! must headers; [`Limits`] also bounds the sequences one request starts and the queue. A client that disconnects drops
//! its request's [`engine_thread::Ticket`], which aborts it and frees its blocks.

pub mod accept;
pub mod chat;
pub mod completions;
pub mod engine_thread;
pub mod error;
pub mod generation;
pub mod metrics;
pub mod params;
pub mod respond;
pub mod template;
pub mod tokenize;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::engine::{Engine, EngineConfig};
use crate::error::Result;
use crate::loader::Model;
pub use accept::serve;
pub use engine_thread::EngineHandle;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind (127.0.0.1 unless told otherwise).
    pub addr: SocketAddr,
    /// Required bearer token, if any.
    pub api_key: Option<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Name `/v1/models` lists and requests must use.
    pub model_name: String,
    /// Chat template file to use instead of the model's.
    pub chat_template: Option<std::path::PathBuf>,
}

/// Default of [`Limits::read_timeout`] (`--read-timeout`), as hyper's header default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`Limits::max_request_seqs`] (`--max-request-seqs`).
pub const DEFAULT_MAX_REQUEST_SEQS: usize = 256;
/// Default of [`Limits::max_queued_seqs`] (`--max-queued-seqs`).
pub const DEFAULT_MAX_QUEUED_SEQS: usize = 1024;
/// Default of [`Limits::max_connections`] (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of [`Limits::shutdown_timeout`] (`--shutdown-timeout`), as Kubernetes' grace period.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The work one request may ask for, checked before anything is queued. Kept apart from
/// [`ServerConfig`] so that code building a `ServerConfig` literal keeps compiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most sequences (prompts × `n`) one request may start; more is a 400.
    pub max_request_seqs: usize,
    /// While more sequences than this wait in the engine, new generation requests get a 503
    /// with `Retry-After` (a soft bound: requests checked at the same moment all pass).
    pub max_queued_seqs: usize,
    /// Longest wait for a request's headers, and separately for its whole body; past it the
    /// connection is closed (headers) or answered 408 (body). An idle connection (a new one,
    /// or a keep-alive one between requests) waits for headers, so it is closed too.
    pub read_timeout: Duration,
    /// Most open connections; one more is answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
    /// After a shutdown signal, how long in-flight requests may take to finish before their
    /// connections are dropped.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_seqs: DEFAULT_MAX_REQUEST_SEQS,
            max_queued_seqs: DEFAULT_MAX_QUEUED_SEQS,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// The engine thread.
    pub engine: EngineHandle,
    /// The model (config, context length).
    pub model: Arc<Model>,
    /// Text ↔ ids, when the model dir has a `tokenizer.json`.
    pub tokenizer: Option<Arc<tokenizers::Tokenizer>>,
    /// The chat template, when the model (or `--chat-template`) has one.
    pub chat_template: Option<template::ChatTemplate>,
    /// The server's own counters.
    pub metrics: Arc<metrics::Metrics>,
    /// Server settings.
    pub config: ServerConfig,
    /// Per-request cost limits.
    pub limits: Limits,
}

/// A line on stderr; unlike `eprintln!` it does not panic when stderr is closed (a server
/// started by a process that stopped reading its output must still shut down cleanly).
pub(crate) fn note(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "compress serve: {msg}");
}

/// The routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let max = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            json_only,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), auth))
        .layer(DefaultBodyLimit::max(max))
        .with_state(state)
}

async fn auth(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    req: HttpRequest,
    next: Next,
) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        if given != Some(key.as_str()) && req.uri().path() != "/health" {
            return error::error(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "missing or wrong API key (Authorization: Bearer <key>)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Every POST route reads JSON: a body sent as anything but `application/json` (parameters
/// such as `; charset=utf-8` allowed) is a 415 rather than parsed as JSON regardless. The body
/// is then read here, within [`Limits::read_timeout`] (a 408 past it) and `max_body_bytes`.
async fn json_only(State(state): State<Arc<AppState>>, req: HttpRequest, next: Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = given
        .as_deref()
        .map(|v| v.split(';').next().unwrap_or("").trim());
    if !essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        let got = match &given {
            Some(v) => format!("Content-Type `{v}`"),
            None => "no Content-Type".into(),
        };
        return error::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("{got}: {} takes application/json", req.uri().path()),
        );
    }
    let (parts, body) = req.into_parts();
    let (max, wait) = (state.config.max_body_bytes, state.limits.read_timeout);
    let bytes = match tokio::time::timeout(wait, axum::body::to_bytes(body, max)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_large = e
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return match too_large {
                true => error::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    format!("request body: over {max} bytes (--max-body-bytes)"),
                ),
                false => error::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "request body: could not be read",
                ),
            };
        }
        Err(_) => {
            return error::error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("request body: not received within {}s", wait.as_secs_f64()),
            )
        }
    };
    next.run(HttpRequest::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235 §2.1) and may be followed by more than one space.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
}

/// Builds the shared state: the engine on `model` with `engine_cfg`, and the tokenizer of
/// `model_dir` when it has one; the default [`Limits`].
pub fn state(
    model: Model,
    engine_cfg: EngineConfig,
    config: ServerConfig,
) -> Result<Arc<AppState>> {
    state_with_limits(model, engine_cfg, config, Limits::default())
}

/// [`state`] with the given per-request cost `limits`.
pub fn state_with_limits(
    model: Model,
    engine_cfg: EngineConfig,
    config: ServerConfig,
    limits: Limits,
) -> Result<Arc<AppState>> {
    let tok_path = model.dir.join("tokenizer.json");
    let tokenizer = match tok_path.is_file() {
        true => Some(Arc::new(compress_format::tokenizer_json::load(&tok_path)?)),
        false => None,
    };
    let chat_template = template::ChatTemplate::load(&model.dir, config.chat_template.as_deref())?;
    let model = Arc::new(model);
    let engine = Engine::new(Arc::clone(&model), engine_cfg)?;
    Ok(Arc::new(AppState {
        engine: EngineHandle::start(engine),
        model,
        tokenizer,
        chat_template,
        metrics: Arc::default(),
        config,
        limits,
    }))
}

/// `GET /v1/models`.
async fn models(State(state): State<Arc<AppState>>) -> Response {
    let created = respond::now();
    axum::Json(serde_json::json!({
        "object": "list",
        "data": [{"id": state.config.model_name, "object": "model", "created": created,
                  "owned_by": "compress", "max_model_len": state.model.config.max_position_embeddings}]
    }))
    .into_response()
}

/// `GET /metrics`.
async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state.engine.snapshot());
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}
