//! Token data files for training, calibration and evaluation.
//!
//! Formats, by extension: `.txt` (plain text, tokenized; one document), `.json`
//! (`[[ids…], …]`, one document per inner list) and `.jsonl` (one object per line, either
//! `{"text": …}` or `{"ids": […]}`). Text needs a tokenizer; ids never do. Empty files and ids
//! outside the vocabulary are errors naming the file and the line.

use std::path::Path;

use serde::Deserialize;

use crate::error::{CoreError, Result};
use crate::tokenizer::Tokenizer;

fn data_err(path: &Path, msg: impl Into<String>) -> CoreError {
    CoreError::Data {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

#[derive(Deserialize)]
struct JsonlRow {
    text: Option<String>,
    ids: Option<Vec<i64>>,
}

/// Reads a data file into documents of token ids, each id checked against `vocab_size`.
pub fn load_documents(
    path: &Path,
    tokenizer: Option<&Tokenizer>,
    vocab_size: usize,
) -> Result<Vec<Vec<u32>>> {
    load_documents_up_to(path, tokenizer, vocab_size, None)
}

/// [`load_documents`], reading only about `max_tokens` tokens when given: text is tokenized
/// in growing prefixes cut at whitespace (so the tokens kept equal the whole text's first ones)
/// and `.jsonl` rows are read until that many tokens; `.json` is parsed whole.
pub fn load_documents_up_to(
    path: &Path,
    tokenizer: Option<&Tokenizer>,
    vocab_size: usize,
    max_tokens: Option<usize>,
) -> Result<Vec<Vec<u32>>> {
    let body = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    if body.trim().is_empty() {
        return Err(data_err(path, "data file is empty"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let need_tok = |what: &str| {
        tokenizer.ok_or_else(|| {
            data_err(
                path,
                format!(
                    "{what} needs a tokenizer, but the model has no tokenizer.json \
                     (use token ids: .json [[ids..]] or .jsonl {{\"ids\": [..]}})"
                ),
            )
        })
    };
    let docs = match ext.as_str() {
        "txt" | "text" => {
            let ids = encode_prefix(need_tok("text data")?, &body, max_tokens)?;
            check_ids(
                path,
                1,
                "line",
                &ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                vocab_size,
            )?;
            vec![ids]
        }
        "json" => {
            let rows: Vec<Vec<i64>> = serde_json::from_str(&body)
                .map_err(|e| data_err(path, format!("expected [[ids..], ..]: {e}")))?;
            rows.iter()
                .enumerate()
                .map(|(i, r)| check_ids(path, i + 1, "sequence", r, vocab_size))
                .collect::<Result<Vec<_>>>()?
        }
        "jsonl" => {
            let mut docs = Vec::new();
            for (n, line) in body.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let row: JsonlRow = serde_json::from_str(line)
                    .map_err(|e| data_err(path, format!("line {}: {e}", n + 1)))?;
                let ids = match (row.ids, row.text) {
                    (Some(ids), _) => ids,
                    (None, Some(text)) => need_tok("{\"text\"} rows")?
                        .encode(&text)?
                        .into_iter()
                        .map(|i| i as i64)
                        .collect(),
                    (None, None) => {
                        return Err(data_err(
                            path,
                            format!("line {}: expected a \"text\" or \"ids\" field", n + 1),
                        ))
                    }
                };
                docs.push(check_ids(path, n + 1, "line", &ids, vocab_size)?);
                let read: usize = docs.iter().map(Vec::len).sum();
                if max_tokens.is_some_and(|m| read >= m) {
                    break;
                }
            }
            docs
        }
        other => {
            return Err(data_err(
                path,
                format!("unknown data format `.{other}` (expected .txt, .json or .jsonl)"),
            ))
        }
    };
    let docs: Vec<Vec<u32>> = docs.into_iter().filter(|d| !d.is_empty()).collect();
    if docs.is_empty() {
        return Err(data_err(path, "data file holds no tokens"));
    }
    Ok(docs)
}

/// The tokens of `text`, or, with `max_tokens`, at least its first `max_tokens` tokens
/// (all when shorter): prefixes of doubling length cut at whitespace are tokenized until one
/// holds enough; tokens before a whitespace cut are the whole text's.
fn encode_prefix(tok: &Tokenizer, text: &str, max_tokens: Option<usize>) -> Result<Vec<u32>> {
    let Some(want) = max_tokens else {
        return tok.encode(text);
    };
    let mut len = want.saturating_mul(8).max(4096);
    while len < text.len() {
        // Cut at the last whitespace before `len` bytes (a char boundary).
        let cut = text[..text.floor_char_boundary(len)].rfind(char::is_whitespace);
        if let Some(cut) = cut.filter(|&c| c > 0) {
            let ids = tok.encode(&text[..cut])?;
            if ids.len() > want {
                return Ok(ids);
            }
        }
        len = len.saturating_mul(2);
    }
    tok.encode(text)
}

fn check_ids(path: &Path, line: usize, what: &str, ids: &[i64], vocab: usize) -> Result<Vec<u32>> {
    ids.iter()
        .map(|&id| {
            if id < 0 || id as usize >= vocab {
                Err(data_err(
                    path,
                    format!(
                        "{what} {line}: token id {id} is outside the vocabulary (size {vocab})"
                    ),
                ))
            } else {
                Ok(id as u32)
            }
        })
        .collect()
}

/// Cuts documents into sequences of `len` tokens (a document's tail shorter than `min_len`
/// is dropped). Documents are not concatenated across boundaries.
pub fn chunk(docs: &[Vec<u32>], len: usize, min_len: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for doc in docs {
        for piece in doc.chunks(len) {
            if piece.len() >= min_len.max(1) {
                out.push(piece.to_vec());
            }
        }
    }
    out
}

/// Up to `n` of `rows`, spread evenly over them (row `i · len / n` for `i < n`).
pub fn spread(rows: &[Vec<u32>], n: usize) -> Vec<Vec<u32>> {
    let take = n.min(rows.len());
    (0..take)
        .map(|i| rows[i * rows.len() / take].clone())
        .collect()
}

/// Up to `n` sequences of exactly `seq_len` tokens of `docs`, spread over them.
pub fn sequences(docs: &[Vec<u32>], seq_len: usize, n: usize) -> Vec<Vec<u32>> {
    spread(&chunk(docs, seq_len, seq_len), n)
}

/// A model's view of data files: its tokenizer (when it has one) and vocabulary size.
pub struct TokenData {
    tokenizer: Option<Tokenizer>,
    vocab_size: usize,
}

impl TokenData {
    /// The tokenizer of `model_dir` (if any) and `vocab_size`.
    pub fn for_model(model_dir: &Path, vocab_size: usize) -> Result<Self> {
        Ok(Self {
            tokenizer: Tokenizer::from_model_dir(model_dir)?,
            vocab_size,
        })
    }

    /// The documents of `path` ([`load_documents`]).
    pub fn documents(&self, path: &Path) -> Result<Vec<Vec<u32>>> {
        load_documents(path, self.tokenizer.as_ref(), self.vocab_size)
    }

    /// Up to `n` sequences of exactly `seq_len` tokens of `path`, spread over the file.
    pub fn sequences(&self, path: &Path, seq_len: usize, n: usize) -> Result<Vec<Vec<u32>>> {
        Ok(sequences(&self.documents(path)?, seq_len, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn a_token_budget_reads_a_prefix_with_the_whole_files_tokens() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let tok = Tokenizer::from_file(&root.join("examples/models/demo/tokenizer.json")).unwrap();
        let text = root.join("examples/data/corpus/train.txt");
        let vocab = tok.vocab_size();
        let whole = load_documents(&text, Some(&tok), vocab).unwrap();
        for budget in [1, 100, 5000] {
            let part = load_documents_up_to(&text, Some(&tok), vocab, Some(budget)).unwrap();
            let (p, w) = (&part[0], &whole[0]);
            assert!(
                p.len() > budget && p.len() < w.len(),
                "{budget}: {}",
                p.len()
            );
            assert_eq!(
                &w[..p.len()],
                &p[..],
                "{budget}: the prefix's tokens differ"
            );
        }
        // jsonl stops reading once it has enough: a bad row after that is never parsed.
        let dir = tempfile::tempdir().unwrap();
        let j = write(
            dir.path(),
            "a.jsonl",
            "{\"ids\":[1,2,3]}\n{\"ids\":[4]}\nnot json\n",
        );
        let docs = load_documents_up_to(&j, None, 10, Some(3)).unwrap();
        assert_eq!(docs, vec![vec![1, 2, 3]]);
        assert!(load_documents(&j, None, 10).is_err());
    }

    #[test]
    fn json_and_jsonl_ids() {
        let dir = tempfile::tempdir().unwrap();
        let j = write(dir.path(), "a.json", "[[1,2,3],[4,5]]");
        assert_eq!(
            load_documents(&j, None, 10).unwrap(),
            vec![vec![1, 2, 3], vec![4, 5]]
        );
        let l = write(dir.path(), "a.jsonl", "{\"ids\":[7,8]}\n\n{\"ids\":[9]}\n");
        assert_eq!(
            load_documents(&l, None, 10).unwrap(),
            vec![vec![7, 8], vec![9]]
        );
    }

    #[test]
    fn bad_data_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(dir.path(), "e.json", "  \n");
        assert!(load_documents(&e, None, 10)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let oov = write(dir.path(), "o.jsonl", "{\"ids\":[1]}\n{\"ids\":[3,12]}\n");
        let err = load_documents(&oov, None, 10).unwrap_err().to_string();
        assert!(err.contains("line 2: token id 12"), "{err}");
        let t = write(dir.path(), "t.txt", "hello");
        let err = load_documents(&t, None, 10).unwrap_err().to_string();
        assert!(err.contains("needs a tokenizer"), "{err}");
        let x = write(dir.path(), "x.csv", "1,2");
        assert!(load_documents(&x, None, 10)
            .unwrap_err()
            .to_string()
            .contains(".csv"));
    }

    #[test]
    fn chunking_drops_short_tails() {
        let docs = vec![(0..10).collect::<Vec<u32>>()];
        let c = chunk(&docs, 4, 3);
        assert_eq!(c, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    }
}
