//! Magnitude pruning of a Llama-family model, with prune → retrain loops.
//!
//! Lifecycle ([`prune`]): score the decoder linears (`|w|`, or Wanda's `|w| · ‖x‖` from
//! calibration activations, [`wanda`]), pick what to drop ([`masks`] for unstructured and
//! N:M keep-masks, [`structured`] for whole heads or FFN neurons), then follow the
//! [`Schedule`] ([`schedule`]): one-shot, iterative rounds or AGP. Retraining runs the
//! foundation trainer with a [`schedule::MaskHook`] that holds the masks: pruned weights get
//! no gradient, their AdamW moments are zeroed and they are set back to exactly zero after each
//! step. Each round is evaluated (perplexity after pruning and after retraining) into a
//! [`PruneReport`]. [`save_pruned`] writes the model: unstructured/N:M as dense tensors with
//! zeros plus a compressed-tensors `sparsity_config`; structured with shrunk tensors and a
//! rewritten config.
//!
//! Retraining uses the language-model loss; distillation from the unpruned model is not wired
//! in yet.

pub mod config;
pub mod masks;
pub mod run;
pub mod schedule;
pub mod structured;
pub mod wanda;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use compress_format::hf_config::HfConfig;
use compress_format::pack_quantized::SparsityConfig;
use compress_format::safetensors::Dtype;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::eval::evaluate;
use crate::model::hf::{write_model_files, SaveOptions};
use crate::model::weights::{build_from_map, tensor_map, tensor_specs};
use crate::model::{LlamaConfig, LlamaModel};
use crate::outdir::write_dir_atomically;
use crate::train::{
    train, Combined, DistillHook, DistillLoss, NoHook, RunDir, StepMetrics, TrainConfig,
};
pub use config::PruneRunConfig;
pub use masks::{LayerSparsity, Masks};
pub use run::{run, PruneRunReport};
pub use schedule::{MaskHook, MaskUpdate, Pruner};
pub use structured::LayerUnits;
pub use wanda::InputNorms;

/// What is pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Pattern {
    /// Individual weights.
    Unstructured,
    /// `n` of every `m` consecutive inputs of each row.
    NM {
        /// Pruned per group.
        n: usize,
        /// Group length.
        m: usize,
    },
    /// Whole attention heads (a key/value head with its query heads), tensors shrunk.
    Heads,
    /// Whole FFN neurons, tensors shrunk.
    Neurons,
}

impl Pattern {
    /// Parses `unstructured`, `N:M`, `heads` or `neurons`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "unstructured" => Ok(Self::Unstructured),
            "heads" => Ok(Self::Heads),
            "neurons" => Ok(Self::Neurons),
            _ => {
                let bad = || {
                    CoreError::setting(
                        "pattern",
                        s,
                        "expected unstructured, N:M (e.g. 2:4), heads or neurons",
                    )
                };
                let (n, m) = s.split_once(':').ok_or_else(bad)?;
                let (n, m): (usize, usize) =
                    (n.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
                if n == 0 || n >= m {
                    return Err(CoreError::setting(
                        "pattern",
                        s,
                        "N:M needs 0 < N < M (N of every M inputs are pruned)",
                    ));
                }
                Ok(Self::NM { n, m })
            }
        }
    }

    /// The name used on the CLI and in `sparsity_structure`.
    pub fn name(&self) -> String {
        match self {
            Self::Unstructured => "unstructured".into(),
            Self::NM { n, m } => format!("{n}:{m}"),
            Self::Heads => "heads".into(),
            Self::Neurons => "neurons".into(),
        }
    }

    /// Whether the pattern shrinks tensors (no masks).
    pub fn is_structured(&self) -> bool {
        matches!(self, Self::Heads | Self::Neurons)
    }
}

/// Where sparsity is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "lowercase"))]
pub enum Scope {
    /// Each matrix (heads/neurons: each layer) gets the target sparsity.
    Layer,
    /// The target holds over the whole model (heads/neurons: layers then differ in size).
    Global,
}

