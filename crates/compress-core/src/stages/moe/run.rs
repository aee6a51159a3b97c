//! [`run`]: one whole MoEfication job — split each FFN into experts, train the routers,
//! optionally fine-tune by distillation from the dense model, measure held-out perplexity at
//! several top-k against random routers, and save atomically with `moe_report.json`.
//! `compress moe` and recipe stages both call it.

use std::time::Instant;

use compress_format::hf_config::moe::Routing;
use serde::Serialize;

use super::config::{defaults, MoeRunConfig};
use super::{moefy, random_routers, set_top_k, LayerReport};
use crate::data::TokenData;
use crate::error::{CoreError, Result};
use crate::eval::evaluate;
use crate::model::hf::{write_model_files, SaveOptions};
use crate::model::LlamaModel;
use crate::outdir::{check_output_dir, scratch_dir, write_dir_atomically};
use crate::progress::Progress;
use crate::settings;
use crate::stages::distill::{distill, DistillConfig};
use crate::train::{windows, DistillLoss, RunDir, TrainConfig};

/// Held-out perplexity at one top-k.
#[derive(Clone, Debug, Serialize)]
pub struct AtK {
    /// Experts each token runs.
    pub top_k: usize,
    /// Fraction of FFN neurons a token runs.
    pub active_ffn: f64,
    /// With the trained routers.
    pub ppl_trained: f64,
    /// With random routers.
    pub ppl_random: f64,
}

/// What a MoEfication run did (`compress moe --json` prints it; `moe_report.json` holds it).
#[derive(Clone, Debug, Serialize)]
pub struct MoeRunReport {
    /// The output directory.
    pub out: String,
    /// Experts per layer.
    pub experts: usize,
    /// Experts each token runs.
    pub top_k: usize,
    /// How the chosen experts combine.
    pub routing: Routing,
    /// Held-out ppl of the dense model.
    pub ppl_dense: Option<f64>,
    /// Held-out ppl at `top_k` after fine-tuning, when it ran.
    pub ppl_finetuned: Option<Option<f64>>,
    /// Per layer: expert sizes and router accuracy.
    pub layers: Vec<LayerReport>,
    /// Held-out ppl at several top-k.
    pub at_k: Vec<AtK>,
    /// Total seconds.
    pub seconds: f64,
}

impl MoeRunReport {
    /// Router accuracy per layer and ppl per top-k, as `compress moe` prints them.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:>5} {:>16} {:>16}\n",
            "layer", "router accuracy", "random routing"
        );
        for l in &self.layers {
            let acc = l
                .router_accuracy
                .map_or("-".to_string(), |v| format!("{v:.3}"));
            s += &format!("{:>5} {:>16} {:>16.3}\n", l.layer, acc, l.random_accuracy);
        }
        if !self.at_k.is_empty() {
            s += &format!(
                "{:>5} {:>10} {:>12} {:>12}   (dense ppl {:.3})\n",
                "top-k",
                "active FFN",
                "ppl trained",
                "ppl random",
                self.ppl_dense.unwrap_or(f64::NAN)
            );
            for r in &self.at_k {
                s += &format!(
                    "{:>5} {:>10.3} {:>12.3} {:>12.3}\n",
                    r.top_k, r.active_ffn, r.ppl_trained, r.ppl_random
                );
            }
        }
        s += &format!(
            "{} experts per layer, top-{} ({:?}); wrote {}",
            self.experts, self.top_k, self.routing, self.out
        );
        s
    }
}

fn ppl(model: &LlamaModel, eval: &[Vec<u32>]) -> Result<f64> {
    Ok(evaluate(model, None, eval, 8, 0, None)?.ppl)
}

