//! [`run`]: one whole quantize job — read the checkpoint, optionally fine-tune with fake
//! quantization (QAT), quantize layer by layer (streamed from the checkpoint), save the packed
//! dir atomically, and report. `compress quantize` and recipe stages both call it.

use std::time::Instant;

use compress_format::pack_quantized::WeightQuant;
use compress_format::safetensors::Dtype;
use serde::Serialize;

use super::config::{defaults, QuantMethod, QuantizeRunConfig};
use super::qat::{train_qat, FakeQuant, QatConfig};
use super::{quantize_sequential, save_quantized, Calibration, LayerReport, ModelSource};
use super::{QuantizeConfig, QuantizedModel};
use crate::data::TokenData;
use crate::error::{CoreError, Result};
use crate::model::hf::{open_checkpoint, Checkpoint};
use crate::model::weights::build_model;
use crate::outdir::{check_output_dir, scratch_dir};
use crate::progress::Progress;
use crate::settings;
use crate::train::{windows, write_metrics, RunDir, StepMetrics, TrainConfig};
use crate::LlamaModel;

/// What a quantize run did (`compress quantize --json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct QuantizeReport {
    /// The output directory.
    pub out: String,
    /// One line per quantized linear.
    pub layers: Vec<LayerReport>,
    /// Bytes of the quantized weights in the source dtype.
    pub bytes_before: usize,
    /// Bytes of their packed codes, scales and zero points.
    pub bytes_after: usize,
    /// Bits per weight including scales and zero points.
    pub bits_per_weight: f64,
    /// Seconds each decoder layer took (calibration pass, method, propagation).
    pub layer_seconds: Vec<f64>,
    /// Total seconds, including reading the model and writing the output.
    pub seconds: f64,
    /// Things the output's users should know (e.g. ragged groups load only in compress).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl QuantizeReport {
    /// The per-layer table and the one-line summary, as `compress quantize` prints them.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<36} {:>6} {:>4} {:>6} {:>10} {:>10} {:>10} {:>6}\n",
            "layer", "method", "bits", "group", "rel.err", "before", "after", "bpw"
        );
        for r in &self.layers {
            let group = r.group_size.map_or("-".to_string(), |g| g.to_string());
            s.push_str(&format!(
                "{:<36} {:>6} {:>4} {:>6} {:>10.2e} {:>10} {:>10} {:>6.2}\n",
                r.name,
                r.method,
                r.bits,
                group,
                r.rel_error,
                r.bytes_before,
                r.bytes_after,
                r.bits_per_weight
            ));
        }
        s.push_str(&format!(
            "{} layers: {:.2} MB → {:.2} MB ({:.2} bits/weight incl. scales); wrote {}",
            self.layers.len(),
            self.bytes_before as f64 / 1e6,
            self.bytes_after as f64 / 1e6,
            self.bits_per_weight,
            self.out
        ));
        s
    }
}

