//! `compress moe --model M --out O --experts E --top-k K [--data F --router-steps N]
//! [--routing sum|softmax] [--eval-data F] [--json]`.
//!
//! Prints per layer the router accuracy against random routing and, with `--eval-data`, the
//! held-out perplexity at several top-k with trained and with random routers; writes the MoE
//! model with `moe_report.json`.

use std::path::Path;

use anyhow::{Context, Result};
use compress_core::data::{chunk, load_documents, spread};
use compress_core::eval::evaluate;
use compress_core::model::hf::{write_model_files, SaveOptions};
use compress_core::model::LlamaModel;
use compress_core::outdir::{check_output_dir, write_dir_atomically};
use compress_core::stages::distill::{distill, DistillConfig, DistillLoss};
use compress_core::stages::moe::{
    moefy, random_routers, set_top_k, LayerReport, MoeStageConfig, SplitBy,
};
use compress_core::tokenizer::Tokenizer;
use compress_core::train::{windows, RunDir, TrainConfig};
use compress_format::hf_config::moe::Routing;
use serde::Serialize;

use crate::cli::{Common, MoeArgs, MoeRouting, MoeSplit};

/// Held-out perplexity at one top-k.
#[derive(Serialize)]
struct AtK {
    top_k: usize,
    /// Fraction of FFN neurons a token runs.
    active_ffn: f64,
    ppl_trained: f64,
    ppl_random: f64,
}

#[derive(Serialize)]
struct Report {
    out: String,
    experts: usize,
    top_k: usize,
    routing: Routing,
    ppl_dense: Option<f64>,
    /// Held-out ppl at --top-k after fine-tuning, when it ran.
    ppl_finetuned: Option<Option<f64>>,
    layers: Vec<LayerReport>,
    at_k: Vec<AtK>,
    seconds: f64,
}

fn ppl(model: &LlamaModel, eval: &[Vec<u32>]) -> Result<f64> {
    Ok(evaluate(model, None, eval, 8, 0, None)?.ppl)
}

