//! `compress train --config tiny|CONFIG.json --data F --steps N --out O [...]`.

use anyhow::{Context, Result};
use compress_core::data::load_documents;
use compress_core::model::hf::{write_model_files, SaveOptions};
use compress_core::model::weights::init_random;
use compress_core::model::LlamaConfig;
use compress_core::outdir::check_output_dir;
use compress_core::tokenizer::Tokenizer;
use compress_core::train::{train, windows, NoHook, RunDir, TrainConfig};
use serde::Serialize;

use crate::cli::{Common, TrainArgs};

#[derive(Serialize)]
struct Summary {
    out: String,
    parameters: usize,
    start_step: usize,
    steps: usize,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    mean_tokens_per_s: f64,
}

pub fn run(a: TrainArgs, common: &Common) -> Result<()> {
    if let Some(init) = &a.init {
        check_output_dir(&a.out, &[init], true)?;
        if a.overwrite && check_output_dir(init, &[&a.out], true).is_err() {
            anyhow::bail!(
                "--init {} lies inside --out; --overwrite would delete it",
                init.display()
            );
        }
    }
    if !a.resume {
        check_output_dir(&a.out, &[], a.overwrite)?;
        if a.overwrite && a.out.is_dir() {
            // A fresh run: no old metrics or checkpoint may leak into it.
            std::fs::remove_dir_all(&a.out)
                .with_context(|| format!("clearing {}", a.out.display()))?;
        }
    }
    let device = super::device(common)?;
    let dtype = super::parse_dtype(&a.dtype)?;
    let tokenizer = match &a.tokenizer {
        Some(p) => Some(Tokenizer::from_file(p)?),
        None => match &a.init {
            Some(dir) => Tokenizer::from_model_dir(dir)?,
            None => None,
        },
    };
    let (model, hf_config) = match &a.init {
        Some(dir) => {
            let l = super::load(dir, &device)?;
            (l.model, l.hf_config)
        }
        None => {
            let cfg = LlamaConfig::from_name_or_file(&a.config)?;
            if let Some(t) = &tokenizer {
                if t.vocab_size() > cfg.vocab_size {
                    anyhow::bail!(
                        "{}: tokenizer has {} tokens but the model's vocab_size is {}",
                        t.path().display(),
                        t.vocab_size(),
                        cfg.vocab_size
                    );
                }
            }
            let model = init_random(&cfg, &device, common.seed)?;
            let hf = cfg.to_hf()?;
            (model, hf)
        }
    };
    let cfg = &model.config;
    let docs = load_documents(&a.data, tokenizer.as_ref(), cfg.vocab_size)?;
    let wins = windows(&docs, a.seq_len);
    let tc = TrainConfig {
        steps: a.steps,
        batch_size: a.batch_size,
        seq_len: a.seq_len,
        lr: a.lr,
        min_lr: a.min_lr,
        warmup_steps: a.warmup,
        weight_decay: a.weight_decay,
        grad_clip: (a.grad_clip > 0.0).then_some(a.grad_clip),
        grad_accum: a.grad_accum,
        seed: common.seed,
        checkpoint_every: a.checkpoint_every,
        ..TrainConfig::default()
    };
    let parameters = cfg.num_parameters();
    if !common.quiet {
        eprintln!(
            "training {:.2}M parameters on {} windows of {} tokens for {} steps",
            parameters as f64 / 1e6,
            wins.len(),
            a.seq_len,
            a.steps
        );
    }
    let run = RunDir { dir: a.out.clone() };
    let outcome = train(
        model,
        &hf_config,
        &wins,
        &tc,
        &device,
        &run,
        a.resume,
        a.stop_after,
        &mut NoHook,
    )?;
    let finished = outcome.start_step + outcome.metrics.len() >= tc.steps;
    if finished {
        let opts = SaveOptions {
            dtype,
            max_shard_bytes: None,
            tokenizer_from: None,
        };
        write_model_files(&outcome.model, &hf_config, &a.out, &opts)?;
        if let Some(t) = &tokenizer {
            let dst = a.out.join("tokenizer.json");
            if t.path() != dst {
                let bytes = std::fs::read(t.path())?;
                compress_format::atomic::write_atomic(&dst, &bytes)
                    .with_context(|| format!("writing {}", dst.display()))?;
            }
        }
    }
    let m = &outcome.metrics;
    let summary = Summary {
        out: a.out.display().to_string(),
        parameters,
        start_step: outcome.start_step,
        steps: outcome.start_step + m.len(),
        first_loss: m.first().map(|s| s.loss),
        last_loss: m.last().map(|s| s.loss),
        mean_tokens_per_s: m.iter().map(|s| s.tokens_per_s).sum::<f64>() / m.len().max(1) as f64,
    };
    if a.json {
        return super::print_json(&summary);
    }
    if !common.quiet {
        eprintln!(
            "step {}: loss {:.4} → {:.4}, {:.0} tokens/s; {} {}",
            summary.steps,
            summary.first_loss.unwrap_or(f64::NAN),
            summary.last_loss.unwrap_or(f64::NAN),
            summary.mean_tokens_per_s,
            if finished { "wrote" } else { "checkpoint in" },
            if finished {
                a.out.display().to_string()
            } else {
                run.checkpoint().display().to_string()
            }
        );
    }
    Ok(())
}