/// How weights are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "lowercase"))]
pub enum Criterion {
    /// `|w|`.
    Magnitude,
    /// `|w| · ‖x‖` over calibration activations (Wanda).
    Wanda,
}

/// When pruning happens relative to retraining.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "lowercase"))]
pub enum Schedule {
    /// Once, then retrain.
    OneShot,
    /// `rounds` rounds of rising sparsity, retraining after each.
    Iterative,
    /// Masks regrown on the cubic AGP schedule during one training run (`rounds` updates).
    Agp,
}

/// A pruning run's settings.
#[derive(Clone, Debug)]
pub struct PruneConfig {
    /// Target sparsity in `[0, 1)` (fraction of weights, heads or neurons); N:M implies `n / m`.
    pub sparsity: f64,
    /// What is pruned.
    pub pattern: Pattern,
    /// Per layer or global (not for N:M).
    pub scope: Scope,
    /// How weights are ranked.
    pub criterion: Criterion,
    /// One-shot, iterative or AGP.
    pub schedule: Schedule,
    /// Iterative rounds, or AGP mask updates.
    pub rounds: usize,
    /// Linears left dense (HF module names or prefixes; `lm_head` never is pruned).
    pub ignore: Vec<String>,
    /// Retraining (steps per round for iterative, the whole run for AGP); `None` = no retraining.
    pub retrain: Option<TrainConfig>,
    /// Retrain against the dense model with this distillation loss instead of the plain LM loss.
    pub distill: Option<DistillLoss>,
}

impl PruneConfig {
    /// Checks the settings are consistent, with errors that name the field (the recipe key).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: String, m: String| Err(CoreError::setting(field, value, m));
        if !(0.0..1.0).contains(&self.sparsity) || !self.sparsity.is_finite() {
            let s = self.sparsity.to_string();
            return bad("sparsity", s, "must be in [0, 1)".into());
        }
        if self.rounds == 0 {
            return bad("rounds", "0".into(), "must be > 0".into());
        }
        if let Pattern::NM { n, m } = self.pattern {
            let implied = n as f64 / m as f64;
            if self.sparsity != 0.0 && (self.sparsity - implied).abs() > 1e-9 {
                return bad(
                    "sparsity",
                    self.sparsity.to_string(),
                    format!("contradicts `pattern` {n}:{m} (which prunes {implied})"),
                );
            }
        }
        let fixed_mask = matches!(self.pattern, Pattern::NM { .. }) || self.pattern.is_structured();
        if fixed_mask && self.schedule != Schedule::OneShot {
            return bad(
                "pattern",
                self.pattern.name(),
                "prunes once; use `schedule` oneshot (with `retrain_steps` to retrain)".into(),
            );
        }
        if self.scope == Scope::Global && matches!(self.pattern, Pattern::NM { .. }) {
            let msg = "N:M groups are per row; use `scope` layer".into();
            return bad("scope", "global".into(), msg);
        }
        if self.schedule != Schedule::OneShot && self.retrain.is_none() {
            return bad(
                "schedule",
                format!("{:?}", self.schedule).to_lowercase(),
                "retrains between pruning steps; give `data` and `retrain_steps`".into(),
            );
        }
        if let Some(t) = &self.retrain {
            t.validate()?;
            if self.schedule == Schedule::Agp && t.steps < 2 * self.rounds {
                return bad(
                    "retrain_steps",
                    t.steps.to_string(),
                    format!("fewer than 2 × `rounds` {} (`schedule` agp)", self.rounds),
                );
            }
        }
        Ok(())
    }

    /// The sparsity actually targeted (N:M: `n / m`).
    pub fn target(&self) -> f64 {
        match self.pattern {
            Pattern::NM { n, m } => n as f64 / m as f64,
            _ => self.sparsity,
        }
    }
}

