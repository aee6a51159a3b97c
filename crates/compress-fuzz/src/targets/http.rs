//! `http`: request bodies of `/v1/completions` and `/v1/chat/completions` through the
//! server's own steps up to the engine: `params::parse`, the endpoint's checks, `params::plan`,
//! prompt encoding or chat-template rendering, and `Plan::request_for` (the engine's checks),
//! against an `AppState` over the demo model (built once).

use std::sync::Arc;

use compress_runtime::engine::EngineConfig;
use compress_runtime::loader::Model;
use compress_runtime::server::error::ApiError;
use compress_runtime::server::params::Plan;
use compress_runtime::server::{chat, completions};
use compress_runtime::server::{state, AppState, ServerConfig};

use super::{demo_model, Kind, Target};

/// The request-body parsing and checks of the two generation endpoints.
pub struct HttpTarget {
    state: Arc<AppState>,
}

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

/// The endpoint's own checks, then the engine's for each prompt (`Plan::request_for`).
fn requests(state: &AppState, plan: &Plan, prompts: Vec<Vec<u32>>) -> Result<(), ApiError> {
    for p in prompts {
        plan.request_for(state, p)?;
    }
    Ok(())
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
        let a = completions::check(&self.state, input)
            .and_then(|(plan, prompts)| requests(&self.state, &plan, prompts))
            .is_ok();
        let b = chat::check(&self.state, input)
            .and_then(|(plan, prompt)| requests(&self.state, &plan, vec![prompt]))
            .is_ok();
        a || b
    }
}
