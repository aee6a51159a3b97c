//! `compress serve --model M [--host 127.0.0.1] [--port 8000] [--api-key K] [--kv-blocks N]
//! [--max-seqs N] [--max-request-seqs N] [--max-queued-seqs N] [--read-timeout SECS]
//! [--max-connections N] [--shutdown-timeout SECS] [--chat-template FILE]
//! [--top-k K]`: the OpenAI-compatible server of `compress_runtime::server`, until SIGINT or
//! SIGTERM.

use anyhow::{Context, Result};
use compress_runtime::server::{serve, state_with_limits, Limits, ServerConfig};
use compress_runtime::{EngineConfig, Model};

use crate::cli::{Common, ServeArgs};

pub fn run(a: ServeArgs, common: &Common) -> Result<()> {
    if common.device != "cpu" {
        anyhow::bail!(
            "--device {}: the server runs on the CPU runtime",
            common.device
        );
    }
    if a.max_seqs == 0 || a.kv_blocks == Some(0) || a.max_batched_tokens == 0 {
        anyhow::bail!("--max-seqs, --kv-blocks and --max-batched-tokens must be > 0");
    }
    if a.max_request_seqs == 0 || a.read_timeout == 0 || a.max_connections == 0 {
        anyhow::bail!("--max-request-seqs, --read-timeout and --max-connections must be > 0");
    }
    let mut model =
        Model::load(&a.model).with_context(|| format!("loading model {}", a.model.display()))?;
    if let Some(k) = a.top_k.top_k {
        model.set_top_k(k)?;
    }
    let ctx_blocks = model
        .config
        .max_position_embeddings
        .div_ceil(compress_runtime::kv::BLOCK_SIZE);
    let blocks = a.kv_blocks.unwrap_or((ctx_blocks * a.max_seqs).min(4096));
    let engine_cfg = EngineConfig {
        max_num_seqs: a.max_seqs,
        max_batched_tokens: a.max_batched_tokens,
        ..EngineConfig::with_blocks(blocks)
    };
    let name = a.model_name.clone().unwrap_or_else(|| {
        a.model
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned())
    });
    let addr: std::net::SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .with_context(|| format!("--host {} --port {}: not an address", a.host, a.port))?;
    let config = ServerConfig {
        addr,
        api_key: a.api_key.clone(),
        max_body_bytes: a.max_body_bytes,
        model_name: name.clone(),
        chat_template: a.chat_template.clone(),
    };
    let limits = Limits {
        max_request_seqs: a.max_request_seqs,
        max_queued_seqs: a.max_queued_seqs,
        read_timeout: std::time::Duration::from_secs(a.read_timeout),
        max_connections: a.max_connections,
        shutdown_timeout: std::time::Duration::from_secs(a.shutdown_timeout),
    };
    let app = state_with_limits(model, engine_cfg, config, limits)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        if !common.quiet {
            let chat = match app.chat_template.is_some() {
                true => "chat template loaded",
                false => "no chat template: /v1/chat/completions refuses",
            };
            eprintln!("compress serve: {name} on http://{local} ({blocks} KV blocks; {chat})");
        }
        serve(listener, app, shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
