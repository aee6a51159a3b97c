//! `compress generate --model M (--prompt TEXT | --prompt-ids 1,2,3) [--engine runtime|burn] [...] [--json]`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use compress_core::generate::{generate, SamplingConfig};
use compress_core::tokenizer::Tokenizer;
use compress_runtime::kernels::ActMode;
use compress_runtime::sampling::SamplingParams;
use compress_runtime::{Engine, EngineConfig, Model, Request};
use serde::Serialize;

use crate::cli::{Activations, Common, EngineKind, GenerateArgs};

#[derive(Serialize)]
struct Output {
    tokens: Vec<u32>,
    text: Option<String>,
}

/// The runtime's activation mode for `--activations`.
pub fn act_mode(a: Activations) -> ActMode {
    match a {
        Activations::Q8 => ActMode::Q8,
        Activations::F32 => ActMode::F32,
    }
}

/// Prints the prompt, then tokens as text as they arrive (whole UTF-8 characters only).
struct Printer<'a> {
    tokenizer: Option<&'a Tokenizer>,
    /// The prompt text, printed with the first token (so a load error comes first, alone).
    prompt: Option<String>,
    so_far: Vec<u32>,
    printed: String,
}

impl Printer<'_> {
    fn push(&mut self, t: u32) {
        let Some(tok) = self.tokenizer else { return };
        if let Some(p) = self.prompt.take() {
            print!("{p}");
        }
        self.so_far.push(t);
        if let Ok(text) = tok.decode(&self.so_far) {
            if text.len() > self.printed.len() && text.starts_with(&self.printed) {
                print!("{}", &text[self.printed.len()..]);
                let _ = std::io::stdout().flush();
                self.printed = text;
            }
        }
    }
}

pub fn run(a: GenerateArgs, common: &Common) -> Result<()> {
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
    let mut cfg = SamplingConfig {
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: common.seed,
        stop_tokens: Vec::new(),
    };
    cfg.validate()?;
    let stream = !a.json && tokenizer.is_some();
    let mut printer = Printer {
        tokenizer: stream.then_some(()).and(tokenizer.as_ref()),
        prompt: Some(a.prompt.clone().unwrap_or_default()),
        so_far: Vec::new(),
        printed: String::new(),
    };
    let tokens = match a.engine {
        EngineKind::Burn => {
            let device = super::device(common)?;
            let mut loaded = super::load(&a.model, &device)?;
            if let Some(k) = a.top_k.top_k {
                compress_core::stages::moe::set_top_k(&mut loaded.model, k)?;
            }
            if !a.ignore_eos {
                cfg.stop_tokens = loaded.model.config.eos_token_ids.clone();
            }
            generate(&loaded.model, &prompt, &cfg, |t| printer.push(t))?
        }
        EngineKind::Runtime => on_runtime(&a, common, prompt, &mut |t| printer.push(t))?,
    };
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
            .and_then(|t| t.strip_prefix(printer.printed.as_str()))
            .unwrap_or("");
        println!("{}{rest}", printer.prompt.take().unwrap_or_default());
    } else {
        let ids: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        println!("{}", ids.join(","));
    }
    Ok(())
}

/// Generates on the runtime (CPU, paged KV cache); `on_token` sees each token as it comes.
fn on_runtime(
    a: &GenerateArgs,
    common: &Common,
    prompt: Vec<u32>,
    on_token: &mut dyn FnMut(u32),
) -> Result<Vec<u32>> {
    if common.device != "cpu" {
        anyhow::bail!(
            "--engine runtime runs on the CPU; use --engine burn for --device {}",
            common.device
        );
    }
    let mut model =
        Model::load(&a.model).with_context(|| format!("loading model {}", a.model.display()))?;
    if let Some(k) = a.top_k.top_k {
        model.set_top_k(k)?;
    }
    let stop_tokens = if a.ignore_eos {
        Vec::new()
    } else {
        model.config.eos_token_ids.clone()
    };
    // Generation stops at the model's context, so the cache never needs more.
    let longest = (prompt.len() + a.max_tokens).min(model.config.max_position_embeddings);
    let blocks = longest.div_ceil(compress_runtime::kv::BLOCK_SIZE);
    let engine_cfg = EngineConfig {
        act_mode: act_mode(a.activations),
        ..EngineConfig::with_blocks(blocks)
    };
    let mut engine = Engine::new(Arc::new(model), engine_cfg)?;
    let sampling = SamplingParams {
        temperature: a.temperature,
        top_p: a.top_p,
        seed: common.seed,
    };
    let req = Request {
        sampling,
        stop_tokens,
        ..Request::greedy(prompt, a.max_tokens, Vec::new())
    };
    Ok(engine.generate(req, on_token)?.0)
}
