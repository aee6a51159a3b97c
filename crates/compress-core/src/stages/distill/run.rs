//! [`run`]: one whole distill job — load the teacher, build or load the student, train it
//! against the teacher (resumable), save it atomically with its report and metrics.
//! `compress distill` and recipe stages both call it.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::config::DistillRunConfig;
use super::{check_vocab, distill, save_student, student_hf_config, DistillConfig, DistillReport};
use super::{ModelSummary, StudentSpec};
use crate::data::{spread, TokenData};
use crate::error::{CoreError, Result};
use crate::model::hf::{load_model, LoadedModel};
use crate::model::LlamaModel;
use crate::outdir::{check_output_dir, hidden_sibling};
use crate::progress::Progress;
use crate::settings;
use crate::train::kd::features::parse_pairs;
use crate::train::kd::FeatureConfig;
use crate::train::{windows, RunDir, TrainConfig};
use compress_format::hf_config::HfConfig;

/// What a distill run did (`compress distill --json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct DistillRunReport {
    /// Teacher, student and training summary.
    #[serde(flatten)]
    pub report: DistillReport,
    /// The output directory.
    pub out: String,
    /// Total seconds.
    pub seconds: f64,
    /// Whether every step ran (false: stopped by `stop_after`; continue with `resume`).
    #[serde(skip)]
    pub finished: bool,
    /// The checkpoint an unfinished run continues from.
    #[serde(skip)]
    pub checkpoint: String,
}

impl DistillRunReport {
    /// Teacher, initial and trained student side by side, as `compress distill` prints them.
    pub fn table(&self) -> String {
        let r = &self.report;
        let row = |name: &str, m: &ModelSummary| {
            format!(
                "{name:<14} {:>6} {:>6} {:>6} {:>7} {:>10.3}M {:>10}\n",
                m.layers,
                m.stored_layers,
                m.hidden_size,
                m.intermediate_size,
                m.params as f64 / 1e6,
                m.ppl.map_or("-".into(), |p| format!("{p:.3}"))
            )
        };
        let mut s = format!(
            "{:<14} {:>6} {:>6} {:>6} {:>7} {:>11} {:>10}\n",
            "model", "layers", "blocks", "hidden", "ffn", "params", "ppl"
        );
        s += &row("teacher", &r.teacher);
        s += &row("student init", &r.student_init);
        s += &row("student", &r.student);
        let parts: Vec<String> = r
            .final_parts
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        s += &format!(
            "α {} T {}: {} steps in {:.0} s; final {}; wrote {}",
            r.alpha,
            r.temperature,
            r.steps,
            r.train_seconds,
            parts.join(", "),
            self.out
        );
        s
    }
}

