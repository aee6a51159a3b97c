//! `http`: request bodies of `/v1/completions` and `/v1/chat/completions` through the
//! server's own steps up to the engine: `params::parse`, the endpoint's checks, `params::plan`,
//! prompt encoding or chat-template rendering, and `Plan::request_for` (the engine's checks),
//! against an `AppState` over the demo model (built once).

use std::sync::Arc;

use compress_runtime::engine::EngineConfig;
use compress_runtime::loader::Model;
use compress_runtime::server::chat::{chat_prompt, ChatBody};
use compress_runtime::server::completions::{encode, CompletionBody, Prompt};
use compress_runtime::server::error::ApiError;
use compress_runtime::server::params::{parse, plan, Plan};
use compress_runtime::server::{state, AppState, ServerConfig};

use super::{demo_model, Kind, Target};

/// The request-body parsing and checks of the two generation endpoints.
pub struct HttpTarget {
    state: Arc<AppState>,
}

const COMPLETION_FIELDS: &[&str] = &["prompt", "logprobs", "echo", "best_of", "suffix"];
const CHAT_FIELDS: &[&str] = &[
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

impl HttpTarget {
    /// Loads the demo model and starts its engine (64 KV blocks).
    pub fn new() -> Self {
        let model = Model::load(&demo_model()).expect("loading the demo model");
        let config = ServerConfig {
            addr: ([127, 0, 0, 1], 0).into(),
            api_key: None,
            max_body_bytes: 1 << 20,
            model_name: "demo".into(),
            chat_template: None,
        };
        let state = state(model, EngineConfig::with_blocks(64), config).expect("server state");
        Self { state }
    }
}

impl Default for HttpTarget {
    fn default() -> Self {
        Self::new()
    }
}

/// `/v1/completions` up to the engine (the handler's steps, in its order).
fn completions(state: &AppState, body: &[u8]) -> Result<(), ApiError> {
    let (req, common) = parse::<CompletionBody>(body, COMPLETION_FIELDS)?;
    if req.echo == Some(true) || req.suffix.is_some() {
        return Err(ApiError::bad("echo/suffix"));
    }
    let logprobs = match req.logprobs {
        Some(k) if k < 0 => return Err(ApiError::bad("logprobs")),
        k => k.map(|k| k as usize),
    };
    let plan = plan(state, &common, logprobs)?;
    if req.best_of.is_some_and(|b| b != plan.request.n as i64) {
        return Err(ApiError::bad("best_of"));
    }
    let prompts = match req.prompt {
        Prompt::Text(t) => vec![encode(state, "prompt", &t)?],
        Prompt::Ids(ids) => vec![ids],
        Prompt::Texts(ts) => ts
            .iter()
            .map(|t| encode(state, "prompt", t))
            .collect::<Result<_, _>>()?,
        Prompt::IdLists(l) => l,
    };
    requests(state, &plan, prompts)
}

fn requests(state: &AppState, plan: &Plan, prompts: Vec<Vec<u32>>) -> Result<(), ApiError> {
    if prompts.is_empty() {
        return Err(ApiError::bad("prompt: an empty list"));
    }
    for p in prompts {
        plan.request_for(state, p)?;
    }
    Ok(())
}

/// `/v1/chat/completions` up to the engine.
fn chat(state: &AppState, body: &[u8]) -> Result<(), ApiError> {
    let (req, mut common) = parse::<ChatBody>(body, CHAT_FIELDS)?;
    if let Some(m) = req.max_completion_tokens {
        common.max_tokens = Some(m);
    }
    let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (_, Some(k)) if k < 0 => return Err(ApiError::bad("top_logprobs")),
        (false, Some(_)) => return Err(ApiError::bad("top_logprobs")),
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, None) => None,
    };
    let plan = plan(state, &common, logprobs)?;
    let add = req.add_generation_prompt.unwrap_or(true);
    let prompt = chat_prompt(state, req.messages, add)?;
    requests(state, &plan, vec![prompt])
}

impl Target for HttpTarget {
    fn name(&self) -> &'static str {
        "http"
    }

    fn kind(&self) -> Kind {
        Kind::Json
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            r#"{"model":"demo","prompt":"Call me Ishmael.","max_tokens":8,"temperature":0.7,"top_p":0.9,"seed":3,"stop":["\n","."],"n":2,"logprobs":2,"stream":true,"stream_options":{"include_usage":true},"user":"u","ignore_eos":false}"#,
            r#"{"prompt":[[1,2,3],[4,5]],"max_tokens":4,"best_of":1,"echo":false,"logit_bias":{},"frequency_penalty":0,"presence_penalty":0}"#,
            r#"{"prompt":["one","two three"],"stop":"x"}"#,
            r#"{"prompt":[5,6,7]}"#,
            r#"{"model":"demo","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"},{"role":"assistant","content":null},{"role":"user","content":[{"type":"text","text":"Again"}],"name":"n"}],"max_completion_tokens":16,"logprobs":true,"top_logprobs":3,"tools":[],"tool_choice":"none","parallel_tool_calls":false,"response_format":{"type":"text"},"add_generation_prompt":true}"#,
            r#"{"messages":[{"role":"user","content":"Hi"}],"temperature":0,"stream":false}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn alloc_limit(&self, input: &[u8]) -> usize {
        super::tree_limit(input.len())
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        let a = completions(&self.state, input).is_ok();
        let b = chat(&self.state, input).is_ok();
        a || b
    }
}
