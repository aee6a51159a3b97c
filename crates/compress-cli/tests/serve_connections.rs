//! `compress serve`'s connection handling: slow and idle clients are timed out, the number of
//! open connections is bounded (503 past it), and SIGTERM exits 0 within the shutdown timeout
//! even while a request is stalled.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{http, request, start};

/// A connection to `port` whose reads give up after 10 s.
fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Whether the server closed `s` (EOF or reset) rather than leaving it open until the read
/// timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    !matches!(s.read_to_end(&mut rest), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        || e.kind() == std::io::ErrorKind::TimedOut)
}

#[test]
fn slow_clients_are_timed_out_and_sigterm_still_exits_0() {
    let srv = start(&["--read-timeout", "1"]);
    // Headers one byte at a time: the connection is closed about a second in.
    let t0 = Instant::now();
    let mut s = connect(srv.port);
    for b in b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if t0.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    assert!(closed_by_server(&mut s), "the connection stayed open");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());

    // A connection that sends nothing, and one kept alive after a request, are closed too.
    let t0 = Instant::now();
    let mut silent = connect(srv.port);
    assert!(
        closed_by_server(&mut silent),
        "a silent connection stayed open"
    );
    let mut kept = connect(srv.port);
    write!(kept, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        closed_by_server(&mut kept),
        "a kept-alive connection stayed open"
    );
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());

    // A body shorter than its Content-Length: a 408 in the OpenAI shape.
    let t0 = Instant::now();
    let mut s = connect(srv.port);
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"prompt\""
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("request_timeout"), "{resp}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    // Normal requests still work, and SIGTERM with an idle keep-alive connection open exits 0.
    let (st, resp) = http(
        srv.port,
        "POST",
        "/v1/completions",
        r#"{"prompt":[1,17],"max_tokens":2}"#,
        None,
    );
    assert_eq!(st, 200, "{resp}");
    let _idle = connect(srv.port);
    let t0 = Instant::now();
    assert!(srv.terminate().success());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn connections_past_the_limit_get_a_503_and_a_stalled_request_does_not_hold_up_sigterm() {
    let srv = start(&[
        "--max-connections",
        "2",
        "--read-timeout",
        "30",
        "--shutdown-timeout",
        "1",
    ]);
    let p = srv.port;
    let mut a = connect(p);
    let _b = connect(p);
    // Both slots are taken (the server accepted them before this request's connection).
    std::thread::sleep(Duration::from_millis(200));
    let (st, head, body) = request(p, "GET", "/v1/models", &[], "");
    assert_eq!(st, 503, "{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(body.contains("--max-connections"), "{body}");
    // A slot frees when its client goes away.
    drop(a);
    let t0 = Instant::now();
    let ok = loop {
        let (st, _) = http(p, "GET", "/health", "", None);
        if st == 200 || t0.elapsed() > Duration::from_secs(5) {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ok, 200);

    // A request whose body never finishes is in flight for up to --read-timeout (30 s), but
    // SIGTERM only waits --shutdown-timeout (1 s) for it.
    a = connect(p);
    write!(
        a,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"prompt\""
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    assert!(srv.terminate().success());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    drop(a);
}
