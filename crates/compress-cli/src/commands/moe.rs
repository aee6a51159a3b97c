//! `compress moe`: flags → [`MoeRunConfig`] → `stages::moe::run` → the report.

use anyhow::Result;
use compress_core::stages::moe::{self, MoeRunConfig, SplitBy};
use compress_format::hf_config::moe::Routing;

use crate::cli::{Common, MoeArgs, MoeRouting, MoeSplit};

/// The run config the flags describe.
fn config(a: MoeArgs, common: &Common) -> MoeRunConfig {
    MoeRunConfig {
        model: a.model,
        out: a.out,
        experts: a.experts,
        top_k: a.top_k,
        routing: match a.routing {
            MoeRouting::Sum => Routing::Sum,
            MoeRouting::Softmax => Routing::Softmax,
        },
        split: match a.split {
            MoeSplit::Weights => SplitBy::Weights,
            MoeSplit::Activations => SplitBy::Activations,
        },
        data: a.data,
        calib_samples: a.calib_samples,
        router_steps: a.router_steps,
        router_lr: a.router_lr,
        kmeans_iters: a.kmeans_iters,
        finetune_steps: a.finetune_steps,
        finetune_lr: a.finetune_lr,
        eval_data: a.held_out.eval_data,
        eval_samples: a.held_out.eval_samples,
        seq_len: a.seq_len,
        dtype: a.write.dtype,
        overwrite: a.write.overwrite,
        device: common.device.clone(),
        seed: common.seed,
    }
}

pub fn run(a: MoeArgs, common: &Common) -> Result<()> {
    let json = a.write.json;
    let report = moe::run(&config(a, common), &super::progress(common, json))?;
    super::print(&report, json, common, |r| r.table())
}
