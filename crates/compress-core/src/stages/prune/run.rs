//! [`run`]: one whole prune job — load the model and data, prune (with retraining rounds),
//! save atomically with `prune_report.json` and the retraining metrics. `compress prune` and
//! recipe stages both call it.

use std::time::Instant;

use serde::Serialize;

use super::config::PruneRunConfig;
use super::{prune, save_pruned, Criterion, PruneData, PruneReport};
use crate::data::TokenData;
use crate::error::{CoreError, Result};
use crate::outdir::{check_output_dir, scratch_dir};
use crate::progress::Progress;
use crate::settings;
use crate::train::{windows, write_metrics, RunDir};

/// What a prune run did (`compress prune --json` prints it; `prune_report.json` holds it).
#[derive(Clone, Debug, Serialize)]
pub struct PruneRunReport {
    /// The output directory.
    pub out: String,
    /// Rounds, sparsity and perplexities.
    #[serde(flatten)]
    pub report: PruneReport,
    /// Total seconds.
    pub seconds: f64,
}

impl PruneRunReport {
    /// The per-round and per-layer table and the summary line, as `compress prune` prints them.
    pub fn table(&self) -> String {
        let r = &self.report;
        let fmt = |p: Option<f64>| p.map_or("-".to_string(), |v| format!("{v:.3}"));
        let mut s = format!(
            "{:>5} {:>8} {:>8} {:>10} {:>10} {:>7}\n",
            "round", "target", "sparsity", "ppl pruned", "ppl retr.", "steps"
        );
        for x in &r.rounds {
            s += &format!(
                "{:>5} {:>8.3} {:>8.4} {:>10} {:>10} {:>7}\n",
                x.round,
                x.target,
                x.sparsity,
                fmt(x.ppl_pruned),
                fmt(x.ppl_retrained),
                x.retrain_steps
            );
        }
        for l in r.rounds.last().map_or(&[][..], |x| &x.layers) {
            s += &format!(
                "  {:<40} {:>8} params {:>7.4} sparse\n",
                l.name, l.params, l.sparsity
            );
        }
        let last = r
            .rounds
            .last()
            .and_then(|x| x.ppl_retrained.or(x.ppl_pruned));
        s += &format!(
            "{} {}: ppl dense {} → {}; params {} → {}; wrote {}",
            r.pattern,
            r.target,
            fmt(r.ppl_dense),
            fmt(last),
            r.params_before,
            r.params_after,
            self.out
        );
        s
    }
}

/// Prunes `cfg.model` into `cfg.out` as `cfg` says.
pub fn run(cfg: &PruneRunConfig, progress: &Progress) -> Result<PruneRunReport> {
    let started = Instant::now();
    let pcfg = cfg.validate()?;
    settings::opt_file("data", &cfg.data)?;
    settings::opt_file("calib", &cfg.calib)?;
    settings::opt_file("eval_data", &cfg.eval_data)?;
    let mut inputs = vec![cfg.model.as_path()];
    let files = [&cfg.data, &cfg.calib, &cfg.eval_data];
    inputs.extend(files.into_iter().flatten().map(|p| p.as_path()));
    check_output_dir(&cfg.out, &inputs, cfg.overwrite)?;
    let device = crate::parse_device(&cfg.device)?;
    let advice = "prune the float model, then quantize";
    let loaded = super::super::load_float(&cfg.model, &device, advice)?;
    let mcfg = &loaded.model.config;
    let seq_len = cfg.seq_len.min(mcfg.max_position_embeddings);
    let data = TokenData::for_model(&cfg.model, mcfg.vocab_size)?;
    let train_docs = match &cfg.data {
        Some(p) => data.documents(p)?,
        None => Vec::new(),
    };
    let train = windows(&train_docs, seq_len);
    if pcfg.retrain.is_some() && train.is_empty() {
        let msg = format!("no window of `seq_len` {seq_len} + 1 tokens to retrain on");
        return Err(CoreError::missing("data", msg));
    }
    let calib = match (&cfg.calib, pcfg.criterion) {
        (Some(p), _) => data.sequences(p, seq_len, cfg.calib_samples)?,
        (None, Criterion::Wanda) => crate::data::sequences(&train_docs, seq_len, cfg.calib_samples),
        _ => Vec::new(),
    };
    let eval = match &cfg.eval_data {
        Some(p) => data.sequences(p, seq_len, cfg.eval_samples)?,
        None => Vec::new(),
    };
    if cfg.eval_data.is_some() && eval.is_empty() {
        let msg =
            format!("no sequence of `seq_len` {seq_len} tokens to score (or `eval_samples` 0)");
        return Err(CoreError::missing("eval_data", msg));
    }
    let run_dir = RunDir {
        dir: scratch_dir(&cfg.out, "prune")?,
    };
    let bar = progress.spinner();
    bar.set_message("pruning");
    let data = PruneData {
        train: &train,
        eval: &eval,
        calib: &calib,
    };
    let outcome = prune(
        loaded.model,
        &loaded.hf_config,
        &pcfg,
        data,
        &device,
        &run_dir,
        &mut |r| {
            bar.set_message(format!(
                "round {} done (sparsity {:.4})",
                r.round, r.sparsity
            ))
        },
    );
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&run_dir.dir);
    let pruned = outcome?;
    let dtype = settings::dtype("dtype", cfg.dtype.as_deref(), loaded.dtype)?;
    save_pruned(
        &pruned,
        &cfg.ignore,
        &cfg.out,
        dtype,
        Some(cfg.model.clone()),
    )?;
    let report = PruneRunReport {
        out: cfg.out.display().to_string(),
        report: pruned.report,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| CoreError::Invalid(e.to_string()))?;
    compress_format::atomic::write_atomic(&cfg.out.join("prune_report.json"), json.as_bytes())?;
    if !pruned.metrics.is_empty() {
        write_metrics(&cfg.out, &pruned.metrics)?;
    }
    Ok(report)
}
