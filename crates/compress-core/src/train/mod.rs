//! The trainer used by `compress train`, pruning retrain, distillation and MoE router
//! training, and by users from Rust: AdamW, warmup + cosine schedule, global gradient
//! clipping, gradient accumulation, a seedable data order, checkpoint + resume (model,
//! optimizer state, step), an indicatif progress bar and metrics JSONL.
//!
//! Lifecycle of one step: [`TrainHook::update_masks`] when the hook says masks are due (new
//! [`ParamMasks`] are applied to the weights and the optimizer state); for each micro-batch,
//! forward (with hidden states when [`TrainHook::capture_hidden`]) → [`TrainHook::loss`] (LM
//! loss plus whatever a stage adds) → backward → [`TrainHook::after_backward`] (a hook's own
//! parameters take their gradients) → accumulate; then masked gradients zeroed, clip, optimizer
//! step, masked weights set back to zero, [`TrainHook::step_own`] (the hook's own optimizer) and
//! [`TrainHook::after_step`]. [`TrainHook::take_parts`] adds named loss parts to the step's
//! metrics; [`TrainHook::save_state`]/[`TrainHook::load_state`] keep a hook's state with the
//! checkpoint.
//!
//! The data order is a function of (seed, step) alone: sample `g` of the run is
//! `perm(seed, epoch)[g mod N]`, so a resumed run sees exactly the batches an uninterrupted
//! run would, with no RNG state to carry.

pub mod checkpoint;
pub mod clip;
pub mod combined;
pub mod kd;
pub mod masks;
pub mod run;
pub mod schedule;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Gradients, Int, Tensor};
use compress_format::hf_config::HfConfig;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::model::{batch_tensor, LlamaModel, ModelOutput};
pub use combined::Combined;
pub use kd::{DistillHook, DistillLoss};
pub use masks::ParamMasks;
pub use schedule::WarmupCosine;

/// Training hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Number of optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per sequence (inputs; targets are shifted by one).
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// AdamW β1.
    pub beta1: f32,
    /// AdamW β2.
    pub beta2: f32,
    /// AdamW ε.
    pub eps: f32,
    /// Global gradient-norm clip (`None` = no clipping).
    pub grad_clip: Option<f64>,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Seed of the data order.
    pub seed: u64,
    /// Save a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 8,
            seq_len: 128,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 10,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: Some(1.0),
            grad_accum: 1,
            seed: 0,
            checkpoint_every: 0,
        }
    }
}

impl TrainConfig {
    /// Checks the settings are usable.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("seq_len", self.seq_len),
            ("grad_accum", self.grad_accum),
        ];
        for (field, n) in counts {
            crate::settings::nonzero(field, n)?;
        }
        crate::settings::positive("lr", self.lr)?;
        if !(0.0..=self.lr).contains(&self.min_lr) {
            let msg = format!("must be between 0 and `lr` {}", self.lr);
            return Err(CoreError::setting("min_lr", self.min_lr, msg));
        }
        Ok(())
    }

    /// The learning-rate schedule of this config.
    pub fn schedule(&self) -> WarmupCosine {
        WarmupCosine {
            lr: self.lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
        }
    }
}

/// One micro-batch: inputs and next-token targets, `[batch, seq]` each.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Input ids.
    pub inputs: Vec<Vec<u32>>,
    /// Target ids (inputs shifted left by one).
    pub targets: Vec<Vec<u32>>,
    /// Index of each row's window in the training windows (e.g. to look up cached teacher logits).
    pub windows: Vec<usize>,
}

/// Extension points of a training step, for stages and users.
pub trait TrainHook {
    /// Whether [`TrainHook::loss`] needs the student's hidden states in its [`ModelOutput`].
    fn capture_hidden(&self) -> bool {
        false
    }

    /// The loss to minimize from the forward's output; the default is the LM cross-entropy
    /// `lm_loss`.
    fn loss(
        &mut self,
        _batch: &Batch,
        _out: &ModelOutput,
        lm_loss: Tensor<1>,
    ) -> Result<Tensor<1>> {
        Ok(lm_loss)
    }

    /// Sees each micro-batch's gradients before the model's are taken out (a hook with trainable
    /// parameters of its own takes theirs here).
    fn after_backward(&mut self, _grads: &mut Gradients) {}

    /// Steps the hook's own parameters at learning rate `lr`, after the model's step.
    fn step_own(&mut self, _lr: f64) {}

    /// Named loss parts of the step just run (means over its micro-batches), for the metrics.
    fn take_parts(&mut self) -> Vec<(String, f64)> {
        Vec::new()
    }

