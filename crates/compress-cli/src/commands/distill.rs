//! `compress distill`: flags → [`DistillRunConfig`] → `stages::distill::run` → the report.

use anyhow::Result;
use compress_core::stages::distill::{self, DistillRunConfig, FeatureDistance};

use crate::cli::{Common, DistillArgs, FeatureLoss};

/// The run config the flags describe.
fn config(a: DistillArgs, common: &Common) -> DistillRunConfig {
    DistillRunConfig {
        teacher: a.teacher,
        student: a.student,
        student_layers: a.student_layers,
        student_width: a.student_width,
        share_layers: a.share_layers,
        alpha: a.alpha,
        temperature: a.temperature,
        data: a.data,
        steps: a.steps,
        out: a.out,
        feature_weight: a.feature_weight,
        feature_loss: match a.feature_loss {
            FeatureLoss::Mse => FeatureDistance::Mse,
            FeatureLoss::Cosine => FeatureDistance::Cosine,
        },
        feature_layers: a.feature_layers,
        teacher_cache: a.teacher_cache,
        top_k: a.top_k,
        eval_data: a.held_out.eval_data,
        eval_samples: a.held_out.eval_samples,
        seq_len: a.seq_len,
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        lr: a.lr,
        warmup: a.warmup,
        checkpoint_every: a.checkpoint_every,
        resume: a.resume,
        stop_after: a.stop_after,
        dtype: a.write.dtype,
        overwrite: a.write.overwrite,
        device: common.device.clone(),
        seed: common.seed,
    }
}

pub fn run(a: DistillArgs, common: &Common) -> Result<()> {
    let json = a.write.json;
    let report = distill::run(&config(a, common), &super::progress(common, json))?;
    if !report.finished {
        return Ok(());
    }
    super::print(&report, json, common, |r| r.table())
}
