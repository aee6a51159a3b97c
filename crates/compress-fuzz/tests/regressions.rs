//! Every crash, over-allocation and hang the fuzzer found, kept: the inputs (minimized by hand,
//! or as found under `regressions/<target>/`) must now be clean errors, with no panic, no
//! allocation over the target's limit and no slow case.

use std::path::Path;
use std::time::Duration;

use compress_core::tokenizer::Tokenizer;
use compress_format::gguf::GgufFile;
use compress_format::hf_config::HfConfig;
use compress_fuzz::runner::{run_case, workspace_root};
use compress_fuzz::targets::by_name;

/// Runs `input` through target `name` and asserts that nothing failed.
fn clean(name: &str, input: &[u8]) {
    let mut t = by_name(name).expect("a known target");
    let r = run_case(t.as_mut(), input, Duration::from_secs(2));
    assert_eq!(r.failure, None, "{name}: {r:?}");
}

fn demo_config_with(key: &str, value: &str) -> String {
    let text = std::fs::read_to_string(workspace_root().join("examples/models/demo/config.json"))
        .expect("the demo config");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    v[key] = serde_json::from_str(value).expect("a JSON value");
    v.to_string()
}

/// Was: `num_parameters` looped 2^63 times (a hang), and multiplied with overflow (a panic).
#[test]
fn config_num_hidden_layers_2_pow_63_is_refused() {
    let json = demo_config_with("num_hidden_layers", "9223372036854775808");
    let p = Path::new("config.json");
    let err = HfConfig::from_json(&json, p).and_then(|c| c.validate(p));
    let msg = err.expect_err("refused").to_string();
    assert!(
        msg.contains("num_hidden_layers") && msg.contains("larger than"),
        "{msg}"
    );
    clean("config", json.as_bytes());
}

/// Was: `hidden_size × intermediate_size × 3` overflowed `usize` in `num_parameters`.
#[test]
fn config_sizes_at_the_limits_do_not_overflow() {
    let mut json = demo_config_with("hidden_size", "16777216");
    for (k, v) in [
        ("intermediate_size", "16777216"),
        ("vocab_size", "16777216"),
    ] {
        let mut x: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        x[k] = serde_json::from_str(v).expect("value");
        json = x.to_string();
    }
    let p = Path::new("config.json");
    let c = HfConfig::from_json(&json, p).expect("parses");
    c.validate(p).expect("within the limits");
    assert!(c.num_parameters() > 1 << 50);
    let too_big = demo_config_with("hidden_size", "16777217");
    let err = HfConfig::from_json(&too_big, p).and_then(|c| c.validate(p));
    assert!(err.unwrap_err().to_string().contains("hidden_size"));
    clean("config", too_big.as_bytes());
}

/// A GGUF with one tensor of an unknown type whose dims multiply past `usize`.
fn gguf_with_overflowing_dims() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0x4655_4747u32.to_le_bytes());
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(b'w');
    b.extend(2u32.to_le_bytes());
    b.extend((1u64 << 40).to_le_bytes());
    b.extend((1u64 << 40).to_le_bytes());
    b.extend(99u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.resize(96, 0);
    b
}

/// Was: `GgufTensor::numel` panicked (multiply with overflow) on a tensor of an unknown type,
/// whose data size `open` did not check.
#[test]
fn gguf_dims_that_overflow_are_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("w.gguf");
    std::fs::write(&p, gguf_with_overflowing_dims()).expect("write");
    let msg = GgufFile::open(&p).expect_err("refused").to_string();
    assert!(msg.contains("`w`") && msg.contains("overflow"), "{msg}");
    clean("gguf", &gguf_with_overflowing_dims());
}

fn tokenizer_error(json: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, json).expect("write");
    let msg = Tokenizer::from_file(&p).expect_err("refused").to_string();
    assert!(msg.contains("tokenizer.json"), "{msg}");
    msg
}

const WORDLEVEL: &str =
    r#""model":{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1},"unk_token":"[UNK]"}"#;

/// Was: a panic in tokenizers (`expect("Helper")`) on JSON ending inside the decoder.
#[test]
fn tokenizer_json_ending_inside_the_decoder_is_an_error() {
    let msg = tokenizer_error(r#"{"decoder":{"type":"ByteLevel","add_prefix_space":tr"#);
    assert!(msg.contains("not valid JSON"), "{msg}");
    clean(
        "tokenizer",
        br#"{"decoder":{"type":"ByteLevel","add_prefix_space":tr"#,
    );
}

/// Was: a panic in tokenizers (`expect("Precompiled")`) on an unparsable charsmap.
#[test]
fn tokenizer_invalid_precompiled_charsmap_is_an_error() {
    let json = format!(
        r#"{{"normalizer":{{"type":"Precompiled","precompiled_charsmap":""}},{WORDLEVEL}}}"#
    );
    let msg = tokenizer_error(&json);
    assert!(msg.contains("Precompiled"), "{msg}");
    clean("tokenizer", json.as_bytes());
}

/// Was: a 6.7 GB allocation: the charsmap's first four bytes claim the trie's size, and the
/// tokenizers crate reserves it before reading.
#[test]
fn tokenizer_precompiled_trie_larger_than_its_charsmap_is_refused() {
    let json = format!(
        r#"{{"normalizer":{{"type":"Precompiled","precompiled_charsmap":"xxxxxxxxxxxxxxxxxxxx"}},{WORDLEVEL}}}"#
    );
    let msg = tokenizer_error(&json);
    assert!(
        msg.contains("claims a 3346078919-byte trie in 15 bytes"),
        "{msg}"
    );
    clean("tokenizer", json.as_bytes());
}

/// Was: `Fixed` padding of 2^31 made every encode allocate 48 GiB (the process aborted), and
/// of `u64::MAX` panicked with a capacity overflow; padding is now dropped on load.
#[test]
fn tokenizer_fixed_padding_is_not_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("tokenizer.json");
    for n in ["2147483648", "18446744073709551615"] {
        let json = format!(
            r#"{{"padding":{{"strategy":{{"Fixed":{n}}},"direction":"Right","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"[UNK]"}},{WORDLEVEL}}}"#
        );
        std::fs::write(&p, &json).expect("write");
        let t = Tokenizer::from_file(&p).expect("loads");
        assert_eq!(t.encode("hello").expect("encodes"), vec![1]);
        clean("tokenizer", json.as_bytes());
    }
}

