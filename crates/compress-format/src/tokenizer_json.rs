//! Loading a Hugging Face `tokenizer.json` through the `tokenizers` crate, guarded: the file is
//! checked before the crate sees it (JSON syntax, `Precompiled` charsmap sizes, added-token and
//! regex sizes), a panic inside the crate is this file's error, and padding/truncation are
//! dropped. Core (`compress_core::tokenizer`) and the runtime's server both load through
//! [`load`], so a hostile file is refused the same way everywhere.

use std::path::Path;
use std::str::FromStr;

use tokenizers::Tokenizer;

use crate::error::{FormatError, Result};

fn tok_err(path: &Path, e: impl std::fmt::Display) -> FormatError {
    FormatError::Tokenizer {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Loads `path` (a `tokenizer.json`), refusing files that would make the `tokenizers` crate
/// panic, hang or allocate far beyond the file's size; padding and truncation are dropped (ids
/// here are documents and prompts: they must neither grow pad tokens nor be cut).
pub fn load(path: &Path) -> Result<Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    // tokenizers 0.22 panics (`expect("Helper")`) instead of erroring on JSON that ends
    // inside a decoder, normalizer or pre-tokenizer: check the syntax first.
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| tok_err(path, format!("not valid JSON: {e}")))?;
    check_charsmaps(path, &json)?;
    check_added_tokens(path, &json)?;
    check_patterns(path, &json)?;
    drop(json);
    // It also panics on other malformed parts (an invalid `Precompiled` charsmap, …): such a
    // panic is this file's error, not the program's.
    let parsed = std::panic::catch_unwind(|| Tokenizer::from_str(&text)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("malformed tokenizer");
        tok_err(path, format!("the tokenizers crate failed: {msg}"))
    })?;
    let mut inner = parsed.map_err(|e| tok_err(path, e))?;
    // A `Fixed` padding length of 2^31 would allocate it per encode.
    inner.with_padding(None);
    // The crate panics at encode time when a truncation stride is not below its max length.
    inner.with_truncation(None).map_err(|e| tok_err(path, e))?;
    Ok(inner)
}

/// The value of one standard base64 digit.
fn base64_digit(c: u8) -> Option<u64> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u64)
}

/// Checks every `Precompiled` normalizer in `json`: its base64 `precompiled_charsmap` starts
/// with the trie's size (u32 LE), which the `tokenizers` crate allocates before reading the
/// trie, so a corrupt size would ask for gigabytes. The size must fit the charsmap.
fn check_charsmaps(path: &Path, json: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    match json {
        Value::Array(a) => a.iter().try_for_each(|v| check_charsmaps(path, v)),
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) == Some("Precompiled") {
                if let Some(Value::String(map)) = o.get("precompiled_charsmap") {
                    let digits = map.trim_end_matches('=').as_bytes();
                    let bytes = digits.len() * 3 / 4;
                    let head: Option<u64> = digits.get(..6).and_then(|d| {
                        d.iter()
                            .try_fold(0u64, |acc, &c| Some(acc << 6 | base64_digit(c)?))
                    });
                    // Six digits are 36 bits: the first four bytes are their top 32.
                    let claimed = head.map(|h| ((h >> 4) as u32).swap_bytes() as usize);
                    if claimed.is_some_and(|n| n > bytes.saturating_sub(4)) {
                        let msg = format!(
                            "normalizer precompiled_charsmap claims a {}-byte trie in {bytes} bytes",
                            claimed.unwrap_or(0)
                        );
                        return Err(tok_err(path, msg));
                    }
                }
            }
            o.values().try_for_each(|v| check_charsmaps(path, v))
        }
        _ => Ok(()),
    }
}

/// Longest added token accepted (bytes). Real added tokens are special markers of a few to a
/// few dozen bytes; the `tokenizers` crate builds an Aho-Corasick DFA over them whose build
/// time grows quadratically with a token's length (3 s for one 13,000-byte token).
pub const MAX_ADDED_TOKEN_BYTES: usize = 1024;

/// Errors when an `added_tokens` entry is longer than [`MAX_ADDED_TOKEN_BYTES`].
fn check_added_tokens(path: &Path, json: &serde_json::Value) -> Result<()> {
    let Some(tokens) = json.get("added_tokens").and_then(|t| t.as_array()) else {
        return Ok(());
    };
    for (i, t) in tokens.iter().enumerate() {
        let len = t
            .get("content")
            .and_then(|c| c.as_str())
            .map_or(0, str::len);
        if len > MAX_ADDED_TOKEN_BYTES {
            let msg =
                format!("added_tokens[{i}]: {len} bytes long (at most {MAX_ADDED_TOKEN_BYTES})");
            return Err(tok_err(path, msg));
        }
    }
    Ok(())
}

/// Longest `{"Regex": …}` pattern accepted (bytes; real pre-tokenizer patterns are a few
/// hundred): the regex engine's compiled program grows ~110 bytes per pattern byte.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Largest `{n}` / `{n,m}` repetition count in a pattern: a count multiplies the compiled
/// size of the atom it repeats.
pub const MAX_PATTERN_REPEAT: u64 = 1024;

/// The largest number in a `{n}` / `{n,m}` repetition of `pattern` (0 when none).
fn max_repeat(pattern: &str) -> u64 {
    let mut max = 0;
    for rest in pattern.split('{').skip(1) {
        let Some((inner, _)) = rest.split_once('}') else {
            continue;
        };
        for n in inner.split(',').map(str::trim) {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                max = max.max(n.parse::<u64>().unwrap_or(u64::MAX));
            }
        }
    }
    max
}

/// Errors when a `{"Regex": …}` pattern (split pre-tokenizer, replace normalizer or decoder)
/// is longer than [`MAX_PATTERN_BYTES`] or repeats more than [`MAX_PATTERN_REPEAT`] times.
fn check_patterns(path: &Path, json: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    match json {
        Value::Array(a) => a.iter().try_for_each(|v| check_patterns(path, v)),
        Value::Object(o) => {
            if let Some(Value::String(p)) = o.get("Regex") {
                let repeat = max_repeat(p);
                if p.len() > MAX_PATTERN_BYTES || repeat > MAX_PATTERN_REPEAT {
                    let msg = format!(
                        "a Regex pattern of {} bytes repeating up to {repeat} times (at most \
                         {MAX_PATTERN_BYTES} bytes and {MAX_PATTERN_REPEAT} repeats)",
                        p.len()
                    );
                    return Err(tok_err(path, msg));
                }
            }
            o.values().try_for_each(|v| check_patterns(path, v))
        }
        _ => Ok(()),
    }
}
