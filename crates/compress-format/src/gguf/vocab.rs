//! `tokenizer.json` → llama.cpp's `tokenizer.ggml.*` metadata, for byte-level BPE tokenizers
//! (the GPT-2 family: GPT-2-style, Llama 3 and Qwen2 pre-tokenizers).
//!
//! Written keys: `tokenizer.ggml.model = "gpt2"`, `.pre` (the pre-tokenizer llama.cpp must
//! apply, recognised from the `pre_tokenizer` JSON rather than by hashing a tokenization),
//! `.tokens` (strings by id, in the byte-level alphabet; ids the tokenizer lacks below the
//! model's vocabulary size become `[PAD<id>]`), `.token_type` (1 normal, 3 control = special
//! added token, 4 user-defined = other added token, 5 unused = padding), `.merges` (`"a b"`),
//! `.bos_token_id`, `.eos_token_id`, `.add_bos_token` and `.add_eos_token` (what the
//! tokenizer's post-processor adds around a single sequence).

use std::path::Path;

use serde_json::{json, Value as Json};

use super::value::Value;
use crate::error::{FormatError, Result};

/// Llama 3's `Split` regex.
pub const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's `Split` regex (single digits).
pub const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.token_type` values.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

fn bad(path: &Path, key: &str, msg: impl Into<String>) -> FormatError {
    FormatError::invalid(path, key, msg)
}

fn short(v: &Json) -> String {
    let s = v.to_string();
    if s.len() > 160 {
        format!("{}…", &s[..s.floor_char_boundary(160)])
    } else {
        s
    }
}

/// The llama.cpp pre-tokenizer name for a `pre_tokenizer` JSON object.
fn pre_tokenizer_name(path: &Path, pre: &Json) -> Result<&'static str> {
    let ty = pre.get("type").and_then(Json::as_str).unwrap_or("");
    let use_regex = |p: &Json| p.get("use_regex").and_then(Json::as_bool).unwrap_or(true);
    match ty {
        "ByteLevel" if use_regex(pre) => return Ok("gpt-2"),
        "Sequence" => {
            let parts = pre.get("pretokenizers").and_then(Json::as_array);
            if let Some([split, byte_level]) = parts.map(Vec::as_slice) {
                let regex = split
                    .get("pattern")
                    .and_then(|p| p.get("Regex"))
                    .and_then(Json::as_str);
                let is_split = split.get("type").and_then(Json::as_str) == Some("Split");
                let plain_bytes = byte_level.get("type").and_then(Json::as_str)
                    == Some("ByteLevel")
                    && !use_regex(byte_level);
                if is_split && plain_bytes {
                    match regex {
                        Some(r) if r == LLAMA3_REGEX => return Ok("llama-bpe"),
                        Some(r) if r == QWEN2_REGEX => return Ok("qwen2"),
                        _ => {}
                    }
                }
                // SmolLM: single digits, then GPT-2's byte-level regex.
                let single_digits = split.get("type").and_then(Json::as_str) == Some("Digits")
                    && split.get("individual_digits").and_then(Json::as_bool) == Some(true);
                let gpt2_bytes = byte_level.get("type").and_then(Json::as_str) == Some("ByteLevel")
                    && use_regex(byte_level);
                if single_digits && gpt2_bytes {
                    return Ok("smollm");
                }
            }
        }
        _ => {}
    }
    Err(bad(
        path,
        "pre_tokenizer",
        format!(
            "{} is not a pre-tokenizer GGUF export knows (GPT-2 ByteLevel, the Llama 3 / \
             Qwen2 Split + ByteLevel sequence, or SmolLM's Digits + ByteLevel)",
            short(pre)
        ),
    ))
}

/// The `pre_tokenizer` JSON for llama.cpp's pre-tokenizer `name` (the inverse of
/// `pre_tokenizer_name`, plus names llama.cpp gives the same splits), or `None` for a name not
/// known here; no name or `default` is GPT-2's.
pub fn pre_tokenizer_json(name: Option<&str>) -> Option<Json> {
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})
    };
    let gpt2 = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    Some(match name.unwrap_or("default") {
        "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "dbrx" | "falcon3" => {
            split(LLAMA3_REGEX)
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => split(QWEN2_REGEX),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, gpt2]}),
        "gpt-2" | "default" | "mpt" | "olmo" | "jais" => gpt2,
        _ => return None,
    })
}

/// Whether a post-processor puts `token` first (`first = true`) or last around one sequence.
fn template_adds(post: &Json, token: &str, first: bool) -> bool {
    match post.get("type").and_then(Json::as_str) {
        Some("TemplateProcessing") => {
            let Some(single) = post.get("single").and_then(Json::as_array) else {
                return false;
            };
            let end = if first { single.first() } else { single.last() };
            end.and_then(|p| p.get("SpecialToken"))
                .and_then(|s| s.get("id"))
                .and_then(Json::as_str)
                == Some(token)
        }
        Some("Sequence") => post
            .get("processors")
            .and_then(Json::as_array)
            .is_some_and(|ps| ps.iter().any(|p| template_adds(p, token, first))),
        _ => false,
    }
}

/// Builds the `tokenizer.ggml.*` entries for `path` (a `tokenizer.json`), padding the token
/// list to `vocab_size` (the model's embedding rows).
pub fn tokenizer_metadata(
    path: &Path,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<Vec<(String, Value)>> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    let json: Json = serde_json::from_str(&text).map_err(|source| FormatError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let model = json.get("model").ok_or_else(|| FormatError::MissingKey {
        path: path.to_path_buf(),
        key: "model".into(),
    })?;
    let model_type = model.get("type").and_then(Json::as_str).unwrap_or("");
    if model_type != "BPE" {
        return Err(bad(
            path,
            "model.type",
            format!("`{model_type}`: GGUF export supports byte-level BPE tokenizers only"),
        ));
    }
    if model.get("byte_fallback").and_then(Json::as_bool) == Some(true) {
        return Err(bad(
            path,
            "model.byte_fallback",
            "SentencePiece-style BPE (byte fallback) is not supported by GGUF export; \
             only byte-level BPE is",
        ));
    }
    match json.get("normalizer") {
        None | Some(Json::Null) => {}
        Some(n) if n.get("type").and_then(Json::as_str) == Some("NFC") => {}
        Some(n) => {
            return Err(bad(
                path,
                "normalizer",
                format!(
                    "{} cannot be expressed in GGUF (none or NFC only)",
                    short(n)
                ),
            ))
        }
    }
    let pre = match json.get("pre_tokenizer") {
        Some(p) if !p.is_null() => pre_tokenizer_name(path, p)?,
        _ => {
            return Err(bad(
                path,
                "pre_tokenizer",
                "missing: a byte-level BPE tokenizer needs a ByteLevel pre-tokenizer",
            ))
        }
    };

    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    let mut put = |id: u64, tok: &str, ty: i32, what: &str| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            bad(
                path,
                what,
                format!(
                    "token `{tok}` has id {id}, outside the model's vocabulary \
                     (vocab_size {vocab_size})"
                ),
            )
        })?;
        *slot = Some((tok.to_string(), ty));
        Ok(())
    };
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| bad(path, "model.vocab", "expected an object {token: id}"))?;
    for (tok, id) in vocab {
        let id = id.as_u64().ok_or_else(|| {
            bad(
                path,
                "model.vocab",
                format!("`{tok}`: id {id} is not an integer"),
            )
        })?;
        put(id, tok, NORMAL, "model.vocab")?;
    }
    for added in json
        .get("added_tokens")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(content)) = (
            added.get("id").and_then(Json::as_u64),
            added.get("content").and_then(Json::as_str),
        ) else {
            return Err(bad(
                path,
                "added_tokens",
                format!("{}: needs id and content", short(added)),
            ));
        };
        let is_special = added
            .get("special")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        put(
            id,
            content,
            if is_special { CONTROL } else { USER_DEFINED },
            "added_tokens",
        )?;
    }
    let (names, types): (Vec<String>, Vec<i32>) = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| (format!("[PAD{i}]"), UNUSED)))
        .unzip();

    let merges = model
        .get("merges")
        .and_then(Json::as_array)
        .ok_or_else(|| bad(path, "model.merges", "expected a list"))?
        .iter()
        .map(|m| match m {
            Json::String(s) => Ok(s.clone()),
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(a), Json::String(b)] => Ok(format!("{a} {b}")),
                _ => Err(bad(
                    path,
                    "model.merges",
                    format!("{}: not a pair", short(m)),
                )),
            },
            _ => Err(bad(
                path,
                "model.merges",
                format!("{}: not a merge", short(m)),
            )),
        })
        .collect::<Result<Vec<_>>>()?;

    let post = json.get("post_processor").cloned().unwrap_or(Json::Null);
    let token_of = |id: Option<u32>| id.and_then(|i| names.get(i as usize).cloned());
    let add_bos = token_of(bos).is_some_and(|t| template_adds(&post, &t, true));
    let add_eos = token_of(eos).is_some_and(|t| template_adds(&post, &t, false));

    let mut md: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), Value::strings(names)),
        ("tokenizer.ggml.token_type".into(), Value::i32s(types)),
        ("tokenizer.ggml.merges".into(), Value::strings(merges)),
    ];
    if let Some(b) = bos {
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    if let Some(e) = eos {
        md.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
    }
    md.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)));
    md.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(add_eos)));
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pre_tokenizers_are_recognised_from_their_json() {
        let p = Path::new("tokenizer.json");
        let seq = |regex: &str| {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
            ]})
        };
        let gpt2 = json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true});
        assert_eq!(pre_tokenizer_name(p, &gpt2).unwrap(), "gpt-2");
        assert_eq!(
            pre_tokenizer_name(p, &seq(LLAMA3_REGEX)).unwrap(),
            "llama-bpe"
        );
        assert_eq!(pre_tokenizer_name(p, &seq(QWEN2_REGEX)).unwrap(), "qwen2");
        let e = pre_tokenizer_name(p, &seq(r"\s+")).unwrap_err().to_string();
        assert!(e.contains("pre_tokenizer") && e.contains("Split"), "{e}");
        for name in ["gpt-2", "llama-bpe", "qwen2", "smollm"] {
            let pre = pre_tokenizer_json(Some(name)).unwrap();
            assert_eq!(pre_tokenizer_name(p, &pre).unwrap(), name);
        }
        let metaspace = json!({"type": "Metaspace", "replacement": "▁"});
        assert!(pre_tokenizer_name(p, &metaspace).is_err());
    }

    #[test]
    fn post_processor_decides_add_bos_and_add_eos() {
        let tpl = json!({"type": "TemplateProcessing", "single": [
            {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}}
        ]});
        assert!(template_adds(&tpl, "<|begin_of_text|>", true));
        assert!(!template_adds(&tpl, "<|end_of_text|>", false));
        let nested = json!({"type": "Sequence", "processors": [{"type": "ByteLevel"}, tpl]});
        assert!(template_adds(&nested, "<|begin_of_text|>", true));
        assert!(!template_adds(&json!({"type": "ByteLevel"}), "<s>", true));
    }
}