    /// Saves the hook's own state into the checkpoint directory `dir` being written.
    fn save_state(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// Restores what [`TrainHook::save_state`] wrote in `dir`, on resume.
    fn load_state(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// Called after each optimizer step with the updated model.
    fn after_step(&mut self, _step: usize, model: LlamaModel) -> LlamaModel {
        model
    }

    /// Whether [`TrainHook::update_masks`] should run before 0-based step `step`.
    fn masks_due(&self, _step: usize) -> bool {
        false
    }

    /// New keep-masks to hold from 0-based step `step` on, computed from the current weights
    /// (`model`); they replace the previous ones. Pruned weights are zeroed with their
    /// optimizer state, get no gradient and stay exactly zero after every step.
    fn update_masks(&mut self, _step: usize, _model: &LlamaModel) -> Result<Option<ParamMasks>> {
        Ok(None)
    }
}

/// A hook that changes nothing: plain language-model training.
pub struct NoHook;
impl TrainHook for NoHook {}

/// One line of the metrics JSONL.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    /// 1-based optimizer step.
    pub step: usize,
    /// Mean loss over the step's micro-batches.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Training tokens per second of this step.
    pub tokens_per_s: f64,
    /// Named parts of the loss (e.g. distillation's `soft`, `hard`, `feature`).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, f64>,
}

/// Where a run keeps its checkpoint and metrics.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// Run directory (the final model goes here too).
    pub dir: PathBuf,
}

impl RunDir {
    /// `dir/checkpoint`.
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }
    /// `dir/metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
}

/// Mean next-token cross-entropy of `logits` `[b, s, v]` against `targets` `[b, s]`.
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    let logp = log_softmax(logits, 2);
    let picked = logp.gather(2, targets.unsqueeze_dim(2));
    picked.mean().neg()
}

/// Builds training windows of `seq_len + 1` tokens from documents.
pub fn windows(docs: &[Vec<u32>], seq_len: usize) -> Vec<Vec<u32>> {
    crate::data::chunk(docs, seq_len + 1, seq_len + 1)
}

/// The deterministic sample order: which window feeds global sample `g`.
struct DataOrder {
    n: usize,
    seed: u64,
    epoch: usize,
    perm: Vec<usize>,
}

impl DataOrder {
    fn new(n: usize, seed: u64) -> Self {
        let mut o = Self {
            n,
            seed,
            epoch: usize::MAX,
            perm: Vec::new(),
        };
        o.set_epoch(0);
        o
    }

    fn set_epoch(&mut self, epoch: usize) {
        if self.epoch != epoch {
            self.perm = (0..self.n).collect();
            let mut rng =
                StdRng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9));
            self.perm.shuffle(&mut rng);
            self.epoch = epoch;
        }
    }

    fn sample(&mut self, g: usize) -> usize {
        self.set_epoch(g / self.n);
        self.perm[g % self.n]
    }
}

/// Result of a training run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The trained model (on the plain, non-autodiff device).
    pub model: LlamaModel,
    /// Metrics of each step run in this call.
    pub metrics: Vec<StepMetrics>,
    /// Step the run started from (0, or the checkpoint's step when resumed).
    pub start_step: usize,
}

