//! `compress quantize --method qat --data F [--steps N --lr LR --batch-size B --seq-len L
//! --distill W]`: fine-tune the float model with its target linears fake-quantized exactly as
//! the export will quantize them, then hand it to the RTN export.

use std::time::Instant;

use anyhow::{Context, Result};
use compress_core::burn::tensor::Device;
use compress_core::data::load_documents;
use compress_core::model::hf::Checkpoint;
use compress_core::model::weights::build_model;
use compress_core::stages::quantize::qat::{train_qat, FakeQuant, QatConfig};
use compress_core::stages::quantize::QuantizedModel;
use compress_core::tokenizer::Tokenizer;
use compress_core::train::{windows, RunDir, StepMetrics, TrainConfig};
use compress_core::LlamaModel;
use compress_format::pack_quantized::WeightQuant;
use compress_format::safetensors::Dtype;

use crate::cli::{Common, QuantMethod, QuantizeArgs};

const DEFAULT_STEPS: usize = 100;
const DEFAULT_LR: f64 = 1e-4;
const DEFAULT_BATCH: usize = 4;

/// Checks the QAT flags (before anything is loaded): they need `--method qat`, which needs
/// an existing `--data` file, `--steps` > 0, a positive `--lr` and `--distill` in 0..=1.
pub(super) fn check_args(a: &QuantizeArgs) -> Result<()> {
    if a.method != QuantMethod::Qat {
        let flags = [
            (a.data.is_some(), "--data"),
            (a.steps.is_some(), "--steps"),
            (a.lr.is_some(), "--lr"),
            (a.batch_size.is_some(), "--batch-size"),
            (a.distill.is_some(), "--distill"),
        ];
        if let Some((_, flag)) = flags.iter().find(|(set, _)| *set) {
            anyhow::bail!("{flag}: only applies to --method qat");
        }
        return Ok(());
    }
    if a.calib.is_some() {
        anyhow::bail!("--calib: --method qat trains on --data instead");
    }
    let Some(data) = &a.data else {
        anyhow::bail!("--method qat: needs training data (--data FILE; .txt, .json or .jsonl)");
    };
    if a.steps == Some(0) {
        anyhow::bail!("--steps 0: must be > 0");
    }
    if a.batch_size == Some(0) {
        anyhow::bail!("--batch-size 0: must be > 0");
    }
    if let Some(lr) = a.lr {
        if !(lr.is_finite() && lr > 0.0) {
            anyhow::bail!("--lr {lr}: must be a finite number > 0");
        }
    }
    if let Some(d) = a.distill {
        if !(0.0..=1.0).contains(&d) {
            anyhow::bail!("--distill {d}: must be between 0 and 1");
        }
    }
    if !data.is_file() {
        anyhow::bail!("--data {}: file not found", data.display());
    }
    Ok(())
}

/// A QAT run's result.
pub(super) struct Trained {
    /// The fine-tuned float model (fake quantization off), ready for the RTN export.
    pub model: LlamaModel,
    /// One line per step, as `compress train` writes them.
    pub metrics: Vec<StepMetrics>,
}

/// Fine-tunes the model of `ck` with fake quantization `weights` (scales as `scale_dtype`,
/// as the export stores them), leaving the `ignore`d linears and `lm_head` in float.
pub(super) fn train(
    a: &QuantizeArgs,
    common: &Common,
    ck: &Checkpoint,
    weights: WeightQuant,
    scale_dtype: Dtype,
    device: &Device,
) -> Result<Trained> {
    let data = a
        .data
        .as_ref()
        .context("--method qat: needs training data (--data FILE)")?;
    let tokenizer = Tokenizer::from_model_dir(&a.model)?;
    let docs = load_documents(data, tokenizer.as_ref(), ck.config.vocab_size)?;
    let seq_len = a.seq_len.min(ck.config.max_position_embeddings);
    let wins = windows(&docs, seq_len);
    let model = build_model(&ck.config, device, &mut |spec| ck.read(spec))
        .with_context(|| format!("loading model {}", a.model.display()))?;
    let steps = a.steps.unwrap_or(DEFAULT_STEPS);
    let lr = a.lr.unwrap_or(DEFAULT_LR);
    let cfg = QatConfig {
        quant: FakeQuant::new(weights).with_scale_dtype(scale_dtype),
        ignore: a.ignore.clone(),
        train: TrainConfig {
            steps,
            batch_size: a.batch_size.unwrap_or(DEFAULT_BATCH),
            seq_len,
            lr,
            min_lr: lr / 10.0,
            warmup_steps: steps / 10,
            // Only the fake-quantized weights train; decaying them only moves them off the grid.
            weight_decay: 0.0,
            seed: common.seed,
            ..TrainConfig::default()
        },
        distill: a.distill.unwrap_or(1.0),
    };
    if !common.quiet && !a.json {
        eprintln!(
            "qat: {} windows of {seq_len} tokens from {}, {steps} steps at lr {lr:.1e}",
            wins.len(),
            data.display()
        );
    }
    let run = RunDir {
        dir: super::super::scratch_dir(&a.out, "qat")?,
    };
    let started = Instant::now();
    let outcome = train_qat(model, &ck.hf_config, &wins, &cfg, device, &run);
    // The run dir only holds the trainer's checkpoint; the metrics go into --out.
    let _ = std::fs::remove_dir_all(&run.dir);
    let outcome = outcome?;
    let seconds = started.elapsed().as_secs_f64();
    if !common.quiet && !a.json {
        let m = &outcome.metrics;
        eprintln!(
            "qat: loss {:.4} → {:.4} in {seconds:.1}s",
            m.first().map_or(f64::NAN, |s| s.loss),
            m.last().map_or(f64::NAN, |s| s.loss),
        );
    }
    Ok(Trained {
        model: outcome.model,
        metrics: outcome.metrics,
    })
}

/// Marks the export's layer reports as QAT (their error is against the fine-tuned weights).
pub(super) fn label(mut q: QuantizedModel) -> QuantizedModel {
    for r in &mut q.reports {
        r.method = "qat".into();
    }
    q
}
