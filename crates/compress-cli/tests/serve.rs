//! `compress serve` on the demo model, started on a free port: health and models, greedy
//! completions equal `compress generate`, streaming gives the same tokens and ends with
//! `data: [DONE]`, bad requests get OpenAI-style 4xx errors, and the API key is enforced.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::compress;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn demo() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo");
    p.to_str().unwrap().to_string()
}

/// Starts `compress serve` on port 0 and reads the port it printed.
fn start(extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_compress"))
        .args([
            "serve",
            "--model",
            &demo(),
            "--port",
            "0",
            "--kv-blocks",
            "256",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .rsplit("127.0.0.1:")
        .next()
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no port in `{line}`"));
    Server { child, port }
}

/// One HTTP/1.1 request; `(status, body)` with a chunked body decoded.
fn http(port: u16, method: &str, path: &str, body: &str, key: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn completions_match_generate_and_stream() {
    let srv = start(&[]);
    assert_eq!(
        http(srv.port, "GET", "/health", "", None),
        (200, "ok".into())
    );
    let (st, body) = http(srv.port, "GET", "/v1/models", "", None);
    assert_eq!(st, 200);
    assert_eq!(json(&body)["data"][0]["id"], "demo");

    let prompt = "Call me Ishmael.";
    let want = json(&compress(&[
        "generate",
        "--model",
        &demo(),
        "--prompt",
        prompt,
        "--max-tokens",
        "12",
        "--json",
    ]));
    let req = format!(r#"{{"model":"demo","prompt":"{prompt}","max_tokens":12,"temperature":0}}"#);
    let (st, body) = http(srv.port, "POST", "/v1/completions", &req, None);
    assert_eq!(st, 200, "{body}");
    let r = json(&body);
    assert_eq!(r["choices"][0]["token_ids"], want["tokens"]);
    assert_eq!(r["choices"][0]["text"], want["text"]);
    assert_eq!(r["usage"]["completion_tokens"], 12);

    let req = format!(r#"{{"prompt":"{prompt}","max_tokens":12,"temperature":0,"stream":true}}"#);
    let (st, body) = http(srv.port, "POST", "/v1/completions", &req, None);
    assert_eq!(st, 200);
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{body}");
    let mut ids = Vec::new();
    let mut text = String::new();
    for e in &events[..events.len() - 1] {
        let v = json(e);
        ids.extend(
            v["choices"][0]["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        text.push_str(v["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(serde_json::Value::Array(ids), want["tokens"]);
    assert_eq!(text, want["text"].as_str().unwrap());
}

#[test]
fn bad_requests_get_openai_errors_and_the_key_is_enforced() {
    let srv = start(&["--api-key", "sekret"]);
    let p = srv.port;
    let (st, body) = http(p, "POST", "/v1/completions", r#"{"prompt":[1,2]}"#, None);
    assert_eq!(st, 401, "{body}");
    assert_eq!(json(&body)["error"]["type"], "authentication_error");
    assert_eq!(
        http(p, "GET", "/health", "", None).0,
        200,
        "health needs no key"
    );
    let long: Vec<String> = (0..600).map(|i| (i % 100).to_string()).collect();
    let long = format!(r#"{{"prompt":[{}]}}"#, long.join(","));
    for (body, status, needle) in [
        ("{bad", 400, "request body"),
        (r#"{"prompt":"x","max_tokens":0}"#, 400, "max_tokens"),
        (r#"{"prompt":"x","max_tokens":"ten"}"#, 400, "request body"),
        (r#"{"prompt":"x","frobnicate":1}"#, 400, "frobnicate"),
        (r#"{"prompt":[99999]}"#, 400, "vocabulary"),
        (r#"{"prompt":[]}"#, 400, "empty"),
        (r#"{"model":"other","prompt":"x"}"#, 404, "other"),
        (long.as_str(), 400, "context"),
    ] {
        let (st, resp) = http(p, "POST", "/v1/completions", body, Some("sekret"));
        assert_eq!(st, status, "{body}: {resp}");
        let msg = json(&resp)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let (st, body) = http(
        p,
        "POST",
        "/v1/completions",
        r#"{"prompt":[1,17],"max_tokens":2}"#,
        Some("sekret"),
    );
    assert_eq!(st, 200, "{body}");
}