/// Distills `cfg.teacher` into the student `cfg` describes and writes it to `cfg.out`.
pub fn run(cfg: &DistillRunConfig, progress: &Progress) -> Result<DistillRunReport> {
    let started = Instant::now();
    let loss = cfg.validate()?;
    settings::file("data", &cfg.data)?;
    settings::opt_file("eval_data", &cfg.eval_data)?;
    let mut inputs: Vec<&Path> = vec![&cfg.teacher, &cfg.data];
    let others = [&cfg.student, &cfg.eval_data, &cfg.teacher_cache];
    inputs.extend(others.into_iter().flatten().map(|p| p.as_path()));
    check_output_dir(&cfg.out, &inputs, cfg.overwrite)?;
    let device = crate::parse_device(&cfg.device)?;
    let teacher = load_model(&cfg.teacher, &device)?;
    let tcfg = teacher.model.config.clone();
    let seq_len = cfg.seq_len.min(tcfg.max_position_embeddings);
    let data = TokenData::for_model(&cfg.teacher, tcfg.vocab_size)?;
    let train = windows(&data.documents(&cfg.data)?, seq_len);
    if train.is_empty() {
        let msg = format!("no window of `seq_len` {seq_len} + 1 tokens to train on");
        return Err(CoreError::setting("data", cfg.data.display(), msg));
    }
    let eval = match &cfg.eval_data {
        Some(p) => data.sequences(p, seq_len, cfg.eval_samples)?,
        None => Vec::new(),
    };
    if let (Some(p), true) = (&cfg.eval_data, eval.is_empty()) {
        let msg = format!("no sequence of `seq_len` {seq_len} tokens to score");
        return Err(CoreError::setting("eval_data", p.display(), msg));
    }
    let (student, student_hf) = student(cfg, &teacher, &train, &device)?;
    let features = (cfg.feature_weight > 0.0)
        .then(|| -> Result<FeatureConfig> {
            Ok(FeatureConfig {
                weight: cfg.feature_weight,
                distance: cfg.feature_loss,
                pairs: parse_pairs(
                    &cfg.feature_layers,
                    student.num_layers(),
                    teacher.model.num_layers(),
                )?,
            })
        })
        .transpose()?;
    let dcfg = DistillConfig {
        loss,
        features,
        train: TrainConfig {
            steps: cfg.steps,
            batch_size: cfg.batch_size,
            seq_len,
            lr: cfg.lr,
            min_lr: cfg.lr / 10.0,
            warmup_steps: cfg.warmup.unwrap_or((cfg.steps / 20).max(1)),
            grad_accum: cfg.grad_accum,
            seed: cfg.seed,
            checkpoint_every: cfg.checkpoint_every,
            ..TrainConfig::default()
        },
        teacher_cache: cfg.teacher_cache.clone().map(|p| (p, cfg.top_k)),
        stop_after: cfg.stop_after,
    };
    // A fixed name (no process id), so that `resume` finds an interrupted run's checkpoint.
    let run = RunDir {
        dir: hidden_sibling(&cfg.out, "distill-run")?,
    };
    if cfg.resume && !run.checkpoint().is_dir() {
        let msg = format!("no interrupted run at {}", run.dir.display());
        return Err(CoreError::missing("resume", msg));
    }
    if !cfg.resume && run.dir.exists() {
        std::fs::remove_dir_all(&run.dir).map_err(|e| CoreError::io(&run.dir, e))?;
    }
    let d = distill(
        &teacher.model,
        student,
        &student_hf,
        &dcfg,
        &train,
        &eval,
        &device,
        &run,
        cfg.resume,
    )?;
    let mut report = DistillRunReport {
        report: d.report.clone(),
        out: cfg.out.display().to_string(),
        seconds: 0.0,
        finished: d.finished,
        checkpoint: run.checkpoint().display().to_string(),
    };
    if d.finished {
        let dtype = settings::dtype("dtype", cfg.dtype.as_deref(), teacher.dtype)?;
        save_student(&d, &cfg.out, dtype, Some(cfg.teacher.clone()))?;
        let metrics = std::fs::read(run.metrics()).map_err(|e| CoreError::io(run.metrics(), e))?;
        compress_format::atomic::write_atomic(&cfg.out.join("metrics.jsonl"), &metrics)?;
        let _ = std::fs::remove_dir_all(&run.dir);
    } else {
        progress.note(format_args!(
            "stopped after step {}; continue with `resume` (checkpoint in {})",
            d.report.steps, report.checkpoint
        ));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The student and its config.json: loaded from `student`, or derived from the teacher.
fn student(
    cfg: &DistillRunConfig,
    teacher: &LoadedModel,
    train: &[Vec<u32>],
    device: &burn::tensor::Device,
) -> Result<(LlamaModel, HfConfig)> {
    let tcfg = &teacher.model.config;
    if let Some(dir) = &cfg.student {
        let s = load_model(dir, device)?;
        if s.quantization.is_some() {
            let msg = "is quantized; distill into a float student, then quantize";
            return Err(CoreError::setting("student", dir.display(), msg));
        }
        check_vocab(tcfg, &s.model.config)?;
        return Ok((s.model, s.hf_config));
    }
    let spec = match (&cfg.student_layers, cfg.student_width, cfg.share_layers) {
        (Some(l), ..) => StudentSpec::parse_layers(l, tcfg.num_layers)?,
        (None, Some(f), _) => StudentSpec::width(f)?,
        (None, None, Some(k)) => StudentSpec::shared(k, tcfg.num_layers)?,
        _ => return Err(CoreError::missing("student", "no student given")),
    };
    let calib = spread(train, 32);
    let model = spec.build(&teacher.model, &calib)?;
    let hf = student_hf_config(&teacher.hf_config, &model.config);
    Ok((model, hf))
}
