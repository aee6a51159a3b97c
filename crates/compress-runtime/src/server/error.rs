//! OpenAI-style error responses: `{"error": {"message", "type", "param", "code"}}` with a 4xx
//! status for anything the client sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A refused request: the status and the code and message of its error body.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status (4xx for user input).
    pub status: StatusCode,
    /// Machine-readable code (`invalid_request`, `model_not_found`, …).
    pub code: &'static str,
    /// What was wrong, naming the field and value.
    pub message: String,
}

impl ApiError {
    /// A 400 `invalid_request` error.
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

/// The request body, or the error for one that could not be read (too large: 413), in the
/// OpenAI error shape rather than axum's plain-text rejection.
pub fn read_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| ApiError {
        status: e.status(),
        code: match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            _ => "invalid_request",
        },
        message: format!("request body: {}", e.body_text()),
    })
}

/// The response for an error with `status`, `code` and `message`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::NOT_FOUND => "not_found_error",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request_error",
    };
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

/// A 503 `server_overloaded` with `Retry-After: 1`: the server is busy, not the request wrong.
pub fn overloaded(message: impl Into<String>) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_overloaded",
        message,
    );
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    r
}
