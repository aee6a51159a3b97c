//! The request fields `/v1/completions` and `/v1/chat/completions` share, and their checks:
//! everything a client sends is validated here, so bad input is a 400 naming the field and
//! value before anything reaches the engine.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::AppState;
use crate::engine::{check_request, Request};
use crate::sampling::SamplingParams;

/// Most samples per prompt (`n`).
pub const MAX_N: usize = 128;
/// Most alternatives per token (`logprobs` / `top_logprobs`).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most stop strings.
pub const MAX_STOPS: usize = 16;

/// `stop`: one string or a list.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with the usage (and no choices) before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields both endpoints take.
#[derive(Deserialize, Debug, Default)]
pub struct Common {
    /// Model name (must be the served one when given).
    pub model: Option<String>,
    /// Most tokens to generate per sample.
    pub max_tokens: Option<i64>,
    /// Sampling temperature (0 = greedy; default 1); f64 so that errors quote what was sent.
    pub temperature: Option<f64>,
    /// Nucleus mass (default 1).
    pub top_p: Option<f64>,
    /// Seed of the request's sampler.
    pub seed: Option<u64>,
    /// Stop strings: the text ends before the first match, which is not returned.
    pub stop: Option<Stop>,
    /// Samples per prompt (forked copy-on-write from the prompt's KV).
    pub n: Option<i64>,
    /// Stream server-sent events.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Accepted and ignored (an end-user id).
    pub user: Option<String>,
    /// Only 0 is supported.
    pub frequency_penalty: Option<f64>,
    /// Only 0 is supported.
    pub presence_penalty: Option<f64>,
    /// Only an empty map is supported.
    pub logit_bias: Option<Map<String, Value>>,
    /// Keep generating past the end-of-sequence token (vLLM's extension; for benchmarks).
    pub ignore_eos: Option<bool>,
}

/// Fields of [`Common`], for the unknown-field check.
pub const COMMON_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "ignore_eos",
];

/// What a checked request asks for, besides its prompts.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Engine request template (prompt empty; `max_tokens` is set for each prompt).
    pub request: Request,
    /// Stop strings.
    pub stops: Vec<String>,
    /// Stream server-sent events.
    pub stream: bool,
    /// Send a usage chunk at the end of a stream.
    pub include_usage: bool,
    /// Requested `max_tokens` (`None`: up to the context or what the KV cache holds).
    pub max_tokens: Option<usize>,
}

/// Parses `body` as a JSON object whose keys are all in `common` or `own`, then as `T`.
pub fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    own: &[&str],
) -> Result<(T, Common), ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("request body: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(ApiError::bad("request body: expected a JSON object"));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !COMMON_FIELDS.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        return Err(ApiError::bad(format!("unknown field `{k}`")));
    }
    let field_error = |e: serde_json::Error| ApiError::bad(format!("request body: {e}"));
    let common = Common::deserialize(&value).map_err(field_error)?;
    let own = T::deserialize(&value).map_err(field_error)?;
    Ok((own, common))
}

/// A 404 unless `model` is absent or the served model's name.
pub fn check_model(state: &AppState, model: &Option<String>) -> Result<(), ApiError> {
    match model {
        Some(m) if *m != state.config.model_name => Err(ApiError {
            status: axum::http::StatusCode::NOT_FOUND,
            code: "model_not_found",
            message: format!(
                "model `{m}` is not served here (it serves `{}`)",
                state.config.model_name
            ),
        }),
        _ => Ok(()),
    }
}

/// Checks `c` against the served model; `logprobs` is the number of alternatives asked for.
pub fn plan(state: &AppState, c: &Common, logprobs: Option<usize>) -> Result<Plan, ApiError> {
    check_model(state, &c.model)?;
    let max_tokens = match c.max_tokens {
        Some(m) if m <= 0 => {
            return Err(ApiError::bad(format!("max_tokens: must be > 0, got {m}")))
        }
        m => m.map(|m| m as usize),
    };
    let n = c.n.unwrap_or(1);
    if !(1..=MAX_N as i64).contains(&n) {
        return Err(ApiError::bad(format!("n: must be in 1..={MAX_N}, got {n}")));
    }
    let temperature = c.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=100.0).contains(&temperature)) {
        return Err(ApiError::bad(format!(
            "temperature: must be in [0, 100], got {temperature:?}"
        )));
    }
    let top_p = c.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad(format!(
            "top_p: must be in (0, 1], got {top_p:?}"
        )));
    }
    for (name, v) in [
        ("frequency_penalty", c.frequency_penalty),
        ("presence_penalty", c.presence_penalty),
    ] {
        if v.is_some_and(|v| v != 0.0) {
            return Err(ApiError::bad(format!("{name}: only 0 is supported")));
        }
    }
    if c.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(ApiError::bad("logit_bias: not supported"));
    }
    let stops = match &c.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if !stops.is_empty() && state.tokenizer.is_none() {
        return Err(ApiError::bad(
            "stop: the model has no tokenizer.json, so there is no text to match",
        ));
    }
    if stops.len() > MAX_STOPS || stops.iter().any(String::is_empty) {
        return Err(ApiError::bad(format!(
            "stop: at most {MAX_STOPS} non-empty strings"
        )));
    }
    if logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
        return Err(ApiError::bad(format!(
            "logprobs: at most {MAX_TOP_LOGPROBS} alternatives"
        )));
    }
    let stream = c.stream.unwrap_or(false);
    if c.stream_options.is_some() && !stream {
        return Err(ApiError::bad("stream_options: only with stream: true"));
    }
    Ok(Plan {
        request: Request {
            prompt: Vec::new(),
            max_tokens: 1,
            sampling: SamplingParams {
                temperature: temperature as f32,
                top_p: top_p as f32,
                seed: c.seed.unwrap_or(0),
            },
            stop_tokens: match c.ignore_eos.unwrap_or(false) {
                true => Vec::new(),
                false => state.model.config.eos_token_ids.clone(),
            },
            n: n as usize,
            logprobs,
        },
        stops,
        stream,
        include_usage: c.stream_options.as_ref().is_some_and(|o| o.include_usage),
        max_tokens,
    })
}

impl Plan {
    /// The engine request for `prompt`, checked as the engine will check it (vocabulary,
    /// context, KV cache). A `max_tokens` that runs past the context is a 400 (as OpenAI and
    /// vLLM answer); without one, generation runs up to the context or what the KV cache holds.
    pub fn request_for(&self, state: &AppState, prompt: Vec<u32>) -> Result<Request, ApiError> {
        let ctx = state.model.config.max_position_embeddings;
        if let Some(m) = self.max_tokens {
            let p = prompt.len();
            if p.saturating_add(m) > ctx {
                return Err(ApiError::bad(format!(
                    "max_tokens: this model's maximum context length is {ctx} tokens. However, \
                     you requested {} tokens ({p} in the prompt, {m} in the completion). Please \
                     reduce the length of the prompt or max_tokens.",
                    p.saturating_add(m)
                )));
            }
        }
        let blocks = state.engine.snapshot().blocks_total;
        let room = ctx.saturating_sub(prompt.len()).max(1);
        // Without max_tokens: up to the context, or what the KV cache can hold.
        let cache = blocks * crate::kv::BLOCK_SIZE;
        let default = room.min(cache.saturating_sub(prompt.len()).max(1));
        let req = Request {
            prompt,
            max_tokens: self.max_tokens.unwrap_or(default),
            ..self.request.clone()
        };
        check_request(&state.model.config, blocks, &req)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        Ok(req)
    }
}