/// Trains `model` on `windows` (each `seq_len + 1` tokens) for `cfg.steps` steps.
///
/// With `resume`, model, optimizer state and step come from `run.checkpoint()`. `stop_after`
/// ends the run early after that many total steps (with a checkpoint), as an interruption would.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: LlamaModel,
    hf_config: &HfConfig,
    windows: &[Vec<u32>],
    cfg: &TrainConfig,
    device: &Device,
    run: &RunDir,
    resume: bool,
    stop_after: Option<usize>,
    hook: &mut dyn TrainHook,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    if windows.is_empty() {
        return Err(CoreError::Invalid(format!(
            "no training window of {} tokens: the data is shorter than `seq_len` + 1",
            cfg.seq_len + 1
        )));
    }
    if let Some(w) = windows.iter().find(|w| w.len() != cfg.seq_len + 1) {
        return Err(CoreError::Invalid(format!(
            "training window of {} tokens, expected seq_len + 1 = {}",
            w.len(),
            cfg.seq_len + 1
        )));
    }
    std::fs::create_dir_all(&run.dir).map_err(|e| CoreError::io(&run.dir, e))?;
    let ad = device.clone().autodiff();
    let mut optim = AdamWConfig::new()
        .with_beta_1(cfg.beta1)
        .with_beta_2(cfg.beta2)
        .with_epsilon(cfg.eps)
        .with_weight_decay(cfg.weight_decay)
        .init();
    let (mut model, start_step) = if resume {
        let ck = checkpoint::load(&run.checkpoint(), cfg, device)?;
        optim = optim
            .load(ck.optimizer_path())
            .map_err(|e| CoreError::Invalid(format!("{}: {e:?}", ck.optimizer_path().display())))?;
        hook.load_state(&run.checkpoint())?;
        (ck.model, ck.step)
    } else {
        (model, 0)
    };
    model = model.fork(&ad).train();
    let end = stop_after.unwrap_or(cfg.steps).min(cfg.steps);
    let schedule = cfg.schedule();
    let mut order = DataOrder::new(windows.len(), cfg.seed);
    let mut metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.metrics())
        .map_err(|e| CoreError::io(run.metrics(), e))?;
    let bar = progress_bar(cfg.steps as u64, start_step as u64);
    let mut metrics = Vec::new();
    let mut masks: Option<ParamMasks> = None;
    for step in start_step..end {
        let t0 = Instant::now();
        if hook.masks_due(step) {
            if let Some(new) = hook.update_masks(step, &model.valid())? {
                model = new.apply(model);
                optim = new.mask_optimizer_state(optim)?;
                masks = Some(new);
            }
        }
        let mut accum = GradientsAccumulator::<LlamaModel>::new();
        let mut loss_sum = 0.0;
        for micro in 0..cfg.grad_accum {
            let g0 = (step * cfg.grad_accum + micro) * cfg.batch_size;
            let picked: Vec<usize> = (0..cfg.batch_size).map(|k| order.sample(g0 + k)).collect();
            let batch = Batch {
                inputs: picked
                    .iter()
                    .map(|&i| windows[i][..cfg.seq_len].to_vec())
                    .collect(),
                targets: picked.iter().map(|&i| windows[i][1..].to_vec()).collect(),
                windows: picked,
            };
            let out = model.forward_full(
                batch_tensor(&batch.inputs, &ad),
                None,
                hook.capture_hidden(),
            );
            let lm = cross_entropy(out.logits.clone(), batch_tensor(&batch.targets, &ad));
            let loss = hook.loss(&batch, &out, lm)?;
            drop(out);
            loss_sum += crate::tensor_util::scalar_f64(loss.clone());
            let loss = loss.div_scalar(cfg.grad_accum as f64);
            let mut backward = loss.backward();
            hook.after_backward(&mut backward);
            let grads = GradientsParams::from_module(&mut backward, &model);
            accum.accumulate(&model, grads);
        }
        let mut grads = accum.grads();
        if let Some(m) = &masks {
            m.mask_grads(&mut grads);
        }
        let grad_norm = match cfg.grad_clip {
            Some(max) => clip::clip_grad_norm(&model, &mut grads, max),
            None => clip::grad_norm(&model, &grads),
        };
        let lr = schedule.lr_at(step);
        model = optim.step(lr, model, grads);
        if let Some(m) = &masks {
            model = m.apply(model);
        }
        hook.step_own(lr);
        model = hook.after_step(step + 1, model);
        let loss = loss_sum / cfg.grad_accum as f64;
        if !loss.is_finite() {
            return Err(CoreError::Invalid(format!(
                "step {}: loss is {loss}; lower `lr` or check the data",
                step + 1
            )));
        }
        let tokens = cfg.batch_size * cfg.grad_accum * cfg.seq_len;
        let m = StepMetrics {
            step: step + 1,
            loss,
            lr,
            grad_norm,
            tokens_per_s: tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9),
            parts: hook.take_parts().into_iter().collect(),
        };
        let line = serde_json::to_string(&m).expect("metrics serialize");
        writeln!(metrics_file, "{line}").map_err(|e| CoreError::io(run.metrics(), e))?;
        bar.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
        bar.inc(1);
        metrics.push(m);
        let done = step + 1;
        let periodic = cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0;
        if periodic || done == end {
            let plain = model.valid();
            let extra = |dir: &Path| hook.save_state(dir);
            checkpoint::save(
                &run.checkpoint(),
                &plain,
                hf_config,
                &optim,
                cfg,
                done,
                &extra,
            )?;
        }
    }
    bar.finish_and_clear();
    Ok(TrainOutcome {
        model: model.valid(),
        metrics,
        start_step,
    })
}

fn progress_bar(total: u64, pos: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} train [{bar:30}] {pos}/{len} {msg} ({eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(pos);
    bar
}

/// Writes `metrics` as `dir/metrics.jsonl` (one JSON object per step), atomically.
pub fn write_metrics(dir: &Path, metrics: &[StepMetrics]) -> Result<()> {
    let mut body = String::new();
    for m in metrics {
        body.push_str(&serde_json::to_string(m).map_err(|e| CoreError::Invalid(e.to_string()))?);
        body.push('\n');
    }
    let path = dir.join("metrics.jsonl");
    compress_format::atomic::write_atomic(&path, body.as_bytes()).map_err(CoreError::from)
}

/// Reads a metrics JSONL file.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let body = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| CoreError::Data {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })
        })
        .collect()
}
