//! Tokenizers: HF `tokenizer.json` through the `tokenizers` crate, and training the
//! byte-level BPE tokenizer of the bundled demo model.

use std::path::{Path, PathBuf};

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
    /// Loads a `tokenizer.json` file (guarded: [`compress_format::tokenizer_json::load`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = compress_format::tokenizer_json::load(path).map_err(|e| match e {
            compress_format::FormatError::Tokenizer { path, msg } => {
                CoreError::Tokenizer { path, msg }
            }
            e => e.into(),
        })?;
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
