//! `tokenizer.json` and `tokenizer_config.json` rebuilt from `tokenizer.ggml.*`, as transformers'
//! GGUF loader builds them (`integrations/gguf/gguf_tokenizer_mapping.py`):
//!
//! * `gpt2` (byte-level BPE): vocabulary and merges as stored; the pre-tokenizer named by
//!   `tokenizer.ggml.pre` (Llama 3 / Qwen2 `Split` regex + `ByteLevel`, SmolLM's single digits,
//!   else GPT-2's `ByteLevel` regex); `ByteLevel` decoder.
//! * `llama` (SentencePiece BPE with byte fallback): `Metaspace` pre-tokenizer (prepend on the
//!   first word), merges as stored or recovered from the scores as `generate_merges` does.
//!
//! Tokens typed control (3) become special added tokens, user-defined (4) plain added tokens.
//! BOS/EOS are added around a sequence as `tokenizer.ggml.add_bos_token`/`add_eos_token` say
//! (`llama` defaults to adding BOS, as llama.cpp does).

use std::collections::HashMap;

use serde_json::{json, Value as Json};

use super::super::read::GgufFile;
use super::super::value::Value;
use super::super::vocab::pre_tokenizer_json;
use crate::error::{FormatError, Result};

/// `tokenizer.ggml.token_type` of a control token.
const CONTROL: i64 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token.
const USER_DEFINED: i64 = 4;

/// The rebuilt tokenizer files.
pub(crate) struct Rebuilt {
    /// `tokenizer.json`.
    pub tokenizer: Json,
    /// `tokenizer_config.json` (special tokens, BOS/EOS flags, chat template).
    pub config: Json,
    /// `tokenizer.ggml.model` (`gpt2` or `llama`).
    pub model: String,
    /// What may tokenize differently from the original tokenizer, if anything.
    pub warning: Option<String>,
}

/// The array `key` with every element read by `item` (`None` when the key is absent); an
/// element `item` refuses is an error naming the key and what was `expected`.
fn array<'a, T>(
    file: &'a GgufFile,
    key: &str,
    expected: &str,
    item: impl Fn(&'a Value) -> Option<T>,
) -> Result<Option<Vec<T>>> {
    let Some(v) = file.get(key) else {
        return Ok(None);
    };
    let bad = || FormatError::invalid(file.path(), key, format!("expected an array of {expected}"));
    let items = v.as_array().ok_or_else(bad)?;
    items
        .iter()
        .map(|s| item(s).ok_or_else(bad))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn strings<'a>(file: &'a GgufFile, key: &str) -> Result<Option<Vec<&'a str>>> {
    array(file, key, "strings", Value::as_str)
}

fn numbers(file: &GgufFile, key: &str) -> Result<Option<Vec<f64>>> {
    array(file, key, "numbers", Value::as_number)
}

fn flag(file: &GgufFile, key: &str) -> Option<bool> {
    file.get(key).and_then(Value::as_bool)
}