pub fn run(a: MoeArgs, common: &Common) -> Result<()> {
    let started = std::time::Instant::now();
    for (flag, p) in [("--data", &a.data), ("--eval-data", &a.eval_data)] {
        if let Some(p) = p {
            if !p.is_file() {
                anyhow::bail!("{flag} {}: file not found", p.display());
            }
        }
    }
    check_output_dir(&a.out, &[&a.model], a.overwrite)?;
    let device = super::device(common)?;
    let loaded = super::load(&a.model, &device)?;
    if loaded.quantization.is_some() {
        anyhow::bail!(
            "{}: is quantized; convert the float model, then quantize the experts",
            a.model.display()
        );
    }
    let cfg = MoeStageConfig {
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
        kmeans_iters: a.kmeans_iters,
        router_steps: a.router_steps,
        router_lr: a.router_lr,
        seed: common.seed,
    };
    cfg.validate(loaded.model.config.intermediate_size)?;
    if a.data.is_none() && a.router_steps > 0 {
        anyhow::bail!(
            "--router-steps {}: training the routers needs --data (--router-steps 0 leaves them at \
             zero: every expert ties and runs, i.e. the dense model)",
            a.router_steps
        );
    }
    let seq_len = a.seq_len.min(loaded.model.config.max_position_embeddings);
    let tokenizer = Tokenizer::from_model_dir(&a.model)?;
    let vocab = loaded.model.config.vocab_size;
    let rows = |p: &Path, n: usize| -> Result<Vec<Vec<u32>>> {
        let docs = load_documents(p, tokenizer.as_ref(), vocab)
            .with_context(|| format!("reading {}", p.display()))?;
        Ok(spread(&chunk(&docs, seq_len, seq_len), n))
    };
    let calib = match &a.data {
        Some(p) => rows(p, a.calib_samples)?,
        None => Vec::new(),
    };
    if a.data.is_some() && calib.is_empty() {
        anyhow::bail!("--data: no sequence of --seq-len {seq_len} tokens to calibrate on");
    }
    let eval = match &a.eval_data {
        Some(p) => rows(p, a.eval_samples)?,
        None => Vec::new(),
    };
    let (mut moe, layers) = moefy(&loaded.model, &cfg, &calib)?;
    let mut finetune = None;
    if a.finetune_steps > 0 {
        let Some(data) = &a.data else {
            anyhow::bail!("--finetune-steps: fine-tuning needs --data");
        };
        if !(a.finetune_lr.is_finite() && a.finetune_lr > 0.0) {
            anyhow::bail!(
                "--finetune-lr {}: must be a finite number > 0",
                a.finetune_lr
            );
        }
        let docs = load_documents(data, tokenizer.as_ref(), vocab)?;
        let wins = windows(&docs, seq_len);
        let tc = TrainConfig {
            steps: a.finetune_steps,
            batch_size: 8,
            seq_len,
            lr: a.finetune_lr,
            min_lr: a.finetune_lr / 10.0,
            warmup_steps: (a.finetune_steps / 20).max(1),
            seed: common.seed,
            ..TrainConfig::default()
        };
        let dc = DistillConfig {
            loss: DistillLoss::new(1.0, 1.0)?,
            features: None,
            train: tc,
            teacher_cache: None,
            stop_after: None,
        };
        let run = RunDir {
            dir: super::scratch_dir(&a.out, "moe")?,
        };
        let hf = moe.config.to_hf()?;
        let d = distill(
            &loaded.model,
            moe,
            &hf,
            &dc,
            &wins,
            &eval,
            &device,
            &run,
            false,
        );
        let _ = std::fs::remove_dir_all(&run.dir);
        let d = d?;
        finetune = Some(d.report.student.ppl);
        moe = d.model;
    }
    let mut at_k = Vec::new();
    let ppl_dense = match eval.is_empty() {
        true => None,
        false => Some(ppl(&loaded.model, &eval)?),
    };
    if !eval.is_empty() {
        let mut ks: Vec<usize> = (0..)
            .map(|i| 1usize << i)
            .take_while(|&k| k < a.experts)
            .chain([a.top_k, a.experts])
            .collect();
        ks.sort();
        ks.dedup();
        let mut random = random_routers(&moe, common.seed ^ 0x7a3d)?;
        for k in ks {
            set_top_k(&mut moe, k)?;
            set_top_k(&mut random, k)?;
            at_k.push(AtK {
                top_k: k,
                active_ffn: k as f64 / a.experts as f64,
                ppl_trained: ppl(&moe, &eval)?,
                ppl_random: ppl(&random, &eval)?,
            });
        }
        set_top_k(&mut moe, a.top_k)?;
    }
    let report = Report {
        out: a.out.display().to_string(),
        experts: a.experts,
        top_k: a.top_k,
        routing: cfg.routing,
        ppl_dense,
        ppl_finetuned: finetune,
        layers,
        at_k,
        seconds: started.elapsed().as_secs_f64(),
    };
    // The source's config (all its other keys) with the MoE keys written over it.
    let mut hf = loaded.hf_config.clone();
    hf.raw.remove("quantization_config");
    hf.moe = moe.config.moe;
    let dtype = match &a.dtype {
        Some(d) => super::parse_dtype(d)?,
        None => loaded.dtype,
    };
    let opts = SaveOptions {
        dtype,
        max_shard_bytes: None,
        tokenizer_from: Some(a.model.clone()),
    };
    let json = serde_json::to_string_pretty(&report)?;
    write_dir_atomically(&a.out, |tmp| {
        write_model_files(&moe, &hf, tmp, &opts)?;
        compress_format::atomic::write_atomic(&tmp.join("moe_report.json"), json.as_bytes())?;
        Ok(())
    })?;
    if a.json {
        println!("{json}");
        return Ok(());
    }
    if !common.quiet {
        println!(
            "{:>5} {:>16} {:>16}",
            "layer", "router accuracy", "random routing"
        );
        for l in &report.layers {
            let acc = l
                .router_accuracy
                .map_or("-".to_string(), |v| format!("{v:.3}"));
            println!("{:>5} {:>16} {:>16.3}", l.layer, acc, l.random_accuracy);
        }
        if !report.at_k.is_empty() {
            println!(
                "{:>5} {:>10} {:>12} {:>12}   (dense ppl {:.3})",
                "top-k",
                "active FFN",
                "ppl trained",
                "ppl random",
                report.ppl_dense.unwrap_or(f64::NAN)
            );
            for r in &report.at_k {
                println!(
                    "{:>5} {:>10.3} {:>12.3} {:>12.3}",
                    r.top_k, r.active_ffn, r.ppl_trained, r.ppl_random
                );
            }
        }
        println!(
            "{} experts per layer, top-{} ({:?}); wrote {}",
            a.experts,
            a.top_k,
            cfg.routing,
            a.out.display()
        );
    }
    Ok(())
}