/// Converts `cfg.model` into a mixture-of-experts model in `cfg.out`.
pub fn run(cfg: &MoeRunConfig, progress: &Progress) -> Result<MoeRunReport> {
    let started = Instant::now();
    settings::opt_file("data", &cfg.data)?;
    settings::opt_file("eval_data", &cfg.eval_data)?;
    let mut inputs = vec![cfg.model.as_path()];
    inputs.extend(cfg.data.iter().chain(&cfg.eval_data).map(|p| p.as_path()));
    check_output_dir(&cfg.out, &inputs, cfg.overwrite)?;
    let device = crate::parse_device(&cfg.device)?;
    let advice = "convert the float model, then quantize the experts";
    let loaded = super::super::load_float(&cfg.model, &device, advice)?;
    let mcfg = &loaded.model.config;
    let stage = cfg.validate(mcfg.intermediate_size)?;
    let seq_len = cfg.seq_len.min(mcfg.max_position_embeddings);
    let data = TokenData::for_model(&cfg.model, mcfg.vocab_size)?;
    let calib = match &cfg.data {
        Some(p) => data.sequences(p, seq_len, cfg.calib_samples)?,
        None => Vec::new(),
    };
    if let (Some(p), true) = (&cfg.data, calib.is_empty()) {
        let msg = format!("no sequence of `seq_len` {seq_len} tokens to calibrate on");
        return Err(CoreError::setting("data", p.display(), msg));
    }
    let eval = match &cfg.eval_data {
        Some(p) => data.sequences(p, seq_len, cfg.eval_samples)?,
        None => Vec::new(),
    };
    let bar = progress.spinner();
    bar.set_message("splitting FFNs and training routers");
    let (mut moe, layers) = moefy(&loaded.model, &stage, &calib)?;
    bar.finish_and_clear();
    let mut finetuned = None;
    if let (Some(p), true) = (&cfg.data, cfg.finetune_steps > 0) {
        let wins = windows(&data.documents(p)?, seq_len);
        let d = finetune(cfg, &loaded.model, moe, &wins, &eval, seq_len, &device)?;
        finetuned = Some(d.1);
        moe = d.0;
    }
    let ppl_dense = (!eval.is_empty())
        .then(|| ppl(&loaded.model, &eval))
        .transpose()?;
    let at_k = match eval.is_empty() {
        true => Vec::new(),
        false => sweep(cfg, &mut moe, &eval)?,
    };
    let report = MoeRunReport {
        out: cfg.out.display().to_string(),
        experts: cfg.experts,
        top_k: cfg.top_k,
        routing: cfg.routing,
        ppl_dense,
        ppl_finetuned: finetuned,
        layers,
        at_k,
        seconds: started.elapsed().as_secs_f64(),
    };
    // The source's config (all its other keys) with the MoE keys written over it.
    let mut hf = loaded.hf_config.clone();
    hf.raw.remove("quantization_config");
    hf.moe = moe.config.moe;
    let opts = SaveOptions {
        dtype: settings::dtype("dtype", cfg.dtype.as_deref(), loaded.dtype)?,
        max_shard_bytes: None,
        tokenizer_from: Some(cfg.model.clone()),
    };
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| CoreError::Invalid(e.to_string()))?;
    write_dir_atomically(&cfg.out, |tmp| {
        write_model_files(&moe, &hf, tmp, &opts)?;
        compress_format::atomic::write_atomic(&tmp.join("moe_report.json"), json.as_bytes())?;
        Ok(())
    })?;
    Ok(report)
}

/// Fine-tunes `moe` (at `top_k`) by distillation from `dense` (α 1, T 1); returns it with its
/// held-out ppl.
fn finetune(
    cfg: &MoeRunConfig,
    dense: &LlamaModel,
    moe: LlamaModel,
    wins: &[Vec<u32>],
    eval: &[Vec<u32>],
    seq_len: usize,
    device: &burn::tensor::Device,
) -> Result<(LlamaModel, Option<f64>)> {
    let dc = DistillConfig {
        loss: DistillLoss::new(1.0, 1.0)?,
        features: None,
        train: TrainConfig {
            steps: cfg.finetune_steps,
            batch_size: defaults::FINETUNE_BATCH_SIZE,
            seq_len,
            lr: cfg.finetune_lr,
            min_lr: cfg.finetune_lr / 10.0,
            warmup_steps: (cfg.finetune_steps / 20).max(1),
            seed: cfg.seed,
            ..TrainConfig::default()
        },
        teacher_cache: None,
        stop_after: None,
    };
    let run = RunDir {
        dir: scratch_dir(&cfg.out, "moe")?,
    };
    let hf = moe.config.to_hf()?;
    let d = distill(dense, moe, &hf, &dc, wins, eval, device, &run, false);
    let _ = std::fs::remove_dir_all(&run.dir);
    let d = d?;
    Ok((d.model, d.report.student.ppl))
}

/// Held-out ppl with trained and random routers at top-k = 1, 2, 4, … below E, `top_k` and E;
/// leaves `moe` at `top_k`.
fn sweep(cfg: &MoeRunConfig, moe: &mut LlamaModel, eval: &[Vec<u32>]) -> Result<Vec<AtK>> {
    let mut ks: Vec<usize> = (0..)
        .map(|i| 1usize << i)
        .take_while(|&k| k < cfg.experts)
        .chain([cfg.top_k, cfg.experts])
        .collect();
    ks.sort();
    ks.dedup();
    let mut random = random_routers(moe, cfg.seed ^ 0x7a3d)?;
    let mut at_k = Vec::new();
    for k in ks {
        set_top_k(moe, k)?;
        set_top_k(&mut random, k)?;
        at_k.push(AtK {
            top_k: k,
            active_ffn: k as f64 / cfg.experts as f64,
            ppl_trained: ppl(moe, eval)?,
            ppl_random: ppl(&random, eval)?,
        });
    }
    set_top_k(moe, cfg.top_k)?;
    Ok(at_k)
}