/// The tokenizer files of `file`, or `None` when it stores no vocabulary.
pub(crate) fn rebuild(file: &GgufFile) -> Result<Option<Rebuilt>> {
    let Some(tokens) = strings(file, "tokenizer.ggml.tokens")? else {
        return Ok(None);
    };
    let model_key = "tokenizer.ggml.model";
    let model = file.get(model_key).and_then(Value::as_str).unwrap_or("");
    let types = numbers(file, "tokenizer.ggml.token_type")?.unwrap_or_default();
    let id = |key: &str| -> Result<Option<usize>> {
        match super::config::opt_uint(file, key)? {
            Some(i) if (i as usize) < tokens.len() => Ok(Some(i as usize)),
            Some(i) => Err(FormatError::invalid(
                file.path(),
                key,
                format!("token id {i} is outside the {} tokens", tokens.len()),
            )),
            None => Ok(None),
        }
    };
    let (bos, eos) = (
        id("tokenizer.ggml.bos_token_id")?,
        id("tokenizer.ggml.eos_token_id")?,
    );
    let unk = id("tokenizer.ggml.unknown_token_id")?;
    let pad = id("tokenizer.ggml.padding_token_id")?;
    let add_bos = flag(file, "tokenizer.ggml.add_bos_token").unwrap_or(model == "llama");
    let add_eos = flag(file, "tokenizer.ggml.add_eos_token").unwrap_or(false);
    let merges = strings(file, "tokenizer.ggml.merges")?;
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i.into()))
        .collect();
    let mut warning = None;
    // (model, normalizer, pre-tokenizer, decoder)
    let (bpe, normalizer, pre, decoder) = match model {
        "gpt2" => {
            let merges = merges.ok_or_else(|| FormatError::MissingKey {
                path: file.path().to_path_buf(),
                key: "tokenizer.ggml.merges".into(),
            })?;
            let pre_name = file.get("tokenizer.ggml.pre").and_then(Value::as_str);
            let bpe = json!({"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": pre_name == Some("llama-bpe"),
                "vocab": vocab, "merges": merges});
            let decoder = json!({"type": "ByteLevel", "add_prefix_space": true,
                "trim_offsets": true, "use_regex": true});
            let pre = pre_tokenizer_json(pre_name).unwrap_or_else(|| {
                warning = Some(format!(
                    "tokenizer.ggml.pre `{}` is not one GGUF import knows: GPT-2's split is used, \
                     as transformers does; text may tokenize differently from the original",
                    pre_name.unwrap_or("")
                ));
                pre_tokenizer_json(Some("gpt-2")).expect("gpt-2 is known")
            });
            (bpe, Json::Null, pre, decoder)
        }
        "llama" => {
            let merges = match merges {
                Some(m) => m.into_iter().map(str::to_string).collect(),
                None => {
                    let scores = numbers(file, "tokenizer.ggml.scores")?.ok_or_else(|| {
                        FormatError::MissingKey {
                            path: file.path().to_path_buf(),
                            key: "tokenizer.ggml.scores".into(),
                        }
                    })?;
                    merges_from_scores(&tokens, &scores)
                }
            };
            let unk_token = unk.map(|i| tokens[i]);
            let bpe = json!({"type": "BPE", "dropout": null, "unk_token": unk_token,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges});
            // The original Llama tokenizer.json form: spaces become ▁ and one ▁ is prepended
            // even to text that starts with a space (Metaspace would not prepend there).
            let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
            let normalizer = match flag(file, "tokenizer.ggml.add_space_prefix").unwrap_or(true) {
                true => json!({"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": "\u{2581}"}, replace]}),
                false => replace,
            };
            let decoder = json!({"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]});
            (bpe, normalizer, Json::Null, decoder)
        }
        other => {
            return Err(FormatError::invalid(
                file.path(),
                model_key,
                format!("`{other}`: GGUF import rebuilds gpt2 (byte-level BPE) and llama (SentencePiece) tokenizers"),
            ))
        }
    };
    let added: Vec<Json> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty as i64 == CONTROL || ty as i64 == USER_DEFINED)
        .map(|(i, (t, &ty))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty as i64 == CONTROL})
        })
        .collect();
    let name = |i: Option<usize>| i.map(|i| tokens[i].to_string());
    let post = post_processor(
        model,
        name(bos).zip(bos).filter(|_| add_bos),
        name(eos).zip(eos).filter(|_| add_eos),
    );
    let tokenizer = json!({"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": normalizer, "pre_tokenizer": pre,
        "post_processor": post, "decoder": decoder, "model": bpe});
    let mut config = json!({"add_bos_token": add_bos, "add_eos_token": add_eos,
        "bos_token": name(bos), "eos_token": name(eos), "unk_token": name(unk),
        "pad_token": name(pad), "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": false});
    if let Some(t) = file.get("tokenizer.chat_template").and_then(Value::as_str) {
        config["chat_template"] = t.into();
    }
    Ok(Some(Rebuilt {
        tokenizer,
        config,
        model: model.to_string(),
        warning,
    }))
}

/// BOS/EOS around one sequence (and a pair), after the byte-level offsets fix for `gpt2`.
fn post_processor(model: &str, bos: Option<(String, usize)>, eos: Option<(String, usize)>) -> Json {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    if bos.is_none() && eos.is_none() {
        return if model == "gpt2" {
            byte_level
        } else {
            Json::Null
        };
    }
    let special = |t: &(String, usize)| json!({"SpecialToken": {"id": t.0, "type_id": 0}});
    let seq = |s: &str, ty: u32| json!({"Sequence": {"id": s, "type_id": ty}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    single.extend(bos.iter().map(special));
    single.push(seq("A", 0));
    single.extend(eos.iter().map(special));
    pair.extend(single.iter().cloned());
    pair.extend(bos.iter().map(special));
    pair.push(seq("B", 1));
    pair.extend(eos.iter().map(special));
    let specials: serde_json::Map<String, Json> = bos
        .iter()
        .chain(eos.iter())
        .map(|(t, i)| (t.clone(), json!({"id": t, "ids": [i], "tokens": [t]})))
        .collect();
    let template = json!({"type": "TemplateProcessing", "single": single, "pair": pair,
        "special_tokens": specials});
    match model {
        "gpt2" => json!({"type": "Sequence", "processors": [byte_level, template]}),
        _ => template,
    }
}

/// SentencePiece merges recovered from the vocabulary and its scores, as transformers'
/// `generate_merges(vocab, scores)`: every split of a token into two vocabulary pieces, ordered
/// by the merged token's score, then the pieces' lengths (all descending), ties kept in
/// vocabulary order (pieces by id within a token).
pub(crate) fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Vec<String> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    // Later duplicates win in a Python dict built from (token, score) pairs; keep the last.
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        last.insert(t, i);
    }
    let mut merges: Vec<(f64, usize, usize, String)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if last[t] != i {
            continue;
        }
        let score = scores.get(i).copied().unwrap_or(0.0);
        let mut local: Vec<(usize, usize, &str, &str)> = t
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = t.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, l, r))
            })
            .collect();
        local.sort_by_key(|&(a, b, _, _)| (a, b));
        merges.extend(local.into_iter().map(|(_, _, l, r)| {
            (
                score,
                l.chars().count(),
                r.chars().count(),
                format!("{l} {r}"),
            )
        }));
    }
    merges.sort_by(|a, b| {
        (b.0, b.1, b.2)
            .partial_cmp(&(a.0, a.1, a.2))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    merges.into_iter().map(|m| m.3).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_the_merged_tokens_scores() {
        let tokens = ["<unk>", "a", "b", "c", "ab", "abc", "bc"];
        let scores = [0.0, -1.0, -1.0, -1.0, -2.0, -3.0, -2.5];
        let m = merges_from_scores(&tokens, &scores);
        assert_eq!(m, vec!["a b", "b c", "ab c", "a bc"]);
    }
}