/// Token data for a pruning run.
#[derive(Clone, Copy, Debug, Default)]
pub struct PruneData<'a> {
    /// Retraining windows (`seq_len + 1` tokens each).
    pub train: &'a [Vec<u32>],
    /// Held-out sequences for perplexity (none: no perplexity in the report).
    pub eval: &'a [Vec<u32>],
    /// Calibration rows for Wanda.
    pub calib: &'a [Vec<u32>],
}

/// One round of the report.
#[derive(Clone, Debug, Serialize)]
pub struct RoundReport {
    /// 1-based round.
    pub round: usize,
    /// Target sparsity of this round.
    pub target: f64,
    /// Pruned fraction of the targeted weights (heads/neurons: of the units) after the round.
    pub sparsity: f64,
    /// Held-out perplexity right after pruning (AGP: none, pruning happens while training).
    pub ppl_pruned: Option<f64>,
    /// Held-out perplexity after retraining.
    pub ppl_retrained: Option<f64>,
    /// Retraining steps run.
    pub retrain_steps: usize,
    /// Per-matrix sparsity (unstructured and N:M).
    pub layers: Vec<LayerSparsity>,
    /// AGP mask updates.
    pub updates: Vec<MaskUpdate>,
}

/// What a pruning run did.
#[derive(Clone, Debug, Serialize)]
pub struct PruneReport {
    /// Pattern name (`unstructured`, `2:4`, `heads`, `neurons`).
    pub pattern: String,
    /// Criterion.
    pub criterion: Criterion,
    /// Scope.
    pub scope: Scope,
    /// Schedule.
    pub schedule: Schedule,
    /// Final target sparsity.
    pub target: f64,
    /// Held-out perplexity of the dense model.
    pub ppl_dense: Option<f64>,
    /// Parameters before (all of the model).
    pub params_before: usize,
    /// Parameters after: nonzero for masks, remaining for structured pruning.
    pub params_after: usize,
    /// Rounds in order.
    pub rounds: Vec<RoundReport>,
    /// What each layer kept (structured).
    pub kept: Vec<LayerUnits>,
}

/// A pruned model and how to save it.
#[derive(Debug)]
pub struct Pruned {
    /// The pruned (and retrained) model.
    pub model: LlamaModel,
    /// Its config.json (rewritten shapes for structured pruning).
    pub hf_config: HfConfig,
    /// Final masks (unstructured and N:M).
    pub masks: Option<Masks>,
    /// The run's report.
    pub report: PruneReport,
    /// Retraining metrics of every round, in order.
    pub metrics: Vec<StepMetrics>,
}

fn ppl(model: &LlamaModel, eval: &[Vec<u32>]) -> Result<Option<f64>> {
    if eval.is_empty() {
        return Ok(None);
    }
    Ok(Some(evaluate(model, None, eval, 8, 0, None)?.ppl))
}

/// Held-out perplexity after `steps` retraining steps (none when nothing was retrained).
fn ppl_after(model: &LlamaModel, steps: usize, eval: &[Vec<u32>]) -> Result<Option<f64>> {
    if steps == 0 {
        return Ok(None);
    }
    ppl(model, eval)
}

/// `[out, in]` of every matrix a model of `cfg` holds, by HF name.
fn matrix_shapes(cfg: &LlamaConfig) -> schedule::Shapes {
    tensor_specs(cfg)
        .into_iter()
        .filter(|s| s.shape.len() == 2)
        .map(|s| (s.name, (s.shape[0], s.shape[1])))
        .collect()
}

