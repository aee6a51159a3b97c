//! Tokenizers: HF `tokenizer.json` through the `tokenizers` crate, and training the
//! byte-level BPE tokenizer of the bundled demo model.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer, TokenizerBuilder};

use crate::error::{CoreError, Result};

/// Special tokens of tokenizers trained here: ids 0, 1, 2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<pad>", "<s>", "</s>"];

/// A loaded `tokenizer.json`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: HfTokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({})", self.path.display())
    }
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> CoreError {
    CoreError::Tokenizer {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        // tokenizers 0.22 panics (`expect("Helper")`) instead of erroring on JSON that ends
        // inside a decoder, normalizer or pre-tokenizer: check the syntax first.
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| tok_err(path, format!("not valid JSON: {e}")))?;
        check_charsmaps(path, &json)?;
        check_added_tokens(path, &json)?;
        check_patterns(path, &json)?;
        drop(json);
        // It also panics on other malformed parts (an invalid `Precompiled` charsmap, …):
        // such a panic is this file's error, not the program's.
        let parsed = std::panic::catch_unwind(|| HfTokenizer::from_str(&text)).map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("malformed tokenizer");
            tok_err(path, format!("the tokenizers crate failed: {msg}"))
        })?;
        let mut inner = parsed.map_err(|e| tok_err(path, e))?;
        // Padding is for batches of model inputs; ids here are documents and prompts, which
        // must not grow pad tokens (a `Fixed` length of 2^31 would allocate it per encode).
        inner.with_padding(None);
        // Truncation would cut documents silently, and the crate panics at encode time when
        // its stride is not below its max length: ids here are never truncated.
        inner.with_truncation(None).map_err(|e| tok_err(path, e))?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The tokenizer of a model directory, or `None` when it has no `tokenizer.json`.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("tokenizer.json");
        if path.is_file() {
            Self::from_file(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Encodes text to ids (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_err(&self.path, e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| tok_err(&self.path, e))
    }

    /// Number of ids the tokenizer can produce (with added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token string, if known.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
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

/// Trains a byte-level BPE tokenizer with `vocab_size` entries on text files and writes
/// `tokenizer.json` to `out` (specials `<pad>`, `<s>`, `</s>` get ids 0, 1, 2).
pub fn train_bpe(files: &[PathBuf], vocab_size: usize, out: &Path) -> Result<()> {
    if vocab_size < 256 + SPECIAL_TOKENS.len() {
        let msg = format!(
            "a byte-level BPE needs at least {}",
            256 + SPECIAL_TOKENS.len()
        );
        return Err(CoreError::setting("vocab_size", vocab_size, msg));
    }
    for f in files {
        if !f.is_file() {
            return Err(CoreError::Data {
                path: f.clone(),
                msg: "no such file".into(),
            });
        }
    }
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .with_post_processor(Some(ByteLevel::default().trim_offsets(false)))
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(|e| tok_err(out, e))?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    tokenizer
        .train_from_files(&mut trainer, names)
        .map_err(|e| tok_err(out, e))?;
    let tmp = out.with_extension("json.tmp");
    tokenizer.save(&tmp, true).map_err(|e| tok_err(out, e))?;
    std::fs::rename(&tmp, out).map_err(|e| CoreError::io(out, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_encode_decode_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("t.txt");
        let body = "the quick brown fox jumps over the lazy dog. ".repeat(50);
        std::fs::write(&text, &body).unwrap();
        let out = dir.path().join("tokenizer.json");
        train_bpe(&[text], 300, &out).unwrap();
        let tok = Tokenizer::from_file(&out).unwrap();
        assert_eq!(tok.token_to_id("<s>"), Some(1));
        assert_eq!(tok.token_to_id("</s>"), Some(2));
        let ids = tok.encode("the lazy fox").unwrap();
        assert!(
            ids.len() < "the lazy fox".len(),
            "merges were learned: {ids:?}"
        );
        assert_eq!(tok.decode(&ids).unwrap(), "the lazy fox");
    }

    #[test]
    fn missing_tokenizer_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Tokenizer::from_model_dir(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join("tokenizer.json"), b"{nope").unwrap();
        let err = Tokenizer::from_model_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }
}
