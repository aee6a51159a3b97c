//! `compress serve`: an OpenAI-compatible HTTP server (axum on tokio) on the continuous-batching
//! engine, which runs on its own thread ([`engine_thread`]).
//!
//! Endpoints so far: `GET /health`, `GET /v1/models`, `POST /v1/completions` (prompt as text or
//! token ids; `max_tokens`, `temperature`, `top_p`, `seed`; `stream: true` as server-sent events
//! ending with `data: [DONE]`). Bad requests get a 4xx with an OpenAI-style JSON error body;
//! `api_key` requires `Authorization: Bearer <key>`; bodies are limited in size. A client that
//! disconnects drops its event stream, which aborts its request and frees its blocks.

pub mod api;
pub mod engine_thread;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::engine::{Engine, EngineConfig};
use crate::error::{Result, RuntimeError};
use crate::loader::Model;
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
}

/// What every handler shares.
pub struct AppState {
    /// The engine thread.
    pub engine: EngineHandle,
    /// The model (config, context length).
    pub model: Arc<Model>,
    /// Text ↔ ids, when the model dir has a `tokenizer.json`.
    pub tokenizer: Option<tokenizers::Tokenizer>,
    /// Server settings.
    pub config: ServerConfig,
}

/// The routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let max = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/models", get(api::models))
        .route("/v1/completions", post(api::completions))
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
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) && req.uri().path() != "/health" {
            return api::error(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "missing or wrong API key (Authorization: Bearer <key>)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Builds the shared state: the engine on `model` with `engine_cfg`, and the tokenizer of
/// `model_dir` when it has one.
pub fn state(
    model: Model,
    engine_cfg: EngineConfig,
    config: ServerConfig,
) -> Result<Arc<AppState>> {
    let tok_path = model.dir.join("tokenizer.json");
    let tokenizer = match tok_path.is_file() {
        true => Some(
            tokenizers::Tokenizer::from_file(&tok_path)
                .map_err(|e| RuntimeError::Invalid(format!("{}: {e}", tok_path.display())))?,
        ),
        false => None,
    };
    let model = Arc::new(model);
    let engine = Engine::new(Arc::clone(&model), engine_cfg)?;
    Ok(Arc::new(AppState {
        engine: EngineHandle::start(engine),
        model,
        tokenizer,
        config,
    }))
}

/// Serves on `listener` until `shutdown` resolves (in-flight streams are then dropped, which
/// aborts their requests).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