/// Prunes `model` as `cfg` says, retraining on `data.train` between steps; `on_round` sees each
/// round's report as it completes. `run` holds the trainer's scratch checkpoint.
pub fn prune(
    model: LlamaModel,
    hf: &HfConfig,
    cfg: &PruneConfig,
    data: PruneData<'_>,
    device: &Device,
    run: &RunDir,
    on_round: &mut dyn FnMut(&RoundReport),
) -> Result<Pruned> {
    cfg.validate()?;
    if model.config.shared_layers > 0 {
        return Err(CoreError::Invalid(format!(
            "{}: pruning a model whose layers share blocks is not supported",
            compress_format::hf_config::SHARED_LAYERS_KEY
        )));
    }
    if cfg.retrain.is_some() && data.train.is_empty() {
        return Err(CoreError::missing(
            "data",
            "retraining needs data (or set `retrain_steps` 0)",
        ));
    }
    let norms = match cfg.criterion {
        Criterion::Wanda if data.calib.is_empty() => {
            return Err(CoreError::setting(
                "criterion",
                "wanda",
                "needs calibration data (`calib` or `data`)",
            ))
        }
        Criterion::Wanda => Some(InputNorms::collect(&model, data.calib, 4)?),
        Criterion::Magnitude => None,
    };
    let params_before = model.config.num_parameters();
    let mut report = PruneReport {
        pattern: cfg.pattern.name(),
        criterion: cfg.criterion,
        scope: cfg.scope,
        schedule: cfg.schedule,
        target: cfg.target(),
        ppl_dense: ppl(&model, data.eval)?,
        params_before,
        params_after: params_before,
        rounds: Vec::new(),
        kept: Vec::new(),
    };
    let mut metrics = Vec::new();
    // The dense model teaches every round's retraining when distillation is on.
    let teacher = cfg.distill.map(|_| model.clone());
    let mut retrain =
        |model: LlamaModel, hook: &mut dyn crate::train::TrainHook, round: usize, hf: &HfConfig| {
            let Some(t) = &cfg.retrain else {
                return Ok((model, 0));
            };
            // Each round reads new batches: round r's data order is seeded with seed + r − 1.
            let t = &TrainConfig {
                seed: t.seed.wrapping_add(round as u64 - 1),
                ..t.clone()
            };
            let round_run = RunDir {
                dir: run.dir.join(format!("round{round}")),
            };
            let out = match (&teacher, cfg.distill) {
                (Some(teacher), Some(loss)) => {
                    let mut distill = DistillHook::new(teacher, device, loss, None);
                    let mut both = Combined {
                        masks: hook,
                        loss: &mut distill,
                    };
                    train(
                        model, hf, data.train, t, device, &round_run, false, None, &mut both,
                    )?
                }
                _ => train(
                    model, hf, data.train, t, device, &round_run, false, None, hook,
                )?,
            };
            let steps = out.metrics.len();
            metrics.extend(out.metrics);
            Ok::<_, CoreError>((out.model, steps))
        };
    if cfg.pattern.is_structured() {
        let mut tensors = tensor_map(&model);
        let (new_cfg, kept) = match cfg.pattern {
            Pattern::Heads => structured::prune_heads(
                &model.config,
                &mut tensors,
                cfg.sparsity,
                cfg.scope,
                norms.as_ref(),
            )?,
            _ => structured::prune_neurons(
                &model.config,
                &mut tensors,
                cfg.sparsity,
                cfg.scope,
                norms.as_ref(),
            )?,
        };
        drop(model);
        let pruned = build_from_map(&new_cfg, &mut tensors, device)?;
        let mut hf = hf.clone();
        hf.num_attention_heads = new_cfg.num_heads;
        hf.num_key_value_heads = new_cfg.num_kv_heads;
        hf.intermediate_size = new_cfg.intermediate_size;
        hf.layer_shapes = new_cfg.layer_shapes.clone();
        let ppl_pruned = ppl(&pruned, data.eval)?;
        let (model, steps) = retrain(pruned, &mut NoHook, 1, &hf)?;
        let units_before: usize = kept.iter().map(|k| k.before).sum();
        let units_after: usize = kept.iter().map(|k| k.kept.len()).sum();
        let r = RoundReport {
            round: 1,
            target: cfg.sparsity,
            sparsity: 1.0 - units_after as f64 / units_before.max(1) as f64,
            ppl_pruned,
            ppl_retrained: ppl_after(&model, steps, data.eval)?,
            retrain_steps: steps,
            layers: Vec::new(),
            updates: Vec::new(),
        };
        on_round(&r);
        report.rounds.push(r);
        report.kept = kept;
        report.params_after = model.config.num_parameters();
        return Ok(Pruned {
            model,
            hf_config: hf,
            masks: None,
            report,
            metrics,
        });
    }
    let pruner = Pruner {
        pattern: cfg.pattern,
        scope: cfg.scope,
        criterion: cfg.criterion,
        ignore: cfg.ignore.clone(),
        norms,
    };
    let target = cfg.target();
    let mut model = model;
    let mut masks = Masks::default();
    let rounds = match cfg.schedule {
        Schedule::Iterative => cfg.rounds,
        _ => 1,
    };
    for round in 1..=rounds {
        let (s, updates, ppl_pruned) = if cfg.schedule == Schedule::Agp {
            let steps = cfg.retrain.as_ref().map_or(0, |t| t.steps);
            (
                target,
                schedule::agp_updates(target, cfg.rounds, steps),
                None,
            )
        } else {
            let s = target * round as f64 / rounds as f64;
            let mut tensors = tensor_map(&model);
            let shapes = matrix_shapes(&model.config);
            masks = pruner.masks(&tensors, &shapes, s, Some(&masks))?;
            masks.apply(&mut tensors);
            let config = model.config.clone();
            drop(model);
            model = build_from_map(&config, &mut tensors, device)?;
            (s, vec![(0, s)], ppl(&model, data.eval)?)
        };
        let mut hook = MaskHook::new(&pruner, masks.clone(), updates);
        let (trained, steps) = retrain(model, &mut hook, round, hf)?;
        model = trained;
        masks = hook.masks;
        let r = RoundReport {
            round,
            target: s,
            sparsity: masks.pruned() as f64 / masks.params().max(1) as f64,
            ppl_pruned,
            ppl_retrained: ppl_after(&model, steps, data.eval)?,
            retrain_steps: steps,
            layers: masks.per_layer(),
            updates: hook.log,
        };
        on_round(&r);
        report.rounds.push(r);
    }
    report.params_after = params_before - masks.pruned();
    Ok(Pruned {
        model,
        hf_config: hf.clone(),
        masks: Some(masks),
        report,
        metrics,
    })
}