/// Quantizes `cfg.model` into `cfg.out` as `cfg` says.
pub fn run(cfg: &QuantizeRunConfig, progress: &Progress) -> Result<QuantizeReport> {
    let started = Instant::now();
    let (weights, method) = cfg.validate()?;
    settings::opt_file("calib", &cfg.calib)?;
    let mut inputs = vec![cfg.model.as_path()];
    inputs.extend(cfg.calib.iter().chain(&cfg.data).map(|p| p.as_path()));
    check_output_dir(&cfg.out, &inputs, cfg.overwrite)?;
    let device = crate::parse_device(&cfg.device)?;
    let ck = open_checkpoint(&cfg.model)?;
    if ck.quantization.is_some() {
        return Err(CoreError::setting(
            "model",
            cfg.model.display(),
            "is already quantized (quantization_config in config.json); quantize the float model",
        ));
    }
    if ck.sparsity.is_some() && cfg.method == QuantMethod::Qat {
        return Err(CoreError::setting(
            "model",
            cfg.model.display(),
            "is pruned (sparsity_config); `method` qat would train its zeros away, use rtn, mse, gptq or awq",
        ));
    }
    let calib = calibration(cfg, &ck, progress)?;
    let dtype = settings::dtype("dtype", cfg.dtype.as_deref(), ck.dtype)?;
    let qcfg = QuantizeConfig {
        weights,
        ignore: cfg.ignore.clone(),
        method,
    };
    // QAT fine-tunes the float model in memory; the export below is then plain RTN of it.
    let trained = match cfg.method {
        QuantMethod::Qat => Some(train(cfg, &ck, weights, dtype, &device, progress)?),
        _ => None,
    };
    let source = match &trained {
        Some((model, _)) => ModelSource::Model(model),
        None => ModelSource::Checkpoint(&ck, device.clone()),
    };
    let mut layer_seconds = Vec::new();
    let mut last = Instant::now();
    let bar = progress.bar(ck.config.num_layers as u64, "quantize", "layers");
    let mut q = quantize_sequential(
        &source,
        &qcfg,
        calib.as_ref(),
        dtype,
        ck.dtype,
        &mut |done, _| {
            layer_seconds.push(last.elapsed().as_secs_f64());
            last = Instant::now();
            bar.set_position(done as u64)
        },
    )?;
    bar.finish_and_clear();
    if trained.is_some() {
        // The layers' error is against the fine-tuned weights.
        q.reports.iter_mut().for_each(|r| r.method = "qat".into());
    }
    let warnings = ragged_warning(cfg, &q)?.into_iter().collect();
    save_quantized(&ck.hf_config, &q, &cfg.out, dtype, Some(cfg.model.clone()))?;
    if let Some((_, metrics)) = &trained {
        write_metrics(&cfg.out, metrics)?;
    }
    let before: usize = q.reports.iter().map(|r| r.bytes_before).sum();
    let after: usize = q.reports.iter().map(|r| r.bytes_after).sum();
    let weights_n: usize = q.layers.iter().map(|(_, l)| l.q.len()).sum();
    Ok(QuantizeReport {
        out: cfg.out.display().to_string(),
        layers: q.reports,
        bytes_before: before,
        bytes_after: after,
        bits_per_weight: after as f64 * 8.0 / weights_n.max(1) as f64,
        layer_seconds,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// The calibration set of GPTQ and AWQ, and of MSE when `calib` is given (`None` otherwise).
fn calibration(
    cfg: &QuantizeRunConfig,
    ck: &Checkpoint,
    progress: &Progress,
) -> Result<Option<Calibration>> {
    if !cfg.method.reads_calibration() || (cfg.calib.is_none() && !cfg.method.needs_calibration()) {
        return Ok(None);
    }
    let Some(path) = &cfg.calib else {
        return Err(CoreError::setting(
            "method",
            cfg.method.name(),
            "needs calibration data (`calib`: a .txt, .json or .jsonl file)",
        ));
    };
    let docs = TokenData::for_model(&cfg.model, ck.config.vocab_size)?.documents(path)?;
    // No calibration sequence longer than the model's context.
    let seq_len = cfg.seq_len.min(ck.config.max_position_embeddings);
    let c =
        Calibration::from_documents(&docs, cfg.calib_samples, seq_len).map_err(|e| match e {
            CoreError::Setting { .. } => e,
            e => CoreError::setting("calib", path.display(), e.to_string()),
        })?;
    progress.note(format_args!(
        "calibration: {} sequences, {} tokens from {}",
        c.samples.len(),
        c.tokens(),
        path.display()
    ));
    Ok(Some(c))
}

/// The warning (or, with `strict_compat`, the error) for groups that do not divide every
/// layer's input width.
fn ragged_warning(cfg: &QuantizeRunConfig, q: &QuantizedModel) -> Result<Option<String>> {
    if !q.config.ragged_groups {
        return Ok(None);
    }
    let inn: Vec<usize> = q.layers.iter().map(|(_, l)| l.in_features).collect();
    let g = q.config.weights.group_size.unwrap_or(0);
    let divisors: Vec<usize> = [32usize, 64, 128, 256]
        .into_iter()
        .filter(|d| inn.iter().all(|i| i % d == 0))
        .collect();
    let hint = match divisors.as_slice() {
        [] => "none of 32, 64, 128, 256 divides them all; try `per_channel`".to_string(),
        d => format!("group sizes that divide: {d:?}"),
    };
    let msg = format!(
        "does not divide every layer's input width; such a dir loads only in compress ({hint})"
    );
    match cfg.strict_compat {
        true => Err(CoreError::setting("group_size", g, msg)),
        false => Ok(Some(format!("`group_size` {g} {msg}"))),
    }
}

/// Fine-tunes the checkpoint's model with fake quantization `weights` (scales as
/// `scale_dtype`, as the export stores them); returns the float model and the step metrics.
fn train(
    cfg: &QuantizeRunConfig,
    ck: &Checkpoint,
    weights: WeightQuant,
    scale_dtype: Dtype,
    device: &burn::tensor::Device,
    progress: &Progress,
) -> Result<(LlamaModel, Vec<StepMetrics>)> {
    let data = cfg.data.as_ref().expect("validate requires data for qat");
    let docs = TokenData::for_model(&cfg.model, ck.config.vocab_size)?.documents(data)?;
    let seq_len = cfg.seq_len.min(ck.config.max_position_embeddings);
    let wins = windows(&docs, seq_len);
    let model = build_model(&ck.config, device, &mut |spec| ck.read(spec))?;
    let (steps, lr) = (cfg.qat_steps(), cfg.qat_lr());
    let qat = QatConfig {
        quant: FakeQuant::new(weights).with_scale_dtype(scale_dtype),
        ignore: cfg.ignore.clone(),
        train: TrainConfig {
            steps,
            batch_size: cfg.batch_size.unwrap_or(defaults::QAT_BATCH_SIZE),
            seq_len,
            lr,
            min_lr: lr / 10.0,
            warmup_steps: steps / 10,
            // Only the fake-quantized weights train; decaying them only moves them off the grid.
            weight_decay: 0.0,
            seed: cfg.seed,
            ..TrainConfig::default()
        },
        distill: cfg.distill.unwrap_or(defaults::QAT_DISTILL),
    };
    progress.note(format_args!(
        "qat: {} windows of {seq_len} tokens from {}, {steps} steps at lr {lr:.1e}",
        wins.len(),
        data.display()
    ));
    let run = RunDir {
        dir: scratch_dir(&cfg.out, "qat")?,
    };
    let started = Instant::now();
    let outcome = train_qat(model, &ck.hf_config, &wins, &qat, device, &run);
    // The run dir only holds the trainer's checkpoint; the metrics go into `out`.
    let _ = std::fs::remove_dir_all(&run.dir);
    let outcome = outcome?;
    let m = &outcome.metrics;
    progress.note(format_args!(
        "qat: loss {:.4} → {:.4} in {:.1}s",
        m.first().map_or(f64::NAN, |s| s.loss),
        m.last().map_or(f64::NAN, |s| s.loss),
        started.elapsed().as_secs_f64()
    ));
    Ok((outcome.model, outcome.metrics))
}
