//! Knowledge distillation from a frozen teacher into a smaller student.
//!
//! * [`loss`]: `L = α · T² · KL(p_t^T ‖ q_s^T) + (1 − α) · CE(labels, q_s)`, masked on padding,
//!   with a top-k variant for cached teachers ([`crate::train::kd`] owns it: pruning and QAT
//!   train against teachers too);
//! * [`features`]: MSE/cosine between mapped hidden states, with learned projections where
//!   widths differ (also in [`crate::train::kd`]);
//! * [`student`]: students derived from the teacher (fewer layers, narrower, shared blocks);
//! * [`cache`]: the teacher's top-k logits on disk, so a big teacher runs once;
//! * [`hook`]: the trainer hook that puts the teacher in the loop;
//! * [`distill`] runs it all on the foundation trainer and reports teacher vs student.

pub mod cache;
pub mod config;
pub mod run;
pub mod student;

pub use crate::train::kd::{features, hook, loss};

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use compress_format::hf_config::HfConfig;
use compress_format::safetensors::Dtype;
use serde::Serialize;

pub use crate::train::kd::{DistillHook, DistillLoss, DistillParts};
pub use crate::train::kd::{FeatureConfig, FeatureDistance, FeatureProjector};
pub use cache::TopKCache;
pub use config::DistillRunConfig;
pub use run::{run, DistillRunReport};
pub use student::StudentSpec;

use crate::error::{CoreError, Result};
use crate::eval::evaluate;
use crate::model::hf::{write_model_files, SaveOptions};
use crate::model::{LlamaConfig, LlamaModel};
use crate::outdir::write_dir_atomically;
use crate::train::{train, RunDir, StepMetrics, TrainConfig};

/// Everything a distillation run needs besides the models and data.
#[derive(Clone, Debug)]
pub struct DistillConfig {
    /// The soft/hard loss.
    pub loss: DistillLoss,
    /// The feature term, if any.
    pub features: Option<FeatureConfig>,
    /// Optimizer, schedule and batch settings of the student's training.
    pub train: TrainConfig,
    /// Teacher top-k cache: the file (built when missing) and `k`.
    pub teacher_cache: Option<(PathBuf, usize)>,
    /// End after this many total steps with a checkpoint, as an interruption would.
    pub stop_after: Option<usize>,
}

/// Size and quality of one model in the report.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    /// Decoder layers run (depth).
    pub layers: usize,
    /// Distinct decoder blocks stored.
    pub stored_layers: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// Query heads (largest layer).
    pub heads: usize,
    /// FFN width (largest layer).
    pub intermediate_size: usize,
    /// Parameters (shared blocks counted once).
    pub params: usize,
    /// Held-out perplexity, when evaluation data was given.
    pub ppl: Option<f64>,
}

/// What a distillation run did.
#[derive(Clone, Debug, Serialize)]
pub struct DistillReport {
    /// `α`.
    pub alpha: f64,
    /// `T`.
    pub temperature: f64,
    /// The feature term's settings, if any.
    pub features: Option<FeatureConfig>,
    /// The teacher.
    pub teacher: ModelSummary,
    /// The student before training (its held-out ppl as initialised).
    pub student_init: ModelSummary,
    /// The trained student.
    pub student: ModelSummary,
    /// Optimizer steps in all (a resumed run counts the steps before it too).
    pub steps: usize,
    /// Mean of the last 10% of steps' loss parts (`loss`, `soft`, `hard`, `feature`).
    pub final_parts: std::collections::BTreeMap<String, f64>,
    /// Top-k teacher cache used: the file, and whether this run built it.
    pub teacher_cache: Option<(PathBuf, bool)>,
    /// Seconds of training.
    pub train_seconds: f64,
}

/// The trained student with its config and the run's report.
#[derive(Debug)]
pub struct Distilled {
    /// The student.
    pub model: LlamaModel,
    /// The student's `config.json`.
    pub hf_config: HfConfig,
    /// Report.
    pub report: DistillReport,
    /// Per-step metrics of this call.
    pub metrics: Vec<StepMetrics>,
    /// Whether every step ran (false after `stop_after`).
    pub finished: bool,
}

/// Summary of `model` with its held-out ppl on `eval` (none when `eval` is empty).
pub fn summarize(model: &LlamaModel, eval: &[Vec<u32>]) -> Result<ModelSummary> {
    let c = &model.config;
    let ppl = match eval.is_empty() {
        true => None,
        false => Some(evaluate(model, None, eval, 8, 0, None)?.ppl),
    };
    Ok(ModelSummary {
        layers: c.num_layers,
        stored_layers: c.stored_layers(),
        hidden_size: c.hidden_size,
        heads: c.num_heads,
        intermediate_size: c.intermediate_size,
        params: c.num_parameters(),
        ppl,
    })
}

/// The student's `config.json`: the teacher's (all its other keys kept) with the student's
/// shape written over it.
pub fn student_hf_config(teacher: &HfConfig, student: &LlamaConfig) -> HfConfig {
    let mut hf = teacher.clone();
    hf.raw.remove("quantization_config");
    hf.num_hidden_layers = student.num_layers;
    hf.num_attention_heads = student.num_heads;
    hf.num_key_value_heads = student.num_kv_heads;
    hf.intermediate_size = student.intermediate_size;
    hf.hidden_size = student.hidden_size;
    hf.head_dim = student.head_dim;
    hf.layer_shapes = student.layer_shapes.clone();
    hf.shared_layers = student.shared_layers;
    // The teacher's per-layer `layer_types` list no longer fits a different depth.
    let listed = hf
        .raw
        .get("layer_types")
        .and_then(|v| v.as_array())
        .map(|a| a.len());
    if listed.is_some_and(|n| n != student.num_layers) {
        hf.raw.remove("layer_types");
    }
    hf
}

