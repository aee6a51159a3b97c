//! A `compress serve` process on a free port, and a minimal HTTP/1.1 client for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running server, killed when dropped.
pub struct Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Server {
    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bundled demo model's directory.
pub fn demo() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo");
    p.to_str().unwrap().to_string()
}

/// Starts `compress serve` on the demo model (256 KV blocks unless `extra` says otherwise).
pub fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--kv-blocks", "256"];
    if extra.contains(&"--kv-blocks") {
        args.clear();
    }
    args.extend_from_slice(extra);
    start_model(&demo(), &args)
}

/// Starts `compress serve --model model` on port 0 and reads the port it printed.
pub fn start_model(model: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_compress"))
        .args(["serve", "--model", model, "--port", "0"])
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
pub fn http(port: u16, method: &str, path: &str, body: &str, key: Option<&str>) -> (u16, String) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, _, body) = request(port, method, path, &headers, body);
    (status, body)
}

/// One HTTP/1.1 request with exactly `headers` (besides Host, Content-Length and Connection);
/// `(status, head, body)`, the head lower-cased and a chunked body decoded.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    // A server may answer (413) before reading all of a large body: a failed write or a reset
    // after the answer arrived is not the test's concern.
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
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
    (status, head, body)
}

/// Parses JSON, panicking with the text.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// POSTs `body` to `path`; panics unless the status is 200; the JSON response.
pub fn post(port: u16, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let (st, resp) = http(port, "POST", path, &body.to_string(), None);
    assert_eq!(st, 200, "{body}: {resp}");
    json(&resp)
}

/// The `data:` payloads of a server-sent-event body, checked to end with `[DONE]` (dropped).
pub fn sse(body: &str) -> Vec<serde_json::Value> {
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{body}");
    events[..events.len() - 1].iter().map(|e| json(e)).collect()
}

/// Starts a streaming `POST /v1/completions` of `body` and reads its first bytes; the caller
/// keeps the connection open (or drops it, as a client that goes away).
pub fn open_stream(port: u16, body: &serde_json::Value) -> TcpStream {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let _ = s.read(&mut buf).unwrap();
    s
}

/// The value of the un-labelled Prometheus sample `name` in `/metrics`.
pub fn metric(port: u16, name: &str) -> f64 {
    let (st, text) = http(port, "GET", "/metrics", "", None);
    assert_eq!(st, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits (at most 20 s) until the engine holds no KV blocks and runs nothing; panics otherwise.
pub fn wait_idle(port: u16) {
    let t0 = std::time::Instant::now();
    while metric(port, "compress_kv_blocks_used") > 0.0
        || metric(port, "compress_num_requests_running") > 0.0
        || metric(port, "compress_num_requests_waiting") > 0.0
    {
        assert!(
            t0.elapsed().as_secs() < 20,
            "the engine did not become idle"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
