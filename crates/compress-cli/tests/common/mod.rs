//! Helpers shared by the CLI test files.
#![allow(dead_code)]

use std::process::Command;

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
/// `engine` (`runtime` or `burn`) and f32 activations.
pub fn greedy_tokens(model: &str, engine: &str) -> serde_json::Value {
    let out = compress(&[
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
    ]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["tokens"].clone()
}
