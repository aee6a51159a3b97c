//! The CI pass: every target runs a fixed seed set (fixed RNG seed, 10,000-20,000 cases, ~15 s in all)
//! and must finish with no panics, no over-sized allocations and no slow cases.

use compress_fuzz::runner::{run, RunConfig};
use compress_fuzz::targets::by_name;

fn fixed(name: &str, cases: u64) {
    let mut t = by_name(name).expect("a known target");
    let r = run(t.as_mut(), &RunConfig::new(cases, 0x5eed), |_| {});
    assert_eq!(r.cases, cases);
    assert!(
        r.accepted > 0,
        "{name}: no case was accepted (seeds broken?)"
    );
    assert_eq!(
        r.failures, 0,
        "{name}: {} failing cases: {:#?}\nreplay the inputs in {:#?}",
        r.failures, r.messages, r.failure_files
    );
}

#[test]
fn safetensors() {
    fixed("safetensors", 20000);
}

#[test]
fn safetensors_index() {
    fixed("safetensors_index", 20000);
}

#[test]
fn pack_layer() {
    fixed("pack_layer", 20000);
}

#[test]
fn gguf() {
    fixed("gguf", 20000);
}

#[test]
fn config() {
    fixed("config", 20000);
}

#[test]
fn tokenizer() {
    fixed("tokenizer", 10000);
}

#[test]
fn pack_quantized() {
    fixed("pack_quantized", 20000);
}

#[test]
fn recipe() {
    fixed("recipe", 20000);
}

#[test]
fn data() {
    fixed("data", 10000);
}

#[test]
fn http() {
    fixed("http", 20000);
}
