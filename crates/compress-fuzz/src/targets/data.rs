//! `data`: token data files (`.txt`, `.json`, `.jsonl`) through
//! [`load_documents_up_to`] with the demo model's tokenizer, whole and with a token budget.
//! A case is `EXT\n` followed by the file's body.

use compress_core::data::load_documents_up_to;
use compress_core::tokenizer::Tokenizer;
use rand::rngs::StdRng;
use rand::Rng;

use super::{default_mutate, demo_model, Kind, Target};

/// The data file loaders.
pub struct DataTarget {
    dir: tempfile::TempDir,
    tokenizer: Option<Tokenizer>,
}

/// Extensions a case may name (the last is not a data format).
const EXTS: &[&str] = &["txt", "json", "jsonl", "csv"];

impl DataTarget {
    /// A target over the demo tokenizer (ids only when it is missing).
    pub fn new() -> Self {
        Self {
            dir: super::scratch_dir(),
            tokenizer: Tokenizer::from_file(&demo_model().join("tokenizer.json")).ok(),
        }
    }
}

impl Default for DataTarget {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits a case into its extension line and body.
pub fn split_case(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (b"txt", input),
    }
}

impl Target for DataTarget {
    fn name(&self) -> &'static str {
        "data"
    }

    fn kind(&self) -> Kind {
        Kind::Binary
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            "txt\nCall me Ishmael. Some years ago, never mind how long precisely.\n",
            "json\n[[1, 2, 3, 4], [5, 6], [7]]",
            "jsonl\n{\"ids\": [1, 2, 3]}\n{\"text\": \"hello there\"}\n\n{\"ids\": []}\n",
            "jsonl\n{\"text\": \"a line of text\", \"meta\": 1}\n{\"text\": \"é 😀\"}\n",
            "txt\n\u{feff}naïve café — “quotes” \t tabs\r\nCRLF\n",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn mutate(&self, rng: &mut StdRng, base: &[u8], pool: &[Vec<u8>], keys: &[String]) -> Vec<u8> {
        let (ext, body) = split_case(base);
        let ext = match rng.random_bool(0.05) {
            true => EXTS[rng.random_range(0..EXTS.len())].as_bytes(),
            false => ext,
        };
        let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        let body = match rng.random_range(0..3) {
            0 => default_mutate(Kind::Json, rng, body, pool, keys),
            1 if lines.len() > 1 => {
                let i = rng.random_range(0..lines.len());
                let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                out[i] = default_mutate(Kind::Json, rng, lines[i], pool, keys);
                out.join(&b'\n')
            }
            _ => default_mutate(Kind::Binary, rng, body, pool, keys),
        };
        [ext, b"\n", &body].concat()
    }

    fn keys(&self, _seeds: &[Vec<u8>]) -> Vec<String> {
        vec!["ids".into(), "text".into()]
    }

    fn alloc_limit(&self, input: &[u8]) -> usize {
        super::tree_limit(input.len())
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        let (ext, body) = split_case(input);
        let ext: String = String::from_utf8_lossy(ext)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let path = self.dir.path().join(format!("case.{ext}"));
        std::fs::write(&path, body).expect("writing the case");
        let tok = self.tokenizer.as_ref();
        let vocab = tok.map_or(512, Tokenizer::vocab_size);
        let whole = load_documents_up_to(&path, tok, vocab, None);
        let part = load_documents_up_to(&path, tok, vocab, Some(16));
        let _ = std::fs::remove_file(&path);
        whole.is_ok() && part.is_ok()
    }
}
