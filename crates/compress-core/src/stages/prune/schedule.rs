//! Sparsity schedules and the trainer hook that holds (and, for AGP, grows) the masks.
//!
//! * one-shot: prune to `s` once, then optionally retrain with the mask held;
//! * iterative: `K` rounds at `s · r / K` (`r = 1..=K`), retraining `N` steps after each;
//! * AGP (Zhu & Gupta 2017): during one training run, masks are recomputed at steps
//!   `t = j·Δt` (`j = 1..=n`) to `s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³` with `s_i = 0`,
//!   `t0 = 0`; `Δt = ⌊T / 2n⌋`, so pruning ends half way and the rest of the run fine-tunes
//!   at the final sparsity.

use std::collections::HashMap;

use super::masks::{ignored, linear_names, select, Masks, Scored};
use super::wanda::InputNorms;
use super::{Criterion, Pattern, Scope};
use crate::error::Result;
use crate::model::weights::export_layer;
use crate::model::LlamaModel;
use crate::train::{ParamMasks, TrainHook};

/// Weights by HF name, HF layout (`[out, in]` row-major).
pub type Tensors = HashMap<String, Vec<f32>>;
/// `[out, in]` shapes by HF weight name.
pub type Shapes = HashMap<String, (usize, usize)>;

/// The AGP sparsity after `j` of `n` updates: `s_f · (1 − (1 − j/n)³)`.
pub fn agp_sparsity(final_sparsity: f64, j: usize, n: usize) -> f64 {
    let frac = 1.0 - (j as f64 / n as f64).min(1.0);
    final_sparsity * (1.0 - frac.powi(3))
}

/// AGP's `(step, sparsity)` mask updates over a run of `steps` with `n` updates.
pub fn agp_updates(final_sparsity: f64, n: usize, steps: usize) -> Vec<(usize, f64)> {
    let dt = (steps / (2 * n)).max(1);
    (1..=n)
        .map(|j| (j * dt, agp_sparsity(final_sparsity, j, n)))
        .filter(|&(t, _)| t < steps)
        .collect()
}

/// Scores and selects unstructured / N:M masks for one pruning setting.
#[derive(Clone, Debug)]
pub struct Pruner {
    /// Granularity (unstructured or N:M here).
    pub pattern: Pattern,
    /// Per layer or global.
    pub scope: Scope,
    /// Weight scores.
    pub criterion: Criterion,
    /// Linears left dense (HF module names or prefixes).
    pub ignore: Vec<String>,
    /// Wanda's input norms (required for [`Criterion::Wanda`]).
    pub norms: Option<InputNorms>,
}

impl Pruner {
    /// Masks at sparsity `s` over the targeted linears of `tensors` (HF layout, by name),
    /// keeping `previous` pruned weights pruned.
    pub fn masks(
        &self,
        tensors: &Tensors,
        shapes: &Shapes,
        s: f64,
        previous: Option<&Masks>,
    ) -> Result<Masks> {
        let layers = shapes
            .keys()
            .filter(|n| n.ends_with(".q_proj.weight"))
            .count();
        let mut scored = Vec::new();
        for name in linear_names(layers) {
            if ignored(&name, &self.ignore) {
                continue;
            }
            let (Some(w), Some(&(rows, cols))) = (tensors.get(&name), shapes.get(&name)) else {
                continue;
            };
            let norm = match self.criterion {
                Criterion::Magnitude => None,
                Criterion::Wanda => self.norms.as_ref().and_then(|n| n.norms.get(&name)),
            };
            let scores = match norm {
                Some(n) => w
                    .chunks_exact(cols)
                    .flat_map(|row| row.iter().zip(n).map(|(v, x)| v.abs() * x))
                    .collect(),
                None => w.iter().map(|v| v.abs()).collect(),
            };
            scored.push(Scored {
                name,
                rows,
                cols,
                scores,
            });
        }
        select(
            scored,
            self.pattern,
            self.scope,
            self.criterion,
            s,
            previous,
        )
    }
}

/// The decoder linears of `model`, HF layout, with their `[out, in]` shapes.
pub fn linear_tensors(model: &LlamaModel) -> (Tensors, Shapes) {
    let mut tensors = HashMap::new();
    let mut shapes = HashMap::new();
    for (l, layer) in model.layers.iter().enumerate() {
        for (spec, v) in export_layer(layer, l) {
            if spec.shape.len() == 2 {
                shapes.insert(spec.name.clone(), (spec.shape[0], spec.shape[1]));
                tensors.insert(spec.name, v);
            }
        }
    }
    (tensors, shapes)
}

/// One mask update made during training.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct MaskUpdate {
    /// 0-based step the mask took effect at.
    pub step: usize,
    /// Target sparsity.
    pub sparsity: f64,
    /// Weights pruned after the update.
    pub pruned: usize,
}

/// Holds masks during retraining: recomputes them at the scheduled steps (previous pruned
/// weights stay pruned) and hands them to the trainer.
pub struct MaskHook<'a> {
    pruner: &'a Pruner,
    updates: Vec<(usize, f64)>,
    /// The masks in force.
    pub masks: Masks,
    /// Every update made.
    pub log: Vec<MaskUpdate>,
}

impl<'a> MaskHook<'a> {
    /// A hook starting from `masks` that recomputes them at `updates` (`(step, sparsity)`);
    /// `updates` containing `(0, s)` with the masks' own sparsity just holds them.
    pub fn new(pruner: &'a Pruner, masks: Masks, updates: Vec<(usize, f64)>) -> Self {
        Self {
            pruner,
            updates,
            masks,
            log: Vec::new(),
        }
    }
}

impl TrainHook for MaskHook<'_> {
    fn masks_due(&self, step: usize) -> bool {
        self.updates.iter().any(|&(t, _)| t == step)
    }

    fn update_masks(&mut self, step: usize, model: &LlamaModel) -> Result<Option<ParamMasks>> {
        let Some(&(_, s)) = self.updates.iter().find(|&&(t, _)| t == step) else {
            return Ok(None);
        };
        let (tensors, shapes) = linear_tensors(model);
        let prev = (!self.masks.layers.is_empty()).then_some(&self.masks);
        self.masks = self.pruner.masks(&tensors, &shapes, s, prev)?;
        self.log.push(MaskUpdate {
            step,
            sparsity: s,
            pruned: self.masks.pruned(),
        });
        Ok(Some(self.masks.to_param_masks()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agp_is_cubic_and_reaches_the_target_half_way() {
        assert_eq!(agp_sparsity(0.5, 0, 4), 0.0);
        assert!((agp_sparsity(0.5, 4, 4) - 0.5).abs() < 1e-12);
        // Fast early, slow late: the first quarter of updates prunes 58% of the target.
        assert!((agp_sparsity(0.8, 1, 4) - 0.8 * (1.0 - 0.75f64.powi(3))).abs() < 1e-12);
        let u = agp_updates(0.5, 4, 400);
        assert_eq!(
            u.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![50, 100, 150, 200]
        );
        assert!(u.windows(2).all(|w| w[0].1 < w[1].1));
        assert!((u[3].1 - 0.5).abs() < 1e-12);
    }
}
