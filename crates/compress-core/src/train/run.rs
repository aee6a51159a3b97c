//! [`run`]: one whole training job (`compress train`) — a model from a preset, a config.json or
//! an existing dir, trained on a data file with checkpoints and resume, saved when finished.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{train, windows, NoHook, RunDir, TrainConfig};
use crate::data::load_documents;
use crate::error::{CoreError, Result};
use crate::model::hf::{load_model, write_model_files, SaveOptions};
use crate::model::weights::init_random;
use crate::model::LlamaConfig;
use crate::outdir::{check_output_dir, mark};
use crate::progress::Progress;
use crate::settings;
use crate::tokenizer::Tokenizer;

/// Default values of [`TrainRunConfig`] (the CLI shows them in `--help`).
pub mod defaults {
    /// Model preset.
    pub const CONFIG: &str = "tiny";
    /// Sequences per micro-batch.
    pub const BATCH_SIZE: usize = 8;
    /// Tokens per sequence.
    pub const SEQ_LEN: usize = 128;
    /// Peak learning rate.
    pub const LR: f64 = 1e-3;
    /// Final learning rate.
    pub const MIN_LR: f64 = 1e-4;
    /// Warmup steps.
    pub const WARMUP: usize = 20;
    /// AdamW weight decay.
    pub const WEIGHT_DECAY: f32 = 0.1;
    /// Global gradient-norm clip.
    pub const GRAD_CLIP: f64 = 1.0;
    /// Micro-batches per step.
    pub const GRAD_ACCUM: usize = 1;
    /// Checkpoint interval in steps.
    pub const CHECKPOINT_EVERY: usize = 100;
    /// dtype of the saved model.
    pub const DTYPE: &str = "f32";
}

/// Every setting of a training run (field names = `compress train` flags with underscores).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainRunConfig {
    /// Model preset (tiny) or a config.json path; ignored with `init`.
    pub config: String,
    /// Start from this model directory instead of random weights.
    pub init: Option<PathBuf>,
    /// Training data.
    pub data: PathBuf,
    /// tokenizer.json for text data (copied into the output).
    pub tokenizer: Option<PathBuf>,
    /// Optimizer steps.
    pub steps: usize,
    /// Output directory (model, metrics.jsonl, checkpoint/).
    pub out: PathBuf,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate (cosine decay target).
    pub min_lr: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// Micro-batches per step.
    pub grad_accum: usize,
    /// Checkpoint every N steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Continue from `out/checkpoint`.
    pub resume: bool,
    /// Stop after this many total steps, keeping the checkpoint.
    pub stop_after: Option<usize>,
    /// dtype of the saved model.
    pub dtype: String,
    /// Replace a non-empty `out`.
    pub overwrite: bool,
    /// Device: cpu, tch:cpu or cuda:N.
    pub device: String,
    /// Random seed (initialisation and data order).
    pub seed: u64,
}

impl Default for TrainRunConfig {
    fn default() -> Self {
        Self {
            config: defaults::CONFIG.into(),
            init: None,
            data: PathBuf::new(),
            tokenizer: None,
            steps: 0,
            out: PathBuf::new(),
            batch_size: defaults::BATCH_SIZE,
            seq_len: defaults::SEQ_LEN,
            lr: defaults::LR,
            min_lr: defaults::MIN_LR,
            warmup: defaults::WARMUP,
            weight_decay: defaults::WEIGHT_DECAY,
            grad_clip: defaults::GRAD_CLIP,
            grad_accum: defaults::GRAD_ACCUM,
            checkpoint_every: defaults::CHECKPOINT_EVERY,
            resume: false,
            stop_after: None,
            dtype: defaults::DTYPE.into(),
            overwrite: false,
            device: "cpu".into(),
            seed: 0,
        }
    }
}

/// What a training run did (`compress train --json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct TrainRunReport {
    /// The output directory.
    pub out: String,
    /// Parameters of the model.
    pub parameters: usize,
    /// Step the run started from (after a resume).
    pub start_step: usize,
    /// Steps done in all.
    pub steps: usize,
    /// Loss of the first step of this run.
    pub first_loss: Option<f64>,
    /// Loss of the last step of this run.
    pub last_loss: Option<f64>,
    /// Mean training tokens/s.
    pub mean_tokens_per_s: f64,
    /// Whether every step ran and the model was saved (else: the checkpoint holds it).
    #[serde(skip)]
    pub finished: bool,
    /// The checkpoint an unfinished run continues from.
    #[serde(skip)]
    pub checkpoint: String,
}

