//! `compress train`: flags → [`TrainRunConfig`] → `train::run::run` → the summary.

use anyhow::Result;
use compress_core::train::run::{run as train, TrainRunConfig};

use crate::cli::{Common, TrainArgs};

pub fn run(a: TrainArgs, common: &Common) -> Result<()> {
    let json = a.json;
    let cfg = TrainRunConfig {
        config: a.config,
        init: a.init,
        data: a.data,
        tokenizer: a.tokenizer,
        steps: a.steps,
        out: a.out,
        batch_size: a.batch_size,
        seq_len: a.seq_len,
        lr: a.lr,
        min_lr: a.min_lr,
        warmup: a.warmup,
        weight_decay: a.weight_decay,
        grad_clip: a.grad_clip,
        grad_accum: a.grad_accum,
        checkpoint_every: a.checkpoint_every,
        resume: a.resume,
        stop_after: a.stop_after,
        dtype: a.dtype,
        overwrite: a.overwrite,
        device: common.device.clone(),
        seed: common.seed,
    };
    let r = train(&cfg, &super::progress(common, json))?;
    if json {
        return super::print_json(&r);
    }
    if !common.quiet {
        let (verb, path) = match r.finished {
            true => ("wrote", &r.out),
            false => ("checkpoint in", &r.checkpoint),
        };
        eprintln!(
            "step {}: loss {:.4} → {:.4}, {:.0} tokens/s; {verb} {path}",
            r.steps,
            r.first_loss.unwrap_or(f64::NAN),
            r.last_loss.unwrap_or(f64::NAN),
            r.mean_tokens_per_s,
        );
    }
    Ok(())
}
