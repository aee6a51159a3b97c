//! Helpers shared by the CLI test files.
#![allow(dead_code)]

use std::process::Command;

pub mod http;

/// Runs the `compress` binary with `args`; panics with its stderr unless it succeeds; its stdout.
pub fn compress(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_compress"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compress {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `compress args…`, asserts exit 1 and one stderr line containing `needle`.
pub fn fails_with(args: &[&str], needle: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_compress"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "args {args:?}: stderr {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

/// The 8 greedy tokens `compress generate` gives on `model` after a fixed prompt, with
/// `engine` (`runtime` or `burn`), f32 activations and `extra` flags.
pub fn greedy_tokens(model: &str, engine: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "generate",
        "--model",
        model,
        "--prompt-ids",
        "1,17,33,5",
        "--max-tokens",
        "8",
        "--engine",
        engine,
        "--activations",
        "f32",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = compress(&args);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["tokens"].clone()
}

/// Largest absolute difference between two equally long slices (NaN counts as infinite).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(
            0.0,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}
