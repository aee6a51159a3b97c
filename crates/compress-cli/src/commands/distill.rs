//! `compress distill --teacher T (--student DIR | --student-layers N | --student-width F |
//! --share-layers K) --alpha A --T TEMP --data F --steps N --out O [--feature-weight W] [--json]`.
//!
//! Prints teacher and student side by side (layers, parameters, held-out perplexity) and writes
//! the student with `distill_report.json` and `metrics.jsonl` (soft/hard/feature parts per step).

use std::path::Path;

use anyhow::{Context, Result};
use compress_core::data::{chunk, load_documents, spread};
use compress_core::outdir::check_output_dir;
use compress_core::stages::distill::features::{parse_pairs, FeatureDistance};
use compress_core::stages::distill::{
    check_vocab, distill, save_student, student_hf_config, DistillConfig, DistillLoss,
    FeatureConfig, ModelSummary, StudentSpec,
};
use compress_core::tokenizer::Tokenizer;
use compress_core::train::{windows, RunDir, TrainConfig};

use crate::cli::{Common, DistillArgs, FeatureLoss};

fn existing(flag: &str, p: &Path) -> Result<()> {
    if !p.is_file() {
        anyhow::bail!("{flag} {}: file not found", p.display());
    }
    Ok(())
}

pub fn run(a: DistillArgs, common: &Common) -> Result<()> {
    let started = std::time::Instant::now();
    let loss = DistillLoss::new(a.alpha, a.temperature)?;
    if !(a.feature_weight.is_finite() && a.feature_weight >= 0.0) {
        anyhow::bail!(
            "--feature-weight {}: must be a finite number ≥ 0",
            a.feature_weight
        );
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        anyhow::bail!("--lr {}: must be a finite number > 0", a.lr);
    }
    existing("--data", &a.data)?;
    if let Some(p) = &a.eval_data {
        existing("--eval-data", p)?;
    }
    let mut inputs: Vec<&Path> = vec![&a.teacher];
    if let Some(s) = &a.student {
        inputs.push(s);
    }
    check_output_dir(&a.out, &inputs, a.overwrite)?;
    let device = super::device(common)?;
    let teacher = super::load(&a.teacher, &device)?;
    let tcfg = teacher.model.config.clone();
    let seq_len = a.seq_len.min(tcfg.max_position_embeddings);
    let tokenizer = Tokenizer::from_model_dir(&a.teacher)?;
    let docs = |p: &Path| {
        load_documents(p, tokenizer.as_ref(), tcfg.vocab_size)
            .with_context(|| format!("reading {}", p.display()))
    };
    let train_docs = docs(&a.data)?;
    let train = windows(&train_docs, seq_len);
    if train.is_empty() {
        anyhow::bail!("--data: no window of --seq-len {seq_len} + 1 tokens to train on");
    }
    let eval = match &a.eval_data {
        Some(p) => spread(&chunk(&docs(p)?, seq_len, seq_len), a.eval_samples),
        None => Vec::new(),
    };
    if a.eval_data.is_some() && eval.is_empty() {
        anyhow::bail!("--eval-data: no sequence of --seq-len {seq_len} tokens to score");
    }
    let (student, student_hf) = match (
        &a.student,
        &a.student_layers,
        a.student_width,
        a.share_layers,
    ) {
        (Some(dir), ..) => {
            let s = super::load(dir, &device)?;
            if s.quantization.is_some() {
                anyhow::bail!(
                    "--student {}: is quantized; distill into a float student, then quantize",
                    dir.display()
                );
            }
            check_vocab(&tcfg, &s.model.config).with_context(|| {
                format!(
                    "--student {} vs --teacher {}",
                    dir.display(),
                    a.teacher.display()
                )
            })?;
            (s.model, s.hf_config)
        }
        (None, layers, width, share) => {
            let spec = match (layers, width, share) {
                (Some(l), ..) => StudentSpec::parse_layers(l, tcfg.num_layers)?,
                (None, Some(f), _) => StudentSpec::width(f)?,
                (None, None, Some(k)) => StudentSpec::shared(k, tcfg.num_layers)?,
                _ => anyhow::bail!(
                    "give one of --student, --student-layers, --student-width, --share-layers"
                ),
            };
            let calib = spread(&train, 32);
            let model = spec.build(&teacher.model, &calib)?;
            let hf = student_hf_config(&teacher.hf_config, &model.config);
            (model, hf)
        }
    };
    let features = if a.feature_weight > 0.0 {
        Some(FeatureConfig {
            weight: a.feature_weight,
            distance: match a.feature_loss {
                FeatureLoss::Mse => FeatureDistance::Mse,
                FeatureLoss::Cosine => FeatureDistance::Cosine,
            },
            pairs: parse_pairs(
                &a.feature_layers,
                student.num_layers(),
                teacher.model.num_layers(),
            )?,
        })
    } else {
        None
    };
    let cfg = DistillConfig {
        loss,
        features,
        train: TrainConfig {
            steps: a.steps,
            batch_size: a.batch_size,
            seq_len,
            lr: a.lr,
            min_lr: a.lr / 10.0,
            warmup_steps: a.warmup.unwrap_or((a.steps / 20).max(1)),
            grad_accum: a.grad_accum,
            seed: common.seed,
            checkpoint_every: a.checkpoint_every,
            ..TrainConfig::default()
        },
        teacher_cache: a.teacher_cache.clone().map(|p| (p, a.top_k)),
        stop_after: a.stop_after,
    };
    // A fixed name (no process id), so that `--resume` finds an interrupted run's checkpoint.
    let run = RunDir {
        dir: super::hidden_sibling(&a.out, "distill-run")?,
    };
    if a.resume && !run.checkpoint().is_dir() {
        anyhow::bail!("--resume: no interrupted run at {}", run.dir.display());
    }
    if !a.resume && run.dir.exists() {
        std::fs::remove_dir_all(&run.dir)
            .with_context(|| format!("clearing the old run {}", run.dir.display()))?;
    }
    let d = distill(
        &teacher.model,
        student,
        &student_hf,
        &cfg,
        &train,
        &eval,
        &device,
        &run,
        a.resume,
    )?;
    if !d.finished {
        if !common.quiet {
            eprintln!(
                "stopped after step {}; continue with --resume (checkpoint in {})",
                d.report.steps,
                run.checkpoint().display()
            );
        }
        return Ok(());
    }
    let dtype = match &a.dtype {
        Some(s) => super::parse_dtype(s)?,
        None => teacher.dtype,
    };
    save_student(&d, &a.out, dtype, Some(a.teacher.clone()))?;
    let metrics = std::fs::read(run.metrics())
        .with_context(|| format!("reading {}", run.metrics().display()))?;
    let path = a.out.join("metrics.jsonl");
    compress_format::atomic::write_atomic(&path, &metrics)
        .with_context(|| format!("writing {}", path.display()))?;
    let _ = std::fs::remove_dir_all(&run.dir);
    if a.json {
        let mut v = serde_json::to_value(&d.report)?;
        v["out"] = a.out.display().to_string().into();
        v["seconds"] = started.elapsed().as_secs_f64().into();
        return super::print_json(&v);
    }
    if !common.quiet {
        let r = &d.report;
        let row = |name: &str, m: &ModelSummary| {
            println!(
                "{name:<14} {:>6} {:>6} {:>6} {:>7} {:>10.3}M {:>10}",
                m.layers,
                m.stored_layers,
                m.hidden_size,
                m.intermediate_size,
                m.params as f64 / 1e6,
                m.ppl.map_or("-".into(), |p| format!("{p:.3}"))
            );
        };
        println!(
            "{:<14} {:>6} {:>6} {:>6} {:>7} {:>11} {:>10}",
            "model", "layers", "blocks", "hidden", "ffn", "params", "ppl"
        );
        row("teacher", &r.teacher);
        row("student init", &r.student_init);
        row("student", &r.student);
        let parts: Vec<String> = r
            .final_parts
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        println!(
            "α {} T {}: {} steps in {:.0} s; final {}; wrote {}",
            r.alpha,
            r.temperature,
            r.steps,
            r.train_seconds,
            parts.join(", "),
            a.out.display()
        );
    }
    Ok(())
}
