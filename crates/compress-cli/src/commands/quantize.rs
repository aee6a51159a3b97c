//! `compress quantize`: flags → [`QuantizeRunConfig`] → `stages::quantize::run` → the report.

use anyhow::Result;
use compress_core::stages::quantize::{self, QuantizeRunConfig};

use crate::cli::{Common, QuantizeArgs};

/// The run config the flags describe.
pub(super) fn config(a: QuantizeArgs, common: &Common) -> QuantizeRunConfig {
    QuantizeRunConfig {
        model: a.model,
        out: a.out,
        bits: a.bits,
        group_size: a.group_size,
        per_channel: a.per_channel,
        per_tensor: a.per_tensor,
        symmetric: a.symmetric,
        method: a.method.into(),
        calib: a.calib,
        calib_samples: a.calib_samples,
        seq_len: a.seq_len,
        act_order: match (a.act_order, a.no_act_order) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        dampening: a.dampening,
        data: a.data,
        steps: a.steps,
        lr: a.lr,
        batch_size: a.batch_size,
        distill: a.distill,
        ignore: a.ignore.ignore,
        dtype: a.write.dtype,
        strict_compat: a.strict_compat,
        overwrite: a.write.overwrite,
        device: common.device.clone(),
        seed: common.seed,
    }
}

pub fn run(a: QuantizeArgs, common: &Common) -> Result<()> {
    let json = a.write.json;
    let report = quantize::run(&config(a, common), &super::progress(common, json))?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    super::print(&report, json, common, |r| r.table())
}