/// Errors unless teacher and student share a vocabulary (the soft targets are per token id).
pub fn check_vocab(teacher: &LlamaConfig, student: &LlamaConfig) -> Result<()> {
    if teacher.vocab_size != student.vocab_size {
        let msg = format!(
            "has vocab_size {}, the teacher {}; distillation needs one vocabulary",
            student.vocab_size, teacher.vocab_size
        );
        return Err(CoreError::missing("student", msg));
    }
    Ok(())
}

/// Loads the top-k cache at `path` if present, or builds it from `teacher` over `windows` (at
/// `temperature`) and writes it; returns it and whether it was built.
pub fn teacher_cache(
    teacher: &LlamaModel,
    windows: &[Vec<u32>],
    seq_len: usize,
    k: usize,
    temperature: f64,
    path: &Path,
) -> Result<(TopKCache, bool)> {
    let vocab = teacher.config.vocab_size;
    if path.exists() {
        let cache = TopKCache::load(path, windows, seq_len, k, temperature, vocab)?;
        return Ok((cache, false));
    }
    let bar = indicatif::ProgressBar::new(windows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} teacher top-k [{bar:30}] {pos}/{len} ({eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let cache = TopKCache::build(teacher, windows, seq_len, k, temperature, 8, &mut |n| {
        bar.inc(n as u64)
    })?;
    bar.finish_and_clear();
    cache.save(path)?;
    Ok((cache, true))
}

/// Trains `student` from `teacher` on `windows` (each `seq_len + 1` tokens) as `cfg` says and
/// reports both on `eval`. `student_hf` is the student's `config.json`; `run` holds the
/// trainer's checkpoint and metrics (`resume` continues from it).
#[allow(clippy::too_many_arguments)]
pub fn distill(
    teacher: &LlamaModel,
    student: LlamaModel,
    student_hf: &HfConfig,
    cfg: &DistillConfig,
    windows: &[Vec<u32>],
    eval: &[Vec<u32>],
    device: &Device,
    run: &RunDir,
    resume: bool,
) -> Result<Distilled> {
    check_vocab(&teacher.config, &student.config)?;
    cfg.train.validate()?;
    let teacher_sum = summarize(teacher, eval)?;
    let init_sum = summarize(&student, eval)?;
    let cache = match &cfg.teacher_cache {
        Some((path, k)) if cfg.loss.alpha > 0.0 => Some((
            teacher_cache(
                teacher,
                windows,
                cfg.train.seq_len,
                *k,
                cfg.loss.temperature,
                path,
            )?,
            path.clone(),
        )),
        _ => None,
    };
    let mut hook = DistillHook::new(
        teacher,
        device,
        cfg.loss,
        cache
            .as_ref()
            .map(|c| &c.0 .0 as &dyn crate::train::kd::TopKSource),
    );
    if let Some(f) = &cfg.features {
        hook = hook.with_features(f.clone(), student.config.hidden_size, cfg.train.seed);
    }
    let t0 = Instant::now();
    let out = train(
        student,
        student_hf,
        windows,
        &cfg.train,
        device,
        run,
        resume,
        cfg.stop_after,
        &mut hook,
    )?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let finished = out.start_step + out.metrics.len() >= cfg.train.steps;
    let student_sum = summarize(&out.model, if finished { eval } else { &[] })?;
    let tail = (out.metrics.len() / 10).max(1).min(out.metrics.len());
    let mut final_parts = std::collections::BTreeMap::new();
    for m in &out.metrics[out.metrics.len() - tail..] {
        *final_parts.entry("loss".to_string()).or_insert(0.0) += m.loss / tail as f64;
        for (k, v) in &m.parts {
            *final_parts.entry(k.clone()).or_insert(0.0) += v / tail as f64;
        }
    }
    Ok(Distilled {
        model: out.model,
        hf_config: student_hf.clone(),
        report: DistillReport {
            alpha: cfg.loss.alpha,
            temperature: cfg.loss.temperature,
            features: cfg.features.clone(),
            teacher: teacher_sum,
            student_init: init_sum,
            student: student_sum,
            steps: out.start_step + out.metrics.len(),
            final_parts,
            teacher_cache: cache.map(|(c, p)| (p, c.1)),
            train_seconds,
        },
        metrics: out.metrics,
        finished,
    })
}

/// Writes the student to `out` atomically: weights in `dtype`, config, tokenizer files from
/// `tokenizer_from`, and `distill_report.json`.
pub fn save_student(
    d: &Distilled,
    out: &Path,
    dtype: Dtype,
    tokenizer_from: Option<PathBuf>,
) -> Result<()> {
    let opts = SaveOptions {
        dtype,
        max_shard_bytes: None,
        tokenizer_from,
    };
    write_dir_atomically(out, |tmp| {
        write_model_files(&d.model, &d.hf_config, tmp, &opts)?;
        let json = serde_json::to_string_pretty(&d.report).expect("report serializes");
        compress_format::atomic::write_atomic(&tmp.join("distill_report.json"), json.as_bytes())?;
        Ok(())
    })
}