/// Was: 3 s to load (tokenizers' Aho-Corasick DFA over added tokens is quadratic in a
/// token's length) for one 13,000-byte added token.
#[test]
fn tokenizer_very_long_added_token_is_refused() {
    let token = "x".repeat(13_000);
    let json = format!(
        r#"{{"added_tokens":[{{"id":2,"content":"{token}","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}],{WORDLEVEL}}}"#
    );
    let msg = tokenizer_error(&json);
    assert!(msg.contains("added_tokens[0]: 13000 bytes"), "{msg}");
    clean("tokenizer", json.as_bytes());
}

/// Was: a panic at encode time (tokenizers asserts that the truncation stride is below the
/// max length); truncation is now dropped on load (documents are never cut).
#[test]
fn tokenizer_truncation_stride_not_below_max_length_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("tokenizer.json");
    let json = format!(
        r#"{{"truncation":{{"direction":"Right","max_length":8,"strategy":"LongestFirst","stride":8}},"pre_tokenizer":{{"type":"Whitespace"}},{WORDLEVEL}}}"#
    );
    std::fs::write(&p, &json).expect("write");
    let t = Tokenizer::from_file(&p).expect("loads");
    let text = "hello ".repeat(20);
    assert_eq!(t.encode(&text).expect("encodes").len(), 20, "not truncated");
    clean("tokenizer", json.as_bytes());
}

/// Was: a 2 MiB allocation (110× the file) compiling a 17,875-byte split pattern; a pattern
/// repeating an atom 10^9 times would compile up to the regex engine's 10 MB limit.
#[test]
fn tokenizer_huge_regex_patterns_are_refused() {
    for pattern in ["x".repeat(5000), r"\\s{1,1000000000}".to_string()] {
        let json = format!(
            r#"{{"pre_tokenizer":{{"type":"Split","pattern":{{"Regex":"{pattern}"}},"behavior":"Removed","invert":false}},{WORDLEVEL}}}"#
        );
        let msg = tokenizer_error(&json);
        assert!(msg.contains("Regex pattern"), "{msg}");
        clean("tokenizer", json.as_bytes());
    }
}

/// Replays every input kept under `regressions/<target>/` (as the fuzzer wrote them).
#[test]
fn saved_inputs_replay_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut n = 0;
    for dir in std::fs::read_dir(&root).expect("regressions/").flatten() {
        let target = dir.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(dir.path())
            .expect("a target dir")
            .flatten()
        {
            let input = std::fs::read(f.path()).expect("read");
            clean(&target, &input);
            n += 1;
        }
    }
    assert!(n >= 2, "{n} saved inputs");
}

/// A valid GGUF that is nothing but one `u8` array of 200,000 elements.
fn gguf_with_a_large_u8_array() -> Vec<u8> {
    let n = 200_000usize;
    let mut b = Vec::new();
    b.extend(0x4655_4747u32.to_le_bytes());
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(5u64.to_le_bytes());
    b.extend(b"x.arr");
    b.extend(9u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend((n as u64).to_le_bytes());
    b.resize(b.len() + n, 0);
    b.resize(b.len().div_ceil(32) * 32, 0);
    b
}

/// Known, not fixed: GGUF metadata arrays hold one 32-byte `Value` per element, so a file
/// that is mostly a `u8` array allocates ~42× its size at once (8 MiB for 200 KB). The count
/// is checked against the bytes left, so this is bounded by the file, but not by 2×; the fix
/// is typed array storage in `gguf::value` (its `as_array() -> &[Value]` API is used by the
/// GGUF import).
#[test]
#[ignore = "known: GGUF arrays cost 32 bytes per element (see the doc comment)"]
fn gguf_large_u8_array_allocates_at_most_twice_the_file() {
    clean("gguf", &gguf_with_a_large_u8_array());
}

/// Known, not fixed (found by the 1,000,000-case data run): a 51,739-byte `.txt` is tokenized
/// in one call, and the tokenizers crate's per-byte alignments and per-token records make one
/// 3.4 MB allocation (66× the file; the limit of tree-building targets is 64×). Proportional
/// to the real text, not to a claimed size, but a 100 MB corpus would need ~6.6 GB at once;
/// the fix is encoding long text in whitespace-cut chunks (keeping the tokens exact).
#[test]
#[ignore = "known: whole-file tokenization allocates ~66x a .txt's size (see the doc comment)"]
fn data_txt_tokenization_allocates_within_the_tree_limit() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("known/data-txt-51739-bytes-tokenized-66x.txtcase");
    clean("data", &std::fs::read(p).expect("the saved input"));
}
