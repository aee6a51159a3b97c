//! `compress generate --model M (--prompt TEXT | --prompt-ids 1,2,3) [...] [--json]`.

use std::io::Write;

use anyhow::Result;
use compress_core::generate::{generate, SamplingConfig};
use compress_core::tokenizer::Tokenizer;
use serde::Serialize;

use crate::cli::{Common, GenerateArgs};

#[derive(Serialize)]
struct Output {
    tokens: Vec<u32>,
    text: Option<String>,
}

pub fn run(a: GenerateArgs, common: &Common) -> Result<()> {
    let device = super::device(common)?;
    let loaded = super::load(&a.model, &device)?;
    let tokenizer = Tokenizer::from_model_dir(&a.model)?;
    let prompt = match (&a.prompt, &a.prompt_ids) {
        (_, Some(ids)) => ids.clone(),
        (Some(text), None) => match &tokenizer {
            Some(t) => t.encode(text)?,
            None => anyhow::bail!(
                "{}: --prompt text needs a tokenizer.json in the model dir; use --prompt-ids",
                a.model.display()
            ),
        },
        (None, None) => anyhow::bail!("give --prompt or --prompt-ids"),
    };
    let cfg = SamplingConfig {
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: common.seed,
        stop_tokens: if a.ignore_eos {
            Vec::new()
        } else {
            loaded.model.config.eos_token_ids.clone()
        },
    };
    let stream = !a.json && tokenizer.is_some();
    let mut printed = String::new();
    let mut so_far = Vec::new();
    if stream {
        print!("{}", a.prompt.clone().unwrap_or_default());
    }
    let tokens = generate(&loaded.model, &prompt, &cfg, |t| {
        if let (true, Some(tok)) = (stream, &tokenizer) {
            so_far.push(t);
            if let Ok(text) = tok.decode(&so_far) {
                if text.len() > printed.len() && text.starts_with(&printed) {
                    print!("{}", &text[printed.len()..]);
                    let _ = std::io::stdout().flush();
                    printed = text;
                }
            }
        }
    })?;
    let text = match &tokenizer {
        Some(t) => Some(t.decode(&tokens)?),
        None => None,
    };
    if a.json {
        return super::print_json(&Output { tokens, text });
    }
    if stream {
        // Whatever the last partial decode held back (e.g. an unfinished UTF-8 sequence).
        let rest = text
            .as_deref()
            .and_then(|t| t.strip_prefix(printed.as_str()))
            .unwrap_or("");
        println!("{rest}");
    } else {
        let ids: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        println!("{}", ids.join(","));
    }
    Ok(())
}