/// The `sparsity_config` recorded for `pruned` (unstructured and N:M only).
pub fn sparsity_config(pruned: &Pruned, ignore: &[String]) -> Option<SparsityConfig> {
    let masks = pruned.masks.as_ref()?;
    let mut ignore: Vec<String> = ignore.to_vec();
    ignore.insert(0, "lm_head".into());
    Some(SparsityConfig {
        structure: pruned.report.pattern.clone(),
        global_sparsity: masks.pruned() as f64 / masks.params().max(1) as f64,
        targets: vec!["Linear".into()],
        ignore,
    })
}

/// Writes `pruned` to `out` atomically: float tensors in `dtype` (zeros in place) with the
/// `sparsity_config` for masks, or the rewritten config for structured pruning.
pub fn save_pruned(
    pruned: &Pruned,
    ignore: &[String],
    out: &Path,
    dtype: Dtype,
    tokenizer_from: Option<PathBuf>,
) -> Result<()> {
    let mut hf = pruned.hf_config.clone();
    hf.raw.remove("quantization_config");
    let opts = SaveOptions {
        dtype,
        max_shard_bytes: None,
        tokenizer_from,
    };
    let sparsity = sparsity_config(pruned, ignore);
    write_dir_atomically(out, |tmp| {
        write_model_files(&pruned.model, &hf, tmp, &opts)?;
        if let Some(s) = &sparsity {
            let mut with = hf.clone();
            with.torch_dtype = Some(crate::model::hf::torch_dtype_name(dtype).to_string());
            with.raw.insert(
                "quantization_config".into(),
                s.to_quantization_config_json(),
            );
            with.save(&tmp.join("config.json"))?;
        }
        Ok(())
    })
}
