//! Serving from Rust: the OpenAI-compatible server of `compress serve` embedded in your own
//! program. It loads a model, starts the server on a free port of 127.0.0.1, sends it one chat
//! request over plain HTTP, prints the answer, and shuts the server down.
//!
//! ```text
//! cargo run -p compress-runtime --example serve_embedded [-- MODEL_DIR]
//! ```

use std::path::PathBuf;

use compress_runtime::server::{serve, state, ServerConfig};
use compress_runtime::{EngineConfig, Model};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or("examples/models/demo".into()),
    );
    let model = Model::load(&dir)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = ServerConfig {
        addr,
        api_key: None,
        max_body_bytes: 1 << 20,
        model_name: "demo".into(),
        chat_template: None,
    };
    // 64 KV blocks of 16 tokens, the engine's other defaults.
    let app = state(model, EngineConfig::with_blocks(64), config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));

    let body = r#"{"messages": [{"role": "user", "content": "Who is Ahab?"}], "max_tokens": 24, "temperature": 0}"#;
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    let (head, json) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{head}\n{json}").into());
    }
    let v: serde_json::Value = serde_json::from_str(json)?;
    println!("{}", v["choices"][0]["message"]["content"]);
    println!("usage: {}", v["usage"]);

    let _ = stop.send(());
    server.await??;
    Ok(())
}