/// Trains as `cfg` says; saves the model into `cfg.out` when every step ran.
pub fn run(cfg: &TrainRunConfig, progress: &Progress) -> Result<TrainRunReport> {
    prepare_out(cfg)?;
    let device = crate::parse_device(&cfg.device)?;
    let dtype = settings::dtype(
        "dtype",
        Some(&cfg.dtype),
        compress_format::safetensors::Dtype::F32,
    )?;
    let tokenizer = match (&cfg.tokenizer, &cfg.init) {
        (Some(p), _) => Some(Tokenizer::from_file(p)?),
        (None, Some(dir)) => Tokenizer::from_model_dir(dir)?,
        (None, None) => None,
    };
    let (model, hf_config) = match &cfg.init {
        Some(dir) => {
            let l = load_model(dir, &device)?;
            (l.model, l.hf_config)
        }
        None => {
            let mcfg = LlamaConfig::from_name_or_file(&cfg.config)?;
            if let Some(t) = tokenizer
                .as_ref()
                .filter(|t| t.vocab_size() > mcfg.vocab_size)
            {
                let msg = format!(
                    "{}: tokenizer has {} tokens but the model's vocab_size is {}",
                    t.path().display(),
                    t.vocab_size(),
                    mcfg.vocab_size
                );
                return Err(CoreError::setting("tokenizer", t.path().display(), msg));
            }
            (init_random(&mcfg, &device, cfg.seed)?, mcfg.to_hf()?)
        }
    };
    let docs = load_documents(&cfg.data, tokenizer.as_ref(), model.config.vocab_size)?;
    let wins = windows(&docs, cfg.seq_len);
    let tc = TrainConfig {
        steps: cfg.steps,
        batch_size: cfg.batch_size,
        seq_len: cfg.seq_len,
        lr: cfg.lr,
        min_lr: cfg.min_lr,
        warmup_steps: cfg.warmup,
        weight_decay: cfg.weight_decay,
        grad_clip: (cfg.grad_clip > 0.0).then_some(cfg.grad_clip),
        grad_accum: cfg.grad_accum,
        seed: cfg.seed,
        checkpoint_every: cfg.checkpoint_every,
        ..TrainConfig::default()
    };
    let parameters = model.config.num_parameters();
    progress.note(format_args!(
        "training {:.2}M parameters on {} windows of {} tokens for {} steps",
        parameters as f64 / 1e6,
        wins.len(),
        cfg.seq_len,
        cfg.steps
    ));
    let run = RunDir {
        dir: cfg.out.clone(),
    };
    let outcome = train(
        model,
        &hf_config,
        &wins,
        &tc,
        &device,
        &run,
        cfg.resume,
        cfg.stop_after,
        &mut NoHook,
    )?;
    let finished = outcome.start_step + outcome.metrics.len() >= tc.steps;
    if finished {
        let opts = SaveOptions {
            dtype,
            max_shard_bytes: None,
            tokenizer_from: None,
        };
        write_model_files(&outcome.model, &hf_config, &cfg.out, &opts)?;
        if let Some(t) = &tokenizer {
            let dst = cfg.out.join("tokenizer.json");
            if t.path() != dst {
                let bytes = std::fs::read(t.path()).map_err(|e| CoreError::io(t.path(), e))?;
                compress_format::atomic::write_atomic(&dst, &bytes)?;
            }
        }
    }
    let m = &outcome.metrics;
    Ok(TrainRunReport {
        out: cfg.out.display().to_string(),
        parameters,
        start_step: outcome.start_step,
        steps: outcome.start_step + m.len(),
        first_loss: m.first().map(|s| s.loss),
        last_loss: m.last().map(|s| s.loss),
        mean_tokens_per_s: m.iter().map(|s| s.tokens_per_s).sum::<f64>() / m.len().max(1) as f64,
        finished,
        checkpoint: run.checkpoint().display().to_string(),
    })
}

/// Checks `out` against the inputs, clears it for a fresh (not resumed) run and marks it as
/// an output of this tool (its checkpoint lands there before the model does).
fn prepare_out(cfg: &TrainRunConfig) -> Result<()> {
    let mut inputs = vec![cfg.data.as_path()];
    inputs.extend(cfg.init.iter().chain(&cfg.tokenizer).map(|p| p.as_path()));
    // Resuming continues the run in `out` (which this tool marked when the run began).
    check_output_dir(&cfg.out, &inputs, cfg.overwrite || cfg.resume)?;
    if !cfg.resume && cfg.overwrite && cfg.out.is_dir() {
        // A fresh run: no old metrics or checkpoint may leak into it.
        std::fs::remove_dir_all(&cfg.out).map_err(|e| CoreError::io(&cfg.out, e))?;
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| CoreError::io(&cfg.out, e))?;
    mark(&cfg.out)
}
