//! `compress prune`: flags → [`PruneRunConfig`] → `stages::prune::run` → the report.

use anyhow::Result;
use compress_core::stages::prune::{self, Criterion, PruneRunConfig, Schedule, Scope};

use crate::cli::{Common, PruneArgs, PruneCriterion, PruneSchedule, PruneScope};

/// The run config the flags describe.
fn config(a: PruneArgs, common: &Common) -> PruneRunConfig {
    PruneRunConfig {
        model: a.model,
        out: a.out,
        sparsity: a.sparsity,
        pattern: a.pattern,
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
        retrain_steps: a.retrain_steps,
        data: a.data,
        calib: a.calib,
        calib_samples: a.calib_samples,
        eval_data: a.held_out.eval_data,
        eval_samples: a.held_out.eval_samples,
        seq_len: a.seq_len,
        batch_size: a.batch_size,
        lr: a.lr,
        distill_alpha: a.distill_alpha,
        distill_temperature: a.distill_temperature,
        ignore: a.ignore.ignore,
        dtype: a.write.dtype,
        overwrite: a.write.overwrite,
        device: common.device.clone(),
        seed: common.seed,
    }
}

pub fn run(a: PruneArgs, common: &Common) -> Result<()> {
    let json = a.write.json;
    let report = prune::run(&config(a, common), &super::progress(common, json))?;
    super::print(&report, json, common, |r| r.table())
}
