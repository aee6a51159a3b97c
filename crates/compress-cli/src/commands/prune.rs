//! `compress prune --model M --out O --sparsity S [--pattern unstructured|N:M|heads|neurons]
//! [--scope layer|global] [--criterion magnitude|wanda] [--schedule oneshot|iterative|agp]
//! [--rounds K] [--retrain-steps N] [--data F] [--distill-alpha A --distill-T T] [--eval-data F] [--json]`.
//!
//! Prints a report per round (sparsity, held-out perplexity after pruning and after
//! retraining) and writes the model with `prune_report.json` (and `metrics.jsonl` when it
//! retrained) next to it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use compress_core::data::{chunk, load_documents, spread};
use compress_core::outdir::check_output_dir;
use compress_core::stages::distill::DistillLoss;
use compress_core::stages::prune::{
    prune, save_pruned, Criterion, Pattern, PruneConfig, PruneData, PruneReport, RoundReport,
    Schedule, Scope,
};
use compress_core::tokenizer::Tokenizer;
use compress_core::train::{windows, RunDir, TrainConfig};
use serde::Serialize;

use crate::cli::{Common, PruneArgs, PruneCriterion, PruneSchedule, PruneScope};

#[derive(Serialize)]
struct Summary<'a> {
    out: String,
    #[serde(flatten)]
    report: &'a PruneReport,
    seconds: f64,
}

/// The pruning settings of `a`, checked (no file is read; `compress run` checks every prune
/// stage with it before any stage starts).
pub(super) fn config(a: &PruneArgs, seed: u64) -> Result<PruneConfig> {
    let pattern = Pattern::parse(&a.pattern)?;
    let sparsity = match (a.sparsity, pattern) {
        (Some(s), _) => s,
        (None, Pattern::NM { n, m }) => n as f64 / m as f64,
        (None, _) => anyhow::bail!("--sparsity: required for --pattern {}", a.pattern),
    };
    if a.batch_size == 0 || a.seq_len < 2 {
        anyhow::bail!("--batch-size must be > 0 and --seq-len ≥ 2");
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        anyhow::bail!("--lr {}: must be a finite number > 0", a.lr);
    }
    let retrain = (a.retrain_steps > 0).then(|| TrainConfig {
        steps: a.retrain_steps,
        batch_size: a.batch_size,
        seq_len: a.seq_len,
        lr: a.lr,
        min_lr: a.lr / 10.0,
        warmup_steps: (a.retrain_steps / 20).max(1),
        seed,
        ..TrainConfig::default()
    });
    let cfg = PruneConfig {
        sparsity,
        pattern,
        scope: match a.scope {
            PruneScope::Layer => Scope::Layer,
            PruneScope::Global => Scope::Global,
        },
        criterion: match a.criterion {
            PruneCriterion::Magnitude => Criterion::Magnitude,
            PruneCriterion::Wanda => Criterion::Wanda,
        },
        schedule: match a.schedule {
            PruneSchedule::Oneshot => Schedule::OneShot,
            PruneSchedule::Iterative => Schedule::Iterative,
            PruneSchedule::Agp => Schedule::Agp,
        },
        rounds: a.rounds,
        ignore: a.ignore.clone(),
        distill: match a.distill_alpha {
            0.0 => None,
            alpha => Some(DistillLoss::new(alpha, a.distill_temperature).map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    e.to_string()
                        .replace("--alpha", "--distill-alpha")
                        .replace("--T", "--distill-T")
                )
            })?),
        },
        retrain,
    };
    if cfg.distill.is_some() && cfg.retrain.is_none() {
        anyhow::bail!(
            "--distill-alpha {}: distills while retraining; give --retrain-steps",
            a.distill_alpha
        );
    }
    cfg.validate()?;
    if cfg.retrain.is_some() && a.data.is_none() {
        anyhow::bail!(
            "--retrain-steps {}: retraining needs --data FILE",
            a.retrain_steps
        );
    }
    Ok(cfg)
}

fn existing(flag: &str, p: &Option<PathBuf>) -> Result<()> {
    match p {
        Some(p) if !p.is_file() => anyhow::bail!("{flag} {}: file not found", p.display()),
        _ => Ok(()),
    }
}

