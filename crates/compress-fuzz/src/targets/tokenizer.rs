//! `tokenizer`: `tokenizer.json` through [`Tokenizer::from_file`] (the `tokenizers` crate),
//! then a short text encoded and decoded.

use compress_core::tokenizer::{train_bpe, Tokenizer};

use super::{repo_path, Kind, Scratch, Target};

/// The tokenizer loader.
pub struct TokenizerTarget {
    scratch: Scratch,
}

impl TokenizerTarget {
    /// A target writing cases to `tokenizer.json` in a scratch dir.
    pub fn new() -> Self {
        Self {
            scratch: Scratch::new("tokenizer.json"),
        }
    }
}

impl Default for TokenizerTarget {
    fn default() -> Self {
        Self::new()
    }
}

const ADDED: &str = r#"[{"id":0,"content":"[UNK]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},{"id":3,"content":"[PAD]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}]"#;
const TRUNCATION: &str =
    r#"{"direction":"Right","max_length":16,"strategy":"LongestFirst","stride":0}"#;
const PADDING: &str = r#"{"strategy":{"Fixed":8},"direction":"Right","pad_to_multiple_of":null,"pad_id":3,"pad_type_id":0,"pad_token":"[PAD]"}"#;

/// Small hand-written tokenizers of each model type (WordLevel, WordPiece, Unigram), with
/// normalizers, pre-tokenizers, padding and truncation.
fn hand_written() -> Vec<String> {
    let models = [
        r#"{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1,"world":2,"[PAD]":3},"unk_token":"[UNK]"}"#,
        r###"{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,"vocab":{"[UNK]":0,"he":1,"##llo":2,"[PAD]":3,"world":4}}"###,
        r#"{"type":"Unigram","unk_id":0,"vocab":[["[UNK]",0.0],["a",-1.0],["b",-2.0],["[PAD]",-9.0],["ab",-1.5],["▁",-1.0]]}"#,
        r#"{"type":"BPE","dropout":null,"unk_token":"[UNK]","continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":true,"byte_fallback":true,"ignore_merges":false,"vocab":{"[UNK]":0,"h":1,"e":2,"he":3,"<0x41>":4},"merges":[["h","e"]]}"#,
    ];
    let extras = [
        (
            r#"{"type":"Lowercase"}"#,
            r#"{"type":"Whitespace"}"#,
            "null",
            "null",
        ),
        (
            r#"{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"}]}"#,
            r#"{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}"#,
            TRUNCATION,
            PADDING,
        ),
        (
            "null",
            r#"{"type":"Split","pattern":{"Regex":"\\s{1,4}|\\p{L}+"},"behavior":"Removed","invert":false}"#,
            "null",
            r#"{"strategy":"BatchLongest","direction":"Left","pad_to_multiple_of":4,"pad_id":3,"pad_type_id":0,"pad_token":"[PAD]"}"#,
        ),
        (
            r#"{"type":"Precompiled","precompiled_charsmap":""}"#,
            r#"{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}"#,
            "null",
            "null",
        ),
    ];
    models
        .iter()
        .zip(extras)
        .map(|(model, (norm, pre, trunc, pad))| {
            format!(
                r#"{{"version":"1.0","truncation":{trunc},"padding":{pad},"added_tokens":{ADDED},"normalizer":{norm},"pre_tokenizer":{pre},"post_processor":null,"decoder":null,"model":{model}}}"#
            )
        })
        .collect()
}

/// A byte-level BPE (vocab 300) trained with the project's trainer on a slice of the corpus.
fn trained_bpe() -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().ok()?;
    let corpus = std::fs::read_to_string(repo_path("examples/data/corpus/valid.txt")).ok()?;
    let text = dir.path().join("t.txt");
    let cut = corpus.floor_char_boundary(20_000);
    std::fs::write(&text, &corpus[..cut]).ok()?;
    let out = dir.path().join("tokenizer.json");
    train_bpe(&[text], 300, &out).ok()?;
    std::fs::read(&out).ok()
}

impl Target for TokenizerTarget {
    fn name(&self) -> &'static str {
        "tokenizer"
    }

    fn kind(&self) -> Kind {
        Kind::Json
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = hand_written().into_iter().map(String::into_bytes).collect();
        seeds.extend(trained_bpe());
        seeds
    }

    fn alloc_limit(&self, input: &[u8]) -> usize {
        super::tree_limit(input.len())
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        let path = self.scratch.write(input);
        let Ok(tok) = Tokenizer::from_file(path) else {
            return false;
        };
        let _ = (tok.vocab_size(), tok.token_to_id("hello"));
        match tok.encode("Hello world, the  tokenizer: 123 éà 😀 ab") {
            Ok(ids) => tok.decode(&ids).is_ok(),
            Err(_) => false,
        }
    }
}
