//! Helpers shared by the CLI test files.

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