pub fn run(a: PruneArgs, common: &Common) -> Result<()> {
    let started = std::time::Instant::now();
    let cfg = config(&a, common.seed)?;
    existing("--data", &a.data)?;
    existing("--calib", &a.calib)?;
    existing("--eval-data", &a.eval_data)?;
    check_output_dir(&a.out, &[&a.model], a.overwrite)?;
    let device = super::device(common)?;
    let loaded = super::load(&a.model, &device)?;
    if loaded.quantization.is_some() {
        anyhow::bail!(
            "{}: is quantized (quantization_config in config.json); prune the float model, then quantize",
            a.model.display()
        );
    }
    let vocab = loaded.model.config.vocab_size;
    let seq_len = a.seq_len.min(loaded.model.config.max_position_embeddings);
    let tokenizer = Tokenizer::from_model_dir(&a.model)?;
    let docs = |p: &Path| {
        load_documents(p, tokenizer.as_ref(), vocab)
            .with_context(|| format!("reading {}", p.display()))
    };
    let train_docs = match &a.data {
        Some(p) => docs(p)?,
        None => Vec::new(),
    };
    let train = windows(&train_docs, seq_len);
    if cfg.retrain.is_some() && train.is_empty() {
        anyhow::bail!("--data: no window of --seq-len {seq_len} + 1 tokens to retrain on");
    }
    let calib = match (&a.calib, cfg.criterion) {
        (Some(p), _) => spread(&chunk(&docs(p)?, seq_len, seq_len), a.calib_samples),
        (None, Criterion::Wanda) => spread(&chunk(&train_docs, seq_len, seq_len), a.calib_samples),
        _ => Vec::new(),
    };
    let eval = match &a.eval_data {
        Some(p) => spread(&chunk(&docs(p)?, seq_len, seq_len), a.eval_samples),
        None => Vec::new(),
    };
    if a.eval_data.is_some() && eval.is_empty() {
        anyhow::bail!(
            "--eval-data: no sequence of --seq-len {seq_len} tokens to score (or --eval-samples 0)"
        );
    }
    let run_dir = RunDir {
        dir: super::scratch_dir(&a.out, "prune")?,
    };
    let print = !common.quiet && !a.json;
    if print {
        println!(
            "{:>5} {:>8} {:>8} {:>10} {:>10} {:>7}",
            "round", "target", "sparsity", "ppl pruned", "ppl retr.", "steps"
        );
    }
    let fmt = |p: Option<f64>| p.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut on_round = |r: &RoundReport| {
        if print {
            println!(
                "{:>5} {:>8.3} {:>8.4} {:>10} {:>10} {:>7}",
                r.round,
                r.target,
                r.sparsity,
                fmt(r.ppl_pruned),
                fmt(r.ppl_retrained),
                r.retrain_steps
            );
        }
    };
    let data = PruneData {
        train: &train,
        eval: &eval,
        calib: &calib,
    };
    let outcome = prune(
        loaded.model,
        &loaded.hf_config,
        &cfg,
        data,
        &device,
        &run_dir,
        &mut on_round,
    );
    let _ = std::fs::remove_dir_all(&run_dir.dir);
    let pruned = outcome?;
    let dtype = match &a.dtype {
        Some(d) => super::parse_dtype(d)?,
        None => loaded.dtype,
    };
    save_pruned(&pruned, &a.ignore, &a.out, dtype, Some(a.model.clone()))?;
    let summary = Summary {
        out: a.out.display().to_string(),
        report: &pruned.report,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&summary)?;
    let path = a.out.join("prune_report.json");
    compress_format::atomic::write_atomic(&path, json.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    if !pruned.metrics.is_empty() {
        super::write_metrics(&a.out, &pruned.metrics)?;
    }
    if a.json {
        println!("{json}");
    } else if !common.quiet {
        let r = &pruned.report;
        if let Some(last) = r.rounds.last() {
            for l in &last.layers {
                println!(
                    "  {:<40} {:>8} params {:>7.4} sparse",
                    l.name, l.params, l.sparsity
                );
            }
        }
        println!(
            "{} {}: ppl dense {} → {}; params {} → {}; wrote {}",
            r.pattern,
            r.target,
            fmt(r.ppl_dense),
            fmt(r
                .rounds
                .last()
                .and_then(|x| x.ppl_retrained.or(x.ppl_pruned))),
            r.params_before,
            r.params_after,
            a.out.display()
        );
    }
    Ok(())
}
