//! Arguments of `compress serve`.

use std::path::PathBuf;

use clap::Args;

/// `compress serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model directory (float or pack-quantized).
    #[arg(long)]
    pub model: PathBuf,
    /// Address to bind; 127.0.0.1 unless you mean to expose it.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one, printed at start).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` (also read from COMPRESS_API_KEY).
    #[arg(long, env = "COMPRESS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Name of the model in /v1/models and requests (default: the directory name).
    #[arg(long)]
    pub model_name: Option<String>,
    /// KV cache blocks of 16 tokens (default: 64 sequences at full context, at most 4096).
    #[arg(long)]
    pub kv_blocks: Option<usize>,
    /// Most sequences running at once.
    #[arg(long, default_value_t = 64)]
    pub max_seqs: usize,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Chat template (Jinja) for /v1/chat/completions instead of the model's own
    /// (chat_template.jinja or tokenizer_config.json `chat_template`).
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// --top-k of MoE models.
    #[command(flatten)]
    pub top_k: super::TopKArg,
    /// Most sequences (prompts × n) one request may start; more is a 400.
    #[arg(long, default_value_t = compress_runtime::server::DEFAULT_MAX_REQUEST_SEQS)]
    pub max_request_seqs: usize,
    /// While more sequences than this wait in the engine, new requests get a 503 with
    /// Retry-After.
    #[arg(long, default_value_t = compress_runtime::server::DEFAULT_MAX_QUEUED_SEQS)]
    pub max_queued_seqs: usize,
    /// Seconds a client has to send a request's headers, and then its body; past it the
    /// connection is closed (headers) or answered 408 (body).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub read_timeout: u64,
    /// Most open connections; one more is answered 503 with Retry-After and closed.
    #[arg(long, default_value_t = compress_runtime::server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT before their connections
    /// are dropped.
    #[arg(long, value_name = "SECS", default_value_t = compress_runtime::server::DEFAULT_SHUTDOWN_TIMEOUT.as_secs())]
    pub shutdown_timeout: u64,
    /// Most tokens per engine step (decode tokens plus prompt chunks).
    #[arg(long, default_value_t = 512)]
    pub max_batched_tokens: usize,
}
